"""A second quantizer: Google's AI Edge Quantizer (`ai_edge_quantizer`) on our float32 `.tflite`.

The TFLite converter (export.tflite) quantizes while it converts the SavedModel; the AI Edge
Quantizer instead rewrites a finished float32 flatbuffer, op by op, from a recipe. Its recipe
rules select ops by *scope*, a regular expression searched (`re.search`) in the op's output
tensor names joined by `;` with a trailing `;` (e.g. `Softmax_1;`, `MatMul_5;add_7;`), and by
op type (`SOFTMAX`, `FULLY_CONNECTED`, ...); a later rule overrides an earlier one for the ops
both select. Tensor names are those the converter gave (`Mean_3`, `Rsqrt_1`, `Gelu/mul_2;...`),
not Keras layer names, so selecting op types is the sturdier way to keep parts of the graph float.

    from keras_vit.export.tflite import convert
    from keras_vit.export import ai_edge_quantizer

    float32 = convert(model, "float32")
    int8 = ai_edge_quantizer.quantize(float32, "int8", calibration_images, float_ops=["SOFTMAX"])
    ai_edge_quantizer.validate(float32, int8, test_images)  # per-tensor mean-squared errors

Static modes (`int8`, `int16x8`) give a model whose input and output are int8 / int16 too
(the quantizer quantizes the graph's edges); `export.runtime.TFLiteRunner` feeds and reads them
with the file's own scale and zero point, so callers still pass float32 raw 0..255 pixels.

The quantizer rewrites the flatbuffer and drops the files zipped after it, so `quantize`
attaches the image-classifier metadata (`export.metadata`) of the float32 file again,
its embedded class names included. (MediaPipe takes uint8 or float32 images only: the
static modes' int8 / int16 input is for LiteRT and NPUs, not for MediaPipe.)
"""

import contextlib
import io
import os
import warnings

import numpy as np

from keras_vit.export.analysis import analyze_ops, check_tflite_bytes
from keras_vit.export.runtime import fit_channels

# Our mode name -> the AI Edge Quantizer recipe (a function of `ai_edge_quantizer.recipe`).
RECIPES = {
    "int8": "static_wi8_ai8",  # int8 weights (per channel) and int8 activations: calibrated
    "int16x8": "static_wi8_ai16",  # int8 weights, int16 activations: calibrated
    "dynamic": "dynamic_wi8_afp32",  # int8 weights, float activations quantized at run time
    "weight_only": "weight_only_wi8_afp32",  # int8 weights dequantized to float before each op
}
STATIC_MODES = ("int8", "int16x8")
# Named parts of our ViT graph (export.graph), as the op types they are made of. Op types are
# coarse: `residual` (ADD) also keeps the bias adds and `layernorm` (MUL) the scalings in float.
# `layernorm,residual,attention` leaves the projections and the MLP int8: the fastest accurate
# int8 file on the CPU for the models of the default command (BENCHMARKS.md, "Export: quantizers").
FLOAT_OP_GROUPS = {
    "attention": ("BATCH_MATMUL", "SOFTMAX"),
    "layernorm": ("MEAN", "SUB", "MUL", "RSQRT"),
    "residual": ("ADD",),
    "gelu": ("GELU",),
}
# Op types a `float_ops` entry may name (the quantizer's `TFLOperationName` values it can select).
# Anything else in `float_ops` is taken as a tensor-name regex.
_NO_QUANTIZE = "no_quantize"


def _op_types():
    from ai_edge_quantizer.qtyping import TFLOperationName

    return {op.value for op in TFLOperationName if op.value not in ("*", "INPUT", "OUTPUT")}


def check_mode(mode):
    """Raises ValueError naming the modes unless `mode` is one of `RECIPES`."""
    if mode not in RECIPES:
        raise ValueError(f"unknown ai-edge-quantizer mode {mode!r}; expected one of {', '.join(RECIPES)}")


def _check_float32(content, name="the float model"):
    """`content` must be the float32 file of `export.tflite.convert(model, "float32")`."""
    check_tflite_bytes(content, name)
    ops = analyze_ops(content)
    if "QUANTIZE" in ops["ops"] or "DEQUANTIZE" in ops["ops"] or ops["inputs"][0]["dtype"] != "float32":
        raise ValueError(
            f"{name} is already quantized (it has QUANTIZE/DEQUANTIZE ops or a {ops['inputs'][0]['dtype']} input); "
            "pass the float32 file of export.tflite.convert(model, 'float32')"
        )
    return ops


def _signature_and_input(content):
    """`(signature key, input name, input shape [B, H, W, C])` of the file's only signature."""
    from keras_vit.export.analysis import interpreter_class

    interpreter = interpreter_class()(model_content=content)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"expected a model with one signature, got {sorted(signatures)}")
    key, signature = next(iter(signatures.items()))
    if len(signature["inputs"]) != 1:
        raise ValueError(f"expected one image input, the model has {signature['inputs']}")
    runner = interpreter.get_signature_runner(key)
    detail = next(iter(runner.get_input_details().values()))
    return key, signature["inputs"][0], tuple(int(s) for s in detail["shape"])


def _dataset(content, images, what):
    """Images `[N, H, W, C]` as the quantizer's `{signature: [{input: [B, H, W, C]}, ...]}`, in chunks of
    the file's static batch size B (the last chunk padded by repeating its last image)."""
    key, name, shape = _signature_and_input(content)
    images = fit_channels(images, shape[1:], what)  # gray images repeated for a gray model's RGB input
    if len(images) == 0:
        raise ValueError(f"{what}: no images given")
    batch = shape[0]
    chunks = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        chunks.append({name: chunk})
    return {key: chunks}


