"""The Vision Transformer as a functional Keras model, built from presets or arguments."""

import keras
import numpy as np

from keras_vit.choices import INPUT_SCALINGS
from keras_vit.layers import ConvStem, PatchEncoder, Patches, TokenPooling, TransformerBlock
from keras_vit.layers.transformer_block import check_rates
from keras_vit.layers.patches import int_pair, normalize_patch_size, patch_grid
from keras_vit.presets import get_preset


def _normalize_image_size(image_size):
    return int_pair(image_size, "image_size", "(height, width)")


@keras.saving.register_keras_serializable(package="keras_vit")
class ViT(keras.Model):
    """Vision Transformer (Dosovitskiy et al. 2020) as a functional `keras.Model`.

    Input: raw pixel values `[B, H, W, C]` in 0..255 (any float or int dtype);
    scaling and optional mean/std normalization happen inside the model, so
    exported models take plain images. Output: `[B, num_classes]` logits (or
    `classifier_activation` applied), or `[B, D]` features without the top.

    Args:
        image_size: int or `(height, width)`.
        channels: image channels.
        patch_size: int or `(patch_height, patch_width)`: the pixels one token covers;
            must divide the image size.
        stem_channels: `None` for the paper's linear patch embedding, or the channels of
            a convolutional stem (`ConvStem`: 3x3 stride-2 convolutions with BatchNorm
            and ReLU, e.g. `(32, 64)`), which makes a hybrid ViT; the patch size must
            then be divisible by `2 ** len(stem_channels)`.
        num_layers, num_heads, hidden_dim, mlp_dim: encoder size.
        num_classes: classes of the head.
        pooling: `"token"` (class token) or `"gap"` (mean of the patch tokens).
        include_top: add the classification head.
        representation_size: width of an optional tanh pre-logits layer.
        dropout_rate, attention_dropout_rate, drop_path_rate: regularization;
            stochastic depth grows linearly to `drop_path_rate` over the blocks.
        classifier_activation: `None` for logits, or e.g. `"softmax"`.
        input_scaling: `"unit"` ([0, 1]), `"symmetric"` ([-1, 1]) or `"none"`.
        mean, std: optional per-channel normalization after scaling.
        use_class_token: prepend a class token (required for `pooling="token"`).
        layer_norm_epsilon: epsilon of every LayerNorm.

    Example:
    >>> model = ViT.from_preset("vit_ti16", image_size=32, patch_size=4, num_classes=10)
    >>> tuple(model(np.zeros((1, 32, 32, 3))).shape)
    (1, 10)
    >>> hybrid = ViT.from_preset("vit_ti16", image_size=32, patch_size=4, stem_channels=(32, 64), num_classes=10)
    >>> hybrid.get_layer("stem").stride
    4
    """

    def __init__(
        self,
        image_size=224,
        channels=3,
        patch_size=16,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        mlp_dim=3072,
        num_classes=1000,
        pooling="token",
        include_top=True,
        representation_size=None,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        classifier_activation=None,
        input_scaling="unit",
        mean=None,
        std=None,
        use_class_token=True,
        layer_norm_epsilon=1e-6,
        stem_channels=None,
        dtype=None,
        name="vit",
        **kwargs,
    ):
        image_size = _normalize_image_size(image_size)
        patch_size = normalize_patch_size(patch_size)
        grid = patch_grid(image_size, patch_size)
        if int(channels) < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be positive, got {num_layers}")
        if include_top and int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        # Checked here too: keras' Dropout words its own error differently, and the
        # first block's stochastic depth is always 0, so a one-layer model would
        # otherwise accept any drop_path_rate.
        check_rates(
            dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            drop_path_rate=drop_path_rate,
        )
        if input_scaling not in INPUT_SCALINGS:
            raise ValueError(
                f"input_scaling must be one of {sorted(INPUT_SCALINGS)}, got {input_scaling!r}"
            )
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        if mean is not None:
            mean, std = [float(m) for m in np.ravel(mean)], [float(s) for s in np.ravel(std)]
            if len(mean) not in (1, channels) or len(std) != len(mean):
                raise ValueError(
                    f"mean and std need 1 or {channels} values each, got {len(mean)} and {len(std)}"
                )
            if min(std) <= 0:
                raise ValueError(f"std must be positive, got {std}")

        # ConvStem validates the channels; built first so that a bad list is named as such.
        stem = ConvStem(stem_channels, dtype=dtype, name="stem") if stem_channels else None
        stem_channels = stem.filters if stem else None
        stem_stride = stem.stride if stem else 1
        if patch_size[0] % stem_stride or patch_size[1] % stem_stride:
            raise ValueError(
                f"patch_size {patch_size} must be divisible by the stem's stride {stem_stride} "
                f"({len(stem_channels)} stride-2 convolutions, stem_channels={list(stem_channels)})"
            )

        # === Layers ===
        scale, offset = INPUT_SCALINGS[input_scaling]
        rescaling = keras.layers.Rescaling(scale, offset, dtype=dtype, name="rescaling")
        normalization = None
        if mean is not None:
            normalization = keras.layers.Normalization(
                mean=mean, variance=[s * s for s in std], dtype=dtype, name="normalization"
            )
        # With a stem, patches are cut from its feature map, which is stem_stride times smaller.
        patches = Patches((patch_size[0] // stem_stride, patch_size[1] // stem_stride), dtype=dtype, name="patches")
        patch_encoder = PatchEncoder(
            num_patches=grid[0] * grid[1],
            hidden_dim=hidden_dim,
            use_class_token=use_class_token,
            patch_grid=grid,
            dtype=dtype,
            name="patch_encoder",
        )
        embedding_dropout = keras.layers.Dropout(dropout_rate, dtype=dtype, name="embedding_dropout")
        blocks = [
            TransformerBlock(
                num_heads=num_heads,
                hidden_dim=hidden_dim,
                mlp_dim=mlp_dim,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                drop_path_rate=drop_path_rate * i / max(int(num_layers) - 1, 1),
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=dtype,
                name=f"encoder_block_{i}",
            )
            for i in range(int(num_layers))
        ]
        encoder_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="encoder_norm"
        )
        pool = TokenPooling(pooling, num_prefix_tokens=int(use_class_token), dtype=dtype, name="pooling")
        pre_logits = None
        if representation_size:
            pre_logits = keras.layers.Dense(
                representation_size, activation="tanh", dtype=dtype, name="pre_logits"
            )
        head = None
        if include_top:
            # Zero-initialized as in the original code; float32 so that logits stay
            # float32 under mixed precision.
            head = keras.layers.Dense(
                num_classes,
                activation=classifier_activation,
                kernel_initializer="zeros",
                dtype="float32",
                name="head",
            )

        # === Functional model ===
        inputs = keras.Input(shape=(*image_size, channels), name="images")
        self._encoder_layers = (rescaling, normalization, stem, patches, patch_encoder, embedding_dropout)
        x = self.embed(inputs)
        for i, block in enumerate(blocks):
            # A class-token head reads token 0 alone, so the last block computes only
            # that token (same logits, ~1/num_layers less work; ViT.tokens() still
            # returns every token).
            last_only = pooling == "token" and use_class_token and i == len(blocks) - 1
            x = block(x, first_token_only=True) if last_only else block(x)
        x = pool(encoder_norm(x))
        if pre_logits is not None:
            x = pre_logits(x)
        outputs = head(x) if head is not None else x
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # Keras' default input spec lets a trailing axis of 1 be squeezed, so a
        # grayscale image fed to an RGB model (or the reverse) would only fail deep in
        # the patch projection; a strict spec names the expected image shape instead.
        self.input_spec = keras.InputSpec(
            shape=(None, *image_size, int(channels)), allow_last_axis_squeeze=False, name="images"
        )

        # === Config ===
        self.image_size = image_size
        self.channels = int(channels)
        self.patch_size = patch_size
        self.patch_grid = grid
        self.num_patches = grid[0] * grid[1]
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.mlp_dim = int(mlp_dim)
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.include_top = bool(include_top)
        self.representation_size = representation_size
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.classifier_activation = classifier_activation
        self.input_scaling = input_scaling
        self.mean = mean
        self.std = std
        self.use_class_token = bool(use_class_token)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.stem_channels = stem_channels
        self.blocks = blocks

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_size": self.image_size,
            "channels": self.channels,
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "mlp_dim": self.mlp_dim,
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "include_top": self.include_top,
            "representation_size": self.representation_size,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "classifier_activation": self.classifier_activation,
            "input_scaling": self.input_scaling,
            "mean": self.mean,
            "std": self.std,
            "use_class_token": self.use_class_token,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "stem_channels": list(self.stem_channels) if self.stem_channels else None,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    def as_float32(self):
        """This model computing in float32, with the same weights (itself if it already does).

        Mixed precision (`mixed_bfloat16`/`mixed_float16`) is a training setting: the
        variables stay float32, so exports and reference outputs use the float32 model.
        """
        # The functional model's own policy stays float32; its layers carry the mixed one.
        if all(layer.dtype_policy.compute_dtype == "float32" for layer in self.layers):
            return self
        config = self.get_config()
        config["dtype"] = "float32"
        model = type(self).from_config(config)
        model.set_weights(self.get_weights())
        return model

    @classmethod
    def from_preset(cls, preset, weights=None, **overrides):
        """Builds a model from a preset name (see `keras_vit.PRESETS`), overriding any field.

        `weights` names official pre-trained weights of the preset (`"augreg_in21k_ft_in1k"`;
        `keras_vit.pretrained.WEIGHTS`, `keras-vit presets`): they are downloaded once into the
        Keras cache and loaded as `load_checkpoint` does, so `num_classes` (a new head) and
        `image_size` (the position grid resampled) may differ from the checkpoint's:

            model = ViT.from_preset("vit_ti16", weights="augreg_in21k_ft_in1k", num_classes=5, image_size=160)
        """
        config = get_preset(preset)
        if weights is None:
            config.update(overrides)
            return cls(**config)
        from keras_vit import pretrained
        from keras_vit.checkpoint import load_checkpoint

        name = weights if pretrained.is_weights_name(weights) else pretrained.weights_name(preset, weights)
        pretrained.check_weights_preset(name, preset)
        path = pretrained.fetch_weights(name)
        return load_checkpoint(path, architecture=config, source=f"{path} (weights {name})", **overrides)

    @classmethod
    def from_checkpoint(cls, path, **overrides):
        """Builds a model from an official ViT `.npz` checkpoint (see `keras_vit.checkpoint`)."""
        from keras_vit.checkpoint import load_checkpoint

        return load_checkpoint(path, **overrides)

    def embed(self, images, training=False):
        """Images (raw pixels, or symbolic inputs) `[B, H, W, C]` -> the tokens entering the
        first block `[B, 1 + N, D]`: scaling, optional stem, patches, projection, class token
        and positions."""
        rescaling, normalization, stem, patches, patch_encoder, embedding_dropout = self._encoder_layers
        x = rescaling(images)
        if normalization is not None:
            x = normalization(x)
        if stem is not None:
            x = stem(x, training=training)
        return embedding_dropout(patch_encoder(patches(x)), training=training)

    def tokens(self, images, return_attention_scores=False, training=False):
        """Runs the encoder on images or symbolic inputs: returns the final tokens `[B, T, D]`
        (before the final LayerNorm) and, if asked, each block's attention `[B, h, T, T]`."""
        x = self.embed(images, training=training)
        attention = []
        for block in self.blocks:
            if return_attention_scores:
                x, weights = block(x, training=training, return_attention_scores=True)
                attention.append(weights)
            else:
                x = block(x, training=training)
        return (x, attention) if return_attention_scores else x
