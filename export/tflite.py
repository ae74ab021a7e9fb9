"""Keras ViT -> `.tflite` through a SavedModel with a static input signature.

`TFLiteConverter.from_concrete_functions` on a Keras 3 model can leave the weights as
unfrozen resource variables (a tiny file that outputs NaN), so the graph is always
saved as a SavedModel first and converted with `from_saved_model`; the result is then
checked against the parameter count and run once under LiteRT.

The files are ready for MediaPipe Tasks' `ImageClassifier` (and the other readers of TFLite
metadata) as they come: they output class probabilities (a softmax inside; `outputs="logits"`
keeps the logits), take RGB images `[1, H, W, 3]` also for a grayscale model (`rgb_input`, the
conversion is inside the graph, see `export.graph`), and carry image-classifier metadata with
the class names embedded (`export.metadata`).
"""

import os
import re
import tempfile

import numpy as np

from keras_vit.export.analysis import analyze_ops, check_tflite_bytes, parameter_bytes
from keras_vit.export.metadata import OUTPUT_KINDS, attach_classifier_metadata, check_output_kind
from keras_vit.files import write_bytes_atomic, write_text_atomic

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
QUANTIZED_MODES = ("int8", "int16x8")
IO_TYPES = ("float32", "int8", "uint8")
# Scale granularity of the int8/int16x8 FULLY_CONNECTED weights. Per-channel stores a float32
# scale and an int64 zero point for every output channel of every weight and bias (12 bytes per
# channel each): at hidden_dim 64 that is over a third of the int8 weight bytes again.
WEIGHT_GRANULARITIES = ("channel", "tensor")
# Parts of an int8 model that may stay float (selective fallback), and the TFLite ops
# that make them up. The model is then not fully integer.
FLOAT_FALLBACKS = {"attention": ("BATCH_MATMUL", "SOFTMAX"), "gelu": ("GELU",)}
# Smallest plausible bytes per weight of each mode (weights under 1024 elements stay
# float in dynamic mode, biases are int32 in int8 mode: both only make files bigger).
_MIN_BYTES_PER_WEIGHT = {"float32": 4, "float16": 2, "dynamic": 1, "int8": 1, "int16x8": 1}


