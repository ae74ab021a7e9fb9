"""The inference graphs that get exported: the Keras model itself, or the "folded"
re-formulation of a `keras_vit.ViT` that computes the same function (the default).

Why (ViT-Ti/16 at 224, LiteRT 2.3, one thread; see BENCHMARKS.md, section 3): the converter
turns the attention products of the Keras graph into int8 `BATCH_MATMUL`, which XNNPACK does
not run (both operands are activations) and whose builtin kernel took 36 of 55 ms; its
LayerNorm becomes an int8 `SQUARED_DIFFERENCE` (not delegated, 8 ms) plus float `NEG`
islands. Straightforward int8 was 1.7x slower than float32; this graph makes it 0.54x. It:

- folds the input scaling / normalization into the patch projection (or, for a hybrid
  ViT, BatchNorm and the pixel scale into each stem convolution), so raw 0..255 pixels
  go straight into the first matrix product (uint8 input is then exact);
- runs every projection as a 2-D `FULLY_CONNECTED` on `[B*T, D]` (XNNPACK int8);
- in integer modes, writes each head's `q k^T` and `a v` as `FULLY_CONNECTED` with a
  run-time weight operand (`matmul(q, k, transpose_b=True)`, `matmul(a, v^T,
  transpose_b=True)` with `v^T` made by one 4-D transpose), which the builtin int8 kernel
  runs ~10x faster than int8 `BATCH_MATMUL`; in float it keeps 4-D `BATCH_MATMUL`, which
  XNNPACK runs fast in float;
- normalizes with `c = x - mean; c * rsqrt(mean(c * c) + eps)` (no SQUARED_DIFFERENCE /
  NEG) and folds each LayerNorm's gamma/beta into the Dense that follows it, and the
  attention scale into the query weights, so no per-channel MUL/ADD is quantized;
- with class-token pooling, sends only the class token through the last block's output
  projection and MLP (its other tokens are never read).

All folds are exact in real arithmetic; `tests/test_export_tflite.py` checks the float
graph against Keras (max difference ~4e-06).

Both graphs end, by default, in a softmax (class probabilities, what MediaPipe's image
classifier reports as scores; `outputs="logits"` leaves it out), and take RGB images
`[B, H, W, 3]` for a grayscale model too: apps and MediaPipe feed RGB, and the model's
gray input is the luminance of `tf.image.rgb_to_grayscale` (the weights `keras_vit.images`
decodes color files to gray with, scaled to sum to 1: `RGB_TO_GRAY`), computed inside the graph; the folded graph folds those
weights into a hybrid ViT's first convolution, so the conversion costs no op there, and
takes one 1x1 convolution before the patch projection otherwise.
"""

import numpy as np
import tensorflow as tf

GRAPHS = ("keras", "folded")
NORMALIZATIONS = ("l2", "rsqrt")
# fully_connected: per-head FCs with run-time weights (int8-fast); batch_matmul: the
# Keras layout, for an attention core kept in float (export.tflite float_fallback).
ATTENTIONS = ("fully_connected", "batch_matmul")
# The luminance weights of tf.image.rgb_to_grayscale (ITU-R BT.601), which keras_vit.images
# applies when it decodes a color file for a gray model, scaled to sum to 1 (they sum to 0.9999):
# a gray image fed as RGB (g, g, g), as a gray dataset is, then gives the model g itself, where
# the unscaled weights would darken it by 0.01% (a probability error of ~2e-4 on a trained model).
# For color images the two differ by at most 0.026 gray levels, far below the decoder's rounding
# of its luminance to whole levels (up to 0.5), which the graph does not do.
RGB_TO_GRAY = np.array([0.2989, 0.5870, 0.1140]) / 0.9999


def rgb_input_shape(model, rgb_input=True):
    """`(H, W, C)` an exported file of `model` takes: 3 channels for a gray model with `rgb_input`."""
    from keras_vit.images import model_image_shape

    height, width, channels = model_image_shape(model)
    return (height, width, 3 if rgb_input and channels == 1 else channels)


def _weights(layer):
    return [np.asarray(w, dtype="float64") for w in layer.get_weights()]


def _fold_norm_into_dense(norm, dense, factor=1.0):
    """`Dense(LayerNorm(x))` == `Dense'(normalize(x) / factor)`: the folded `(kernel, bias)`."""
    gamma, beta = _weights(norm)
    kernel, bias = _weights(dense)
    return (factor * gamma)[:, None] * kernel, bias + beta @ kernel