def _float_rules(float_ops):
    """`float_ops` (a regex string, or a list of group names, op types and/or regexes) -> `[(regex, op type)]`."""
    if float_ops is None:
        return []
    if isinstance(float_ops, str):
        float_ops = [float_ops]
    types = _op_types()
    rules = []
    for entry in float_ops:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"float_ops entries must be groups ({', '.join(FLOAT_OP_GROUPS)}), op types or "
                             f"tensor-name regexes, got {entry!r}")
        for op_type in FLOAT_OP_GROUPS.get(entry, (entry,)):
            rules.append((".*", op_type) if op_type in types else (op_type, "*"))
    return rules


@contextlib.contextmanager
def _quiet():
    # The quantizer draws tqdm progress bars and prints a size report on stderr/stdout, and its
    # calibration interpreter warns that it keeps every tensor (it must, to record their ranges).
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            yield


def quantize(float32_content, mode, calibration_images=None, float_ops=None, num_threads=None):
    """Quantizes a float32 `.tflite` with the AI Edge Quantizer recipe of `mode`.

    Args:
        float32_content: bytes of `export.tflite.convert(model, "float32", ...)` (input `[B, H, W, C]`
            float32 raw 0..255 pixels; its outputs, probabilities or logits, are the quantized file's).
        mode: `int8`, `int16x8` (static: calibrated), `dynamic` or `weight_only` (see `RECIPES`).
        calibration_images: float32 `[N, H, W, C]` raw pixels from the training data (gray ones for a
            gray model whose file takes RGB are repeated to RGB); needed by the
            static modes, ignored by the others. N of a few dozen to a few hundred is enough.
        float_ops: ops left in float: a regex, or a list whose entries are groups of our graph
            (`FLOAT_OP_GROUPS`: `layernorm`, `residual`, `attention`, `gelu`), op types
            (`SOFTMAX`, `GELU`, `MEAN`, `RSQRT`, `ADD`, ... : every op of that type) or regexes
            searched in the op's output tensor names (`Rsqrt|Mean`: see the module docstring).
            Between a float op and its integer neighbours the quantizer puts DEQUANTIZE/QUANTIZE.
        num_threads: interpreter threads for calibration (default: the machine's CPU count).

    Returns:
        The quantized `.tflite` bytes, checked to load and to give finite outputs on one batch, with
        the float32 file's image-classifier metadata.
    """
    from ai_edge_quantizer import quantizer, recipe

    check_mode(mode)
    _check_float32(float32_content)
    rules = _float_rules(float_ops)
    calibration = None
    if mode in STATIC_MODES:
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError(
                f"ai-edge-quantizer mode {mode} needs calibration images (float32 [N, H, W, C] raw pixels from the "
                "training data: `keras-vit export --dataset SPEC` draws them from its training split); or use mode "
                "dynamic or weight_only, "
                "which need none"
            )
        calibration = _dataset(float32_content, calibration_images, "calibration images")
    threads = num_threads or os.cpu_count() or 1
    engine = quantizer.Quantizer(bytearray(float32_content))
    engine.load_quantization_recipe(getattr(recipe, RECIPES[mode])())
    for regex, op_type in rules:
        # A rule added later wins for the ops it selects: these override the recipe's `.*` rule.
        engine.update_quantization_recipe(regex=regex, operation_name=op_type, algorithm_key=_NO_QUANTIZE)
    with _quiet():
        qsvs = engine.calibrate(calibration, num_threads=threads) if engine.need_calibration else None
        result = engine.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False)
    content = bytes(result.quantized_model)
    check_tflite_bytes(content, f"the ai-edge-quantizer {mode} result")
    from keras_vit.export.runtime import TFLiteRunner

    runner = TFLiteRunner(content)
    probe = np.random.default_rng(0).uniform(0, 255, runner.input_shape).astype("float32")
    if not np.all(np.isfinite(runner.predict(probe))):
        raise RuntimeError(f"ai-edge-quantizer mode {mode}: the quantized model outputs non-finite values")
    from keras_vit.export.metadata import attach_classifier_metadata, read_embedded_labels

    return attach_classifier_metadata(content, read_embedded_labels(float32_content))


def validate(float32_content, quantized_content, images, num_threads=None, worst=5):
    """Runs both files on `images` and compares every tensor the two share (AI Edge Quantizer's
    `Quantizer.validate`: mean-squared error of the quantized model's dequantized tensor against
    the float one, averaged over the images).

    Args:
        images: float32 `[N, H, W, C]` raw pixels (a few are enough; every tensor is kept per image).

    Returns:
        `{"images": N, "tensors": count compared, "output_mse": {name: mse}, "max_mse", "median_mse",
        "worst": [(tensor name, mse), ...] (the `worst` largest, intermediate tensors included)}`.
    """
    from ai_edge_quantizer import quantizer

    _check_float32(float32_content)
    check_tflite_bytes(quantized_content, "the quantized model")
    data = _dataset(float32_content, images, "validation images")
    engine = quantizer.Quantizer(bytearray(float32_content), previous_quantized_model=bytearray(quantized_content))
    with _quiet():
        result = engine.validate(data, num_threads=num_threads or os.cpu_count() or 1)
    signature = result.get_signature_comparison_result(next(iter(data)))
    tensors = {**signature.intermediate_tensors, **signature.output_tensors}
    mse = {name: float(values["mse"]) for name, values in tensors.items()}
    ranked = sorted(mse.items(), key=lambda item: -item[1])
    values = np.asarray(list(mse.values()) or [np.nan])
    return {
        "images": int(len(images)),
        "tensors": len(mse),
        "output_mse": {name: float(values["mse"]) for name, values in signature.output_tensors.items()},
        "max_mse": float(values.max()),
        "median_mse": float(np.median(values)),
        "worst": ranked[:worst],
    }