def check_mode(mode):
    """Raises ValueError naming the modes unless `mode` is one of them."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)} (or 'all')")


def resolve_graph(model, mode, graph="auto", batch_size=1):
    """`"folded"` for a keras_vit ViT with a static batch, else `"keras"`, unless given.

    The folded graph (export.graph) is what makes int8 fast; in float it is also 2% faster
    than the Keras graph (ViT-Ti/16 at 224: 0.91x vs 0.93x keras-hub's latency), with
    logits equal to Keras within 3e-07.
    """
    from keras_vit.export.graph import GRAPHS, check_integer_graph_support

    if graph == "auto":
        if batch_size is None:
            return "keras"
        try:
            check_integer_graph_support(model)
        except ValueError:
            return "keras"
        return "folded"
    if graph not in GRAPHS:
        raise ValueError(f"graph must be 'auto' or one of {GRAPHS}, got {graph!r}")
    if graph == "folded":
        check_integer_graph_support(model)
    return graph


def save_inference_savedmodel(model, path, graph="keras", batch_size=1, normalization="rsqrt",
                              attention="fully_connected", tta="none", outputs="probabilities", rgb_input=True):
    """Saves the `serve` function of `export.graph.InferenceModule` as a SavedModel."""
    import tensorflow as tf

    from keras_vit.export.graph import InferenceModule

    module = InferenceModule(model, graph, batch_size, normalization, attention, tta, outputs, rgb_input)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def _unsupported_ops(message):
    """Op names (e.g. `Svd`) in a converter error about ops that are not builtins."""
    names = re.findall(r"'tf\.([A-Za-z0-9_]+)' op is neither", message)
    for listed in re.findall(r"(?:Custom|Flex|Select TF) ops: ([^\n]+)", message):
        names += [name.strip() for name in listed.split(",")]
    return sorted(set(n for n in names if n))


def convert(
    model,
    mode,
    representative_images=None,
    batch_size=1,
    graph="auto",
    input_type="float32",
    output_type="float32",
    normalization="rsqrt",
    float_fallback=(),
    weight_granularity="channel",
    tta="none",
    outputs="probabilities",
    rgb_input=True,
    class_names=None,
):
    """Converts a Keras model to TFLite bytes, with image-classifier metadata (`export.metadata`).

    Args:
        model: a Keras model taking `[B, H, W, C]` raw 0..255 pixels.
        mode: `float32`, `float16`, `dynamic`, `int8` or `int16x8`.
        representative_images: float32 `[N, H, W, C]` calibration images (int8,
            int16x8), drawn from the training data: of the model's channels, or of the
            file's (RGB for a gray model with `rgb_input`; gray images are repeated to RGB).
        batch_size: the static batch size of the exported graph.
        graph: `auto`, `keras` or `integer` (see `export.graph`).
        input_type, output_type: interface type of an `int8` model (`float32`,
            `int8` or `uint8`); the graph inside is integer either way.
        normalization: LayerNorm formulation of the folded graph (`l2` or `rsqrt`,
            see `export.graph._normalize`).
        float_fallback: for `int8`, parts kept in float (`attention`: the 4-D
            BATCH_MATMUL + SOFTMAX core, `gelu`), which XNNPACK then runs in float:
            faster and more accurate on CPU, but not fully integer.
        weight_granularity: `channel` (a scale per output channel) or `tensor` (one
            scale per weight matrix: a smaller file, see BENCHMARKS.md for the accuracy
            cost) for the FULLY_CONNECTED weights of `int8` and `int16x8` models.
        tta: `none`, or `flip`: the file outputs the logits of `keras_vit.flip_averaged(model)`,
            the mean class probabilities of each image and its mirror image (one pass over
            both, so about twice the latency).
        outputs: `probabilities` (a softmax ends the graph: what MediaPipe reports as scores) or
            `logits` (the model's own output, e.g. for a loss or a calibration of your own).
        rgb_input: for a gray (1-channel) model, take RGB `[B, H, W, 3]` and convert to gray inside
            (the luminance `keras_vit.images` decodes color files with): MediaPipe and apps feed
            RGB. False keeps the model's 1-channel input. No effect on RGB models.
        class_names: K class names to embed (`labels.txt` in the metadata), or None.

    Returns:
        The `.tflite` bytes: the flatbuffer with its `TFLITE_METADATA`, then the labels file zipped
        after it when `class_names` are given. Raises ValueError for a model that would need Flex
        (SELECT_TF_OPS) ops, naming them.
    """
    import tensorflow as tf

    from keras_vit.test_time_augmentation import check_tta

    check_mode(mode)
    check_tta(tta)
    check_output_kind(outputs)
    float_fallback = tuple(float_fallback or ())
    unknown = sorted(set(float_fallback) - set(FLOAT_FALLBACKS))
    if unknown:
        raise ValueError(f"unknown float fallback {', '.join(unknown)}; expected some of {', '.join(FLOAT_FALLBACKS)}")
    if float_fallback and mode != "int8":
        raise ValueError(f"float fallback applies to mode int8, not {mode}")
    if weight_granularity not in WEIGHT_GRANULARITIES:
        raise ValueError(f"weight_granularity must be one of {WEIGHT_GRANULARITIES}, got {weight_granularity!r}")
    graph = resolve_graph(model, mode, graph, batch_size)
    for name, value in (("input_type", input_type), ("output_type", output_type)):
        if value not in IO_TYPES:
            raise ValueError(f"{name} must be one of {IO_TYPES}, got {value!r}")
        if value != "float32" and mode != "int8":
            raise ValueError(f"{name}={value} needs mode int8 (got mode {mode}); other modes take float32")
    if mode in QUANTIZED_MODES:
        if representative_images is None or len(representative_images) == 0:
            raise ValueError(
                f"mode {mode} needs calibration images from the training data (representative_images; "
                "`keras-vit export --dataset SPEC` draws them from its training split)"
            )
        from keras_vit.export.graph import rgb_input_shape
        from keras_vit.export.runtime import fit_channels

        representative_images = fit_channels(np.asarray(representative_images, dtype="float32"),
                                             rgb_input_shape(model, rgb_input), "calibration images")

    with tempfile.TemporaryDirectory(prefix="keras_vit_export_") as folder:
        # Per-head FC attention only pays in integer modes; float XNNPACK runs BATCH_MATMUL fast.
        integer_attention = mode in QUANTIZED_MODES and "attention" not in float_fallback
        attention = "fully_connected" if integer_attention else "batch_matmul"
        save_inference_savedmodel(
            model, os.path.join(folder, "saved_model"), graph, batch_size, normalization, attention, tta, outputs,
            rgb_input,
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            os.path.join(folder, "saved_model"), signature_keys=["serving_default"]
        )
        # Builtin ops only: a Flex op would silently pull in the TF runtime.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode in QUANTIZED_MODES:
            converter.representative_dataset = _representative_dataset(representative_images, batch_size)
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                if mode == "int8"
                else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            # The converter's only switch for per-tensor dense weights (no public option).
            converter._experimental_disable_per_channel_quantization_for_dense_layers = weight_granularity == "tensor"
        if mode == "int8":
            converter.inference_input_type = getattr(tf, input_type)
            converter.inference_output_type = getattr(tf, output_type)
        try:
            if float_fallback:
                content = _convert_with_fallback(converter, float_fallback, representative_images, batch_size)
                # The debugger path ignores inference_input/output_type: set them after.
                from tensorflow.lite.python.util import modify_model_io_type

                content = modify_model_io_type(content, getattr(tf, input_type), getattr(tf, output_type))
            else:
                content = converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            message = str(error)
            ops = _unsupported_ops(message)
            if ops or "not supported" in message:
                raise ValueError(
                    f"mode {mode}: the model needs ops that are not TFLite builtins "
                    f"({', '.join(ops) or 'see the converter log'}); Flex (SELECT_TF_OPS) is not allowed"
                ) from None
            raise
    check_converted(content, model, mode)
    return attach_classifier_metadata(content, class_names, outputs)


def _convert_with_fallback(converter, float_fallback, images, batch_size):
    """Full-int8 conversion with the ops of `float_fallback` kept float (QuantizationDebugger's
    denylist, the converter's supported way to exclude ops from quantization)."""
    import tensorflow as tf

    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    import warnings

    ops = [op for part in float_fallback for op in FLOAT_FALLBACKS[part]]
    with warnings.catch_warnings():
        # The debugger runs its own tf.lite.Interpreter internally (deprecation warning).
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=_representative_dataset(images[: 2 * batch_size], batch_size),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=ops),
        )
        return debugger.get_nondebug_quantized_model()


def _representative_dataset(images, batch_size):
    def generate():
        for start in range(0, len(images) - batch_size + 1, batch_size):
            yield [images[start : start + batch_size]]

    return generate


def check_converted(content, model, mode):
    """Catches conversions that went wrong silently: Flex ops, unfrozen weights, NaN outputs."""
    check_tflite_bytes(content, f"the {mode} conversion")
    ops = analyze_ops(content)
    if not ops["all_builtin"]:
        raise ValueError(f"mode {mode}: the model needs non-builtin ops {', '.join(ops['flex_ops'])}")
    num_params = int(sum(np.prod(w.shape) for w in model.weights))
    stored = parameter_bytes(content)
    # The folded graph folds LayerNorm and scaling weights away: allow 10% slack.
    if stored < 0.9 * num_params * _MIN_BYTES_PER_WEIGHT[mode] - 4096:
        raise RuntimeError(
            f"mode {mode}: the .tflite stores {stored} bytes of weights for {num_params} parameters; "
            "the weights were not frozen into the file"
        )
    from keras_vit.export.runtime import TFLiteRunner

    runner = TFLiteRunner(content)
    shape = runner.input_shape
    probe = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
    outputs = runner.predict(probe)
    if not np.all(np.isfinite(outputs)):
        raise RuntimeError(f"mode {mode}: the converted model outputs non-finite values")


def labels_path(tflite_path):
    """Where a copy of the class names of a `.tflite` file lives: `NAME.labels.txt` beside it."""
    root, _ = os.path.splitext(tflite_path)
    return root + ".labels.txt"


def write_tflite(content, path, class_names=None, outputs=None):
    """Writes a `.tflite` file with image-classifier metadata, and its class names beside it.

    The metadata (`export.metadata.attach_classifier_metadata`) replaces any the bytes had, with
    `class_names` embedded; without them the embedded labels of `content` are kept. `outputs`
    (`probabilities` or `logits`) says what the output holds; None reads it from the graph.
    The class names are also written one per line to `labels_path(path)` for readers of the
    plain file. Both files are written atomically; when anything fails, neither is left changed
    (nor a labels file behind).
    """
    if not str(path).endswith(".tflite"):
        raise ValueError(f"TFLite output must end in .tflite, got {path}")
    if outputs is not None and outputs not in OUTPUT_KINDS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUT_KINDS)} or None, got {outputs!r}")
    content = attach_classifier_metadata(content, class_names, outputs)  # before anything is written
    if not class_names:
        write_bytes_atomic(path, content)
        return path
    from keras_vit.files import all_or_nothing, labels_text

    labels = labels_path(path)
    with all_or_nothing([labels, path]):  # a failure puts both back as they were
        write_text_atomic(labels, labels_text(class_names))
        write_bytes_atomic(path, content)
    return path


def read_labels(tflite_path, content=None):
    """Class names of a `.tflite` file: those embedded in its metadata, else those written beside it
    (`labels_path`), else None. `content`: the file's bytes, when already read."""
    from keras_vit.export.metadata import read_embedded_labels

    if content is None and os.path.isfile(tflite_path):
        with open(tflite_path, "rb") as file:
            content = file.read()
    if content is not None and content[4:8] == b"TFL3":
        embedded = read_embedded_labels(content)
        if embedded:
            return embedded
    path = labels_path(tflite_path)
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return [line.rstrip("\n") for line in file if line.strip()]


