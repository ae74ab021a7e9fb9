"""One entry point for every explanation method of a ViT, by name."""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_vit.attention import attention_model
from keras_vit.explain.maps import check_vit, layer_attention_maps, rollout_maps
from keras_vit.explain.saliency import SALIENCY_METHODS, SaliencyExplainer, default_block

ATTENTION_METHODS = ("rollout", "attention")
METHODS = ATTENTION_METHODS + SALIENCY_METHODS

# Images per call of a method: bounds memory for many images at 224x224.
BATCH_SIZE = 16

# What each method's picture shows, for titles and captions.
METHOD_TITLES = {
    "rollout": "attention rollout",
    "attention": "attention",
    "saliency": "saliency",
    "smoothgrad": "SmoothGrad",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM",
}


def parse_methods(methods):
    """Method names from `"all"`, `"a,b"` or a list; raises on unknown names."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods)
    if not methods:
        raise ValueError(f"no explanation method given; choose from {', '.join(METHODS)} or all")
    if "all" in methods:
        return list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown explanation method {unknown[0]!r}; choose from {', '.join(METHODS)} or all")
    return list(dict.fromkeys(methods))


def check_images(model, images):
    """Returns images as float32 `[B, H, W, C]`, raising unless they fit the model."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    expected = (*model.image_size, model.channels)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images must be [batch, {expected[0]}, {expected[1]}, {expected[2]}] for this model, "
            f"got shape {tuple(images.shape)}"
        )
    if not np.issubdtype(images.dtype, np.number):
        raise TypeError(f"images must be numeric raw pixels 0..255, got dtype {images.dtype}")
    return images.astype("float32")


@dataclasses.dataclass
class Explanation:
    """Maps of several methods for a batch of images.

    Attributes:
        maps: method name -> float32 `[B, H, W]`.
        class_ids: the explained class of each image, `[B]`.
        probabilities: the model's class probabilities `[B, num_classes]`.
        titles: method name -> a short title saying which block/heads it shows.
    """

    maps: dict
    class_ids: np.ndarray
    probabilities: np.ndarray
    titles: dict = dataclasses.field(default_factory=dict)