def check_integer_graph_support(model):
    """Raises ValueError unless `model` is a `keras_vit.ViT` this module can re-formulate."""
    from keras_vit import ViT

    if not isinstance(model, ViT):
        raise ValueError(
            f"the folded graph needs a keras_vit ViT, got {type(model).__name__}; use graph='keras'"
        )
    if not model.include_top:
        raise ValueError("the folded graph needs a model with its classification head (include_top=True)")
    if model.classifier_activation not in (None, "linear", "softmax"):
        raise ValueError(
            f"classifier_activation {model.classifier_activation!r} is not supported by the integer-friendly "
            "graph; expected None or 'softmax'"
        )


class ViTWeights:
    """The folded float32 weights of a `keras_vit.ViT`, ready for `folded_forward`."""

    def __init__(self, model, normalization="rsqrt", attention="fully_connected", rgb_input=False):
        check_integer_graph_support(model)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention = attention
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        # l2 normalization leaves out LayerNorm's sqrt(D) factor; the Dense after it takes it.
        factor = model.hidden_dim**0.5 if normalization == "l2" else 1.0
        from keras_vit.model import INPUT_SCALINGS

        self.image_size = tuple(model.image_size)
        self.channels = model.channels
        self.patch_size = tuple(model.patch_size)
        self.grid = tuple(model.patch_grid)
        self.hidden_dim = model.hidden_dim
        self.num_heads = model.num_heads
        self.head_dim = model.hidden_dim // model.num_heads
        self.pooling = model.pooling
        self.use_class_token = model.use_class_token
        self.epsilon = model.layer_norm_epsilon
        self.softmax_output = model.classifier_activation == "softmax"

        # Per-channel affine map from raw pixels to the projection's input.
        scale, offset = INPUT_SCALINGS[model.input_scaling]
        channel_scale = np.full(self.channels, scale)
        channel_offset = np.full(self.channels, offset)
        if model.mean is not None:
            mean = np.broadcast_to(np.asarray(model.mean, "float64"), (self.channels,))
            std = np.broadcast_to(np.asarray(model.std, "float64"), (self.channels,))
            channel_scale, channel_offset = channel_scale / std, (channel_offset - mean) / std
        encoder = model.get_layer("patch_encoder")
        kernel, bias = _weights(encoder.projection)
        # A hybrid ViT's convolutional stem: BatchNorm folds into each convolution. The
        # pixel scale folds into the first kernel; an offset cannot (the "same" padding
        # pads the *scaled* image with zeros), so it stays one per-channel add on the raw
        # pixels, in pixel units (`offset / scale`), where the padding is zero again.
        self.stem = []
        self.stem_input_shift = None
        if model.stem_channels:
            stem = model.get_layer("stem")
            for convolution, norm in zip(stem.convolutions, stem.norms):
                gamma, beta, moving_mean, moving_variance = _weights(norm)
                bn_scale = gamma / np.sqrt(moving_variance + norm.epsilon)
                (conv_kernel,) = _weights(convolution)
                self.stem.append([conv_kernel * bn_scale, beta - moving_mean * bn_scale])
            self.stem[0][0] = self.stem[0][0] * channel_scale[None, None, :, None]
            if np.any(channel_offset != 0):
                self.stem_input_shift = channel_offset / channel_scale
            # Patches are cut from the stem's feature map, which no pixel scaling reaches.
            stride = stem.stride
            self.patch_size = (self.patch_size[0] // stride, self.patch_size[1] // stride)
            self.patch_channels = stem.filters[-1]
            channel_scale, channel_offset = np.ones(self.patch_channels), np.zeros(self.patch_channels)
        else:
            self.patch_channels = self.channels
        # Patch vectors are ordered (row, col, channel), so element i has channel i % C.
        patch_dim = self.patch_size[0] * self.patch_size[1] * self.patch_channels
        element_scale = np.tile(channel_scale, patch_dim // self.patch_channels)
        element_offset = np.tile(channel_offset, patch_dim // self.patch_channels)
        self.patch_kernel = element_scale[:, None] * kernel
        self.patch_bias = bias + element_offset @ kernel
        # RGB in, the gray model inside: gray = sum_c w_c x_c. A stem's first convolution takes it
        # (kernel_c = w_c * kernel: 3x a small kernel); its input shift s (in gray units) becomes
        # s / sum(w) on every channel, so that sum_c w_c (x_c + s_c) = gray + s and the zero
        # padding stays where it was. Without a stem, folding would triple the patch projection,
        # so the luminance is one 1x1 convolution before it (`gray_kernel`).
        self.gray_kernel = None
        if rgb_input and self.channels == 1:
            if self.stem:
                self.stem[0][0] = self.stem[0][0] * RGB_TO_GRAY[None, None, :, None]
                if self.stem_input_shift is not None:
                    self.stem_input_shift = np.repeat(self.stem_input_shift / RGB_TO_GRAY.sum(), 3)
            else:
                self.gray_kernel = RGB_TO_GRAY[None, None, :, None]
            self.channels = 3
        self.position = np.asarray(encoder.position_embedding, "float64")[0]
        self.class_token = (
            np.asarray(encoder.class_token, "float64")[0] if self.use_class_token else None
        )

        query_scale = np.ones(3 * self.hidden_dim)
        query_scale[: self.hidden_dim] = self.head_dim**-0.5
        self.blocks = []
        for block in model.blocks:
            qkv_kernel, qkv_bias = _fold_norm_into_dense(block.attention_norm, block.qkv, factor)
            mlp1_kernel, mlp1_bias = _fold_norm_into_dense(block.mlp_norm, block.mlp_dense_1, factor)
            self.blocks.append(
                {
                    "qkv": (qkv_kernel * query_scale, qkv_bias * query_scale),
                    "out": tuple(_weights(block.attention_output)),
                    "mlp1": (mlp1_kernel, mlp1_bias),
                    "mlp2": tuple(_weights(block.mlp_dense_2)),
                }
            )
        # The final LayerNorm is per token and pooling is linear, so gamma/beta fold
        # into the first Dense after pooling (pre-logits or head).
        norm = model.get_layer("encoder_norm")
        head = model.get_layer("head")
        self.pre_logits = None
        if model.representation_size:
            self.pre_logits = _fold_norm_into_dense(norm, model.get_layer("pre_logits"), factor)
            self.head = tuple(_weights(head))
        else:
            self.head = _fold_norm_into_dense(norm, head, factor)


def _const(array):
    return tf.constant(np.asarray(array, dtype="float32"))


def _normalize(x, epsilon, method="rsqrt"):
    """LayerNorm without gamma/beta (those are folded into the next Dense).

    `rsqrt` (default): `c * rsqrt(mean(c * c) + eps)` with `c = x - mean(x)`: MUL, MEAN
    and SUB have int8 XNNPACK kernels (Keras's SQUARED_DIFFERENCE and NEG do not).
    `l2`: `l2_normalize(c)`, TFLite's L2_NORMALIZATION, whose int8 kernel sums the
    squares in int32, where the int8 `c * c` tensor rounds small squares to zero; it
    is LayerNorm divided by sqrt(D) (folded into the next Dense), up to
    `max(sum c^2, D*eps)` for `sum c^2 + D*eps`. Measured: same top-1 agreement as
    `rsqrt` on our models (BENCHMARKS.md, section 3), but not run by XNNPACK, so
    `rsqrt` stays the default.
    """
    centered = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    if method == "l2":
        return tf.math.l2_normalize(centered, axis=-1, epsilon=x.shape[-1] * epsilon)
    variance = tf.reduce_mean(centered * centered, axis=-1, keepdims=True)
    return centered * tf.math.rsqrt(variance + epsilon)


def _split(x, count, axis=0):
    """`tf.split`, except that one part is `[x]`: a one-way SPLIT op is a no-op that LiteRT's GPU
    accelerator aborts on (`object_reader.cc:373 Check failed: CanReadValue`, any precision; see
    bench/experiments/gpu_int8_repro.py), and at batch size 1 or one head the per-head attention
    below would emit one."""
    return [x] if count == 1 else tf.split(x, count, axis=axis)


def _dense(x, weights):
    kernel, bias = weights
    return tf.matmul(x, _const(kernel)) + _const(bias)


def folded_forward(weights, images, batch_size):
    """The ViT forward pass on a static batch, in ops that quantize well.

    Args:
        weights: `ViTWeights`.
        images: float32 `[batch_size, H, W, C]` raw 0..255 pixels.
        batch_size: the static batch size.

    Returns:
        float32 `[batch_size, num_classes]` logits (probabilities for a softmax head).
    """
    w = weights
    (patch_height, patch_width), (rows, cols) = w.patch_size, w.grid
    num_patches, dim, heads, head_dim = rows * cols, w.hidden_dim, w.num_heads, w.head_dim
    x = images
    if w.gray_kernel is not None:
        x = tf.nn.conv2d(x, _const(w.gray_kernel), strides=1, padding="VALID")
    if w.stem_input_shift is not None:
        x = x + _const(w.stem_input_shift)
    for kernel, bias in w.stem:
        x = tf.nn.relu(tf.nn.conv2d(x, _const(kernel), strides=2, padding="SAME") + _const(bias))
    # Patches exactly as keras_vit.layers.Patches lays them out (4-D transpose).
    x = tf.reshape(x, (batch_size * rows, patch_height, cols, patch_width * w.patch_channels))
    x = tf.transpose(x, (0, 2, 1, 3))
    x = tf.reshape(x, (batch_size * num_patches, patch_height * patch_width * w.patch_channels))
    x = tf.reshape(_dense(x, (w.patch_kernel, w.patch_bias)), (batch_size, num_patches, dim))
    if w.use_class_token:
        class_tokens = tf.tile(_const(w.class_token)[None], (batch_size, 1, 1))
        x = tf.concat([class_tokens, x], axis=1)
    tokens = x.shape[1]
    x = tf.reshape(x + _const(w.position)[None], (batch_size * tokens, dim))

    for index, block in enumerate(w.blocks):
        qkv = _dense(_normalize(x, w.epsilon, w.normalization), block["qkv"])
        query, key, value = tf.split(qkv, 3, axis=-1)
        rows = tokens
        if w.pooling == "token" and index == len(w.blocks) - 1:
            # Only the class token leaves the last block: attend with its query alone and
            # run the output projection and MLP on that one row (exact; saves 6% of the
            # FLOPs of ViT-Ti/16 at 224).
            query = tf.reshape(tf.reshape(query, (batch_size, tokens, dim))[:, :1], (batch_size, dim))
            x = tf.reshape(tf.reshape(x, (batch_size, tokens, dim))[:, :1], (batch_size, dim))
            rows = 1
        if w.attention == "batch_matmul":
            # The Keras layout: 4-D BATCH_MATMULs (fast in float under XNNPACK).
            def split(t, length, perm):
                return tf.transpose(tf.reshape(t, (batch_size, length, heads, head_dim)), perm)

            scores = tf.matmul(split(query, rows, (0, 2, 1, 3)), split(key, tokens, (0, 2, 3, 1)))
            attended = tf.matmul(tf.nn.softmax(scores, axis=-1), split(value, tokens, (0, 2, 1, 3)))
            attended = tf.reshape(tf.transpose(attended, (0, 2, 1, 3)), (batch_size * rows, dim))
        else:
            # v^T per (image, head) by one 4-D transpose: [B, heads, head_dim, T].
            value_t = tf.transpose(tf.reshape(value, (batch_size, tokens, heads, head_dim)), (0, 2, 3, 1))
            value_t = _split(tf.reshape(value_t, (batch_size * heads * head_dim, tokens)), batch_size * heads)
            queries = [_split(q, heads, axis=-1) for q in _split(query, batch_size)]
            keys = [_split(k, heads, axis=-1) for k in _split(key, batch_size)]
            outputs = []
            for b in range(batch_size):
                per_head = []
                for h in range(heads):
                    scores = tf.matmul(queries[b][h], keys[b][h], transpose_b=True)  # FC: [rows, T]
                    attention = tf.nn.softmax(scores, axis=-1)
                    per_head.append(tf.matmul(attention, value_t[b * heads + h], transpose_b=True))  # FC
                outputs.append(tf.concat(per_head, axis=-1))
            attended = tf.concat(outputs, axis=0) if batch_size > 1 else outputs[0]
        x = x + _dense(attended, block["out"])
        hidden = tf.nn.gelu(_dense(_normalize(x, w.epsilon, w.normalization), block["mlp1"]), approximate=False)
        x = x + _dense(hidden, block["mlp2"])

    if w.pooling == "token":
        pooled = _normalize(x, w.epsilon, w.normalization)
    else:
        x = tf.reshape(x, (batch_size, tokens, dim))
        pooled = tf.reduce_mean(_normalize(x[:, int(w.use_class_token):], w.epsilon, w.normalization), axis=1)
    if w.pre_logits is not None:
        pooled = tf.tanh(_dense(pooled, w.pre_logits))
    logits = _dense(pooled, w.head)
    return tf.nn.softmax(logits, axis=-1) if w.softmax_output else logits


def model_input_spec(model, batch_size=1, dtype=tf.float32):
    """`tf.TensorSpec` of a model's image input `[batch_size, H, W, C]`."""
    shape = tuple(model.inputs[0].shape[1:])
    if None in shape:
        raise ValueError(f"the model input needs a static image shape to export, got {shape}")
    return tf.TensorSpec((batch_size, *shape), dtype, name="images")


class InferenceModule(tf.Module):
    """A `tf.Module` whose `serve` maps float32 raw-pixel images to class probabilities (or logits).

    `graph="keras"` calls the Keras model (its variables are tracked and frozen by the
    converter); `graph="folded"` runs `folded_forward` on folded constants, with the
    LayerNorm form `normalization` (`rsqrt` or `l2`) and `attention` (`fully_connected`
    for integer modes, `batch_matmul` for float). Input `[batch_size, H, W, C]`, where C is 3
    for a gray model with `rgb_input` (the luminance is taken inside, see the module docstring).
    `tta="flip"`: the output of `keras_vit.flip_averaged(model)` (image and mirror image).
    `outputs`: `probabilities` (a softmax at the end, unless the model's head has one) or
    `logits` (the model's own output).
    """

    def __init__(self, model, graph="keras", batch_size=1, normalization="rsqrt", attention="fully_connected",
                 tta="none", outputs="probabilities", rgb_input=True):
        super().__init__()
        from keras_vit.export.metadata import check_output_kind
        from keras_vit.export.savedmodel import outputs_are_probabilities
        from keras_vit.test_time_augmentation import check_logits_output, check_tta

        if graph not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        check_tta(tta)
        check_output_kind(outputs)
        if tta != "none":
            check_logits_output(model)
        if outputs == "logits" and outputs_are_probabilities(model):
            raise ValueError(f"outputs='logits' needs a model that outputs logits; {model.name!r} ends in a softmax "
                             "(its file outputs probabilities)")
        height, width, channels = rgb_input_shape(model, rgb_input)
        to_gray = channels == 3 and model_input_spec(model).shape[-1] == 1
        spec = tf.TensorSpec((batch_size, height, width, channels), tf.float32, name="images")
        # With flip averaging the network sees the images and their mirror images as one batch.
        network_batch = None if batch_size is None else int(batch_size) * (2 if tta == "flip" else 1)
        if graph == "folded":
            if batch_size is None:
                raise ValueError("the folded graph needs a static batch size")
            weights = ViTWeights(model, normalization, attention, rgb_input=to_gray)

            def forward(images):
                return folded_forward(weights, images, network_batch)
        else:
            # The model itself is not an attribute: saving it would make TF trace and
            # save every Keras layer's functions (3x slower export).
            # Keras 3 variables are not tf.Module-trackable themselves; tracking their
            # tf.Variable values makes the SavedModel hold them, so the converter can
            # freeze them (otherwise the .tflite has no weights and outputs NaN).
            self.keras_variables = [variable.value for variable in model.variables]

            def forward(images):
                if to_gray:
                    images = tf.nn.conv2d(images, _const(RGB_TO_GRAY[None, None, :, None]), strides=1, padding="VALID")
                return model(images, training=False)

        if tta == "flip":
            forward = _flip_averaged(forward)
        if outputs == "probabilities" and not outputs_are_probabilities(model):
            # After flip averaging, softmax(log(mean p)) = mean p: the averaged probabilities.
            forward = _with_softmax(forward)
        self.serve = tf.function(forward, input_signature=[spec], autograph=False)


def _with_softmax(forward):
    def probabilities(images):
        return tf.nn.softmax(forward(images), axis=-1)

    return probabilities


def _flip_averaged(forward):
    """`forward` scored on each image and its mirror image, averaged as `keras_vit.flip_averaged` does.

    One pass over a doubled batch rather than two: the matrix products get twice the rows
    (better use of XNNPACK's kernels at batch 1). The mirror is a strided slice with stride -1,
    an op every TFLite mode (int8 included) has.
    """
    from keras_vit.test_time_augmentation import mean_probability_logits

    def averaged(images):
        logits, mirrored = tf.split(forward(tf.concat([images, images[:, :, ::-1]], axis=0)), 2)
        return mean_probability_logits([logits, mirrored])

    return averaged