class Explainer:
    """Explains a `keras_vit.ViT`'s predictions with any of `METHODS`.

    Args:
        model: a `keras_vit.ViT` with its head (raw 0..255 images in).
        block: tokens entering this block feed the CAM methods (see `spatial_model`).
        head_fusion: `"mean"`, `"max"` or `"min"` over heads, for rollout and attention.
        layer, head: the block and head of the `"attention"` method (head None = fused).
        smooth_samples, smooth_noise: SmoothGrad's noisy copies and noise level.
        scorecam_channels: Faster Score-CAM's channel limit (None = all hidden_dim).
        interpolation: upsampling of the attention maps, `"bilinear"` or `"nearest"`.

    Example:
    >>> from keras_vit import ViT
    >>> model = ViT(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
    ...             num_classes=3)
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    >>> explanation = Explainer(model).explain(images, ["rollout", "gradcam"])
    >>> explanation.maps["rollout"].shape  # [B, H, W]
    (2, 16, 16)
    """

    def __init__(
        self,
        model,
        block=None,
        head_fusion="mean",
        layer=-1,
        head=None,
        smooth_samples=20,
        smooth_noise=0.2,
        scorecam_channels=None,
        interpolation="bilinear",
    ):
        check_vit(model)
        self.model = model
        self.block = block
        self.head_fusion = head_fusion
        self.layer = layer
        self.head = head
        self.smooth_samples = smooth_samples
        self.smooth_noise = smooth_noise
        self.scorecam_channels = scorecam_channels
        self.interpolation = interpolation
        self._saliency = None
        # Traced once and reused: `Model.predict` costs ~0.4 s of set-up per call
        # (vit_ti16 at 224 on CPU), four times the forward pass itself.
        self._forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
        self._attention_forward = None

    @property
    def saliency_explainer(self):
        if self._saliency is None:
            self._saliency = SaliencyExplainer(self.model, block=self.block)
        return self._saliency

    def attention(self, images):
        """Each block's attention `[L, B, h, T, T]` as NumPy."""
        if self._attention_forward is None:
            shared = attention_model(self.model)
            self._attention_forward = tf.function(lambda x: shared(x, training=False), reduce_retracing=True)
        outputs = self._attention_forward(tf.constant(check_images(self.model, images)))
        return np.stack([o.numpy() for o in outputs])

    def probabilities(self, images):
        """Class probabilities `[B, num_classes]` (softmax of the logits)."""
        images = check_images(self.model, images)
        outputs = np.concatenate(
            [self._forward(tf.constant(images[i : i + BATCH_SIZE])).numpy() for i in range(0, len(images), BATCH_SIZE)]
        ).astype("float64")
        if self.model.classifier_activation in (None, "linear"):
            outputs = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
            outputs /= outputs.sum(axis=-1, keepdims=True)
        return outputs.astype("float32")

    def explain(self, images, methods, class_ids=None):
        """Maps of each method for each image.

        Args:
            images: raw 0..255 images `[B, H, W, C]` (or one `[H, W, C]`).
            methods: names from `METHODS`, `"all"` or a comma-separated string.
            class_ids: class to explain per image `[B]` (an int for all); default
                the predicted class. Attention maps do not depend on the class.

        Returns:
            an `Explanation`; each map is float32 `[B, H, W]`, finite.
        """
        methods = parse_methods(methods)
        images = check_images(self.model, images)
        probabilities = self.probabilities(images)
        if class_ids is None:
            class_ids = probabilities.argmax(axis=-1)
        try:
            class_ids = np.broadcast_to(np.asarray(class_ids, dtype="int64"), (len(images),)).copy()
        except ValueError:
            raise ValueError(f"class_ids must be one class id or one per image ({len(images)}), got {class_ids!r}") from None
        num_classes = probabilities.shape[-1]
        if ((class_ids < 0) | (class_ids >= num_classes)).any():
            raise ValueError(f"class ids must be in [0, {num_classes}), got {class_ids.tolist()}")

        chunks = {method: [] for method in methods}
        # Chunks of BATCH_SIZE images bound the memory of the attention weights
        # ([L, B, h, T, T]) and of the gradients at 224x224.
        for i in range(0, len(images), BATCH_SIZE):
            batch, batch_ids = images[i : i + BATCH_SIZE], class_ids[i : i + BATCH_SIZE]
            attention = self.attention(batch) if any(m in ATTENTION_METHODS for m in methods) else None
            for method in methods:
                # ScoreCAM holds hidden_dim masked copies of every image it is given
                # (tf-keras-vis builds them all before predicting): one image at a time.
                step = 1 if method == "scorecam" else len(batch)
                for j in range(0, len(batch), step):
                    part = None if attention is None else attention[:, j : j + step]
                    chunks[method].append(self._one(method, batch[j : j + step], batch_ids[j : j + step], part))
        maps = {method: np.nan_to_num(np.concatenate(parts)).astype("float32") for method, parts in chunks.items()}
        titles = {method: self.title(method) for method in methods}
        return Explanation(maps=maps, class_ids=class_ids, probabilities=probabilities, titles=titles)

    def title(self, method):
        """A picture title for `method` naming the block and heads it is computed from."""
        name = METHOD_TITLES[method]
        if method == "rollout":
            return f"{name} ({self.head_fusion})"
        if method == "attention":
            block = self.layer % self.model.num_layers
            heads = self.head_fusion if self.head is None else f"head {self.head % self.model.num_heads}"
            return f"{name}, block {block} ({heads})"
        if method in ("gradcam", "gradcam++", "scorecam"):
            block = default_block(self.model) if self.block is None else self.block
            return f"{name}, block {block} input"
        return name

    def _one(self, method, images, class_ids, attention):
        if method == "rollout":
            maps, _ = rollout_maps(self.model, images, self.head_fusion, self.interpolation, attention)
            return maps
        if method == "attention":
            return layer_attention_maps(
                self.model, images, self.layer, self.head, self.head_fusion, self.interpolation, attention
            )
        saliency = self.saliency_explainer
        if method == "saliency":
            return saliency.saliency(images, class_ids)
        if method == "smoothgrad":
            return saliency.smoothgrad(images, class_ids, self.smooth_samples, self.smooth_noise)
        if method == "gradcam":
            return saliency.gradcam(images, class_ids)
        if method == "gradcam++":
            return saliency.gradcam_plus_plus(images, class_ids)
        return saliency.scorecam(images, class_ids, self.scorecam_channels)
