"""What is inside a `.tflite` file: its operators, whether they are builtin, whether the
graph is static and fully integer, and the GPU-delegate compatibility verdict of
`tf.lite.experimental.Analyzer`."""

import contextlib
import functools
import io
import os


# Ops whose presence means the graph computes shapes at run time (a delegate, or a
# fixed-size accelerator, cannot plan it ahead).
DYNAMIC_SHAPE_OPS = ("SHAPE", "BROADCAST_TO", "WHERE", "NON_MAX_SUPPRESSION_V4", "DYNAMIC_UPDATE_SLICE")
# Ops that change the type of a tensor or carry no arithmetic; allowed in a fully
# integer graph only at its float input/output edges.
_INT_TYPES = {"int8", "uint8", "int16", "int32", "int64", "bool"}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
               7: "int16", 9: "int8", 10: "float64"}


def interpreter_class():
    """LiteRT's `Interpreter` (XNNPACK is applied by default on CPU)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def read_tflite(path):
    """Reads a `.tflite` file, raising ValueError with one line if it is missing or not a model."""
    if not os.path.exists(path):
        raise ValueError(f"TFLite model not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, expected a .tflite file")
    with open(path, "rb") as file:
        content = file.read()
    check_tflite_bytes(content, path)
    return content


def check_tflite_bytes(content, name="model"):
    """Raises ValueError unless `content` is a TFLite flatbuffer (identifier `TFL3`)."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(f"{name} is not a valid .tflite file (no TFL3 flatbuffer identifier; corrupt or foreign file)")


def load_model_object(content):
    """The mutable flatbuffer object (`ModelT`) of a TFLite model."""
    from ai_edge_litert.tools.flatbuffer_utils import read_model_from_bytearray

    return read_model_from_bytearray(bytearray(content))


def op_name(model, operator):
    """Builtin op name (e.g. `FULLY_CONNECTED`) of an operator, or `CUSTOM:<code>`."""
    from ai_edge_litert import schema_py_generated as schema

    code = model.operatorCodes[operator.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return _builtin_names()[builtin]


@functools.lru_cache(maxsize=1)
def _builtin_names():
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def analyze_ops(content):
    """Summarizes the operators of every subgraph.

    Returns a dict: `ops` ({name: count}), `all_builtin`, `flex_ops` (names of
    `Flex*`/custom ops), `static` (no dynamic-shape op, no dynamic dimension, no
    GATHER with run-time indices), `dynamic_ops`, `fully_integer` (every op
    computes on integer tensors, except QUANTIZE of a graph input and DEQUANTIZE of a
    graph output), `float_ops` (ops that
    compute on float tensors), `input`/`output` dtypes and shapes.
    """
    model = load_model_object(content)
    ops, flex, dynamic, float_ops = {}, [], [], {}
    has_dynamic_dim = False
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors
        graph_inputs, graph_outputs = set(subgraph.inputs), set(subgraph.outputs)
        is_constant = lambda i: model.buffers[tensors[i].buffer].data is not None  # noqa: E731
        for tensor in tensors:
            if tensor.shapeSignature is not None and any(int(s) < 0 for s in tensor.shapeSignature):
                has_dynamic_dim = True
        for operator in subgraph.operators:
            name = op_name(model, operator)
            ops[name] = ops.get(name, 0) + 1
            if name.startswith("CUSTOM:"):
                flex.append(name.split(":", 1)[1])
            if name in DYNAMIC_SHAPE_OPS:
                dynamic.append(name)
            if name in ("GATHER", "GATHER_ND") and not is_constant(operator.inputs[1]):
                dynamic.append(f"{name} (run-time indices)")
            # QUANTIZE of the float input and DEQUANTIZE to the float output are the
            # integer model's interface, not float compute.
            if name == "QUANTIZE" and operator.inputs[0] in graph_inputs:
                continue
            if name == "DEQUANTIZE" and operator.outputs[0] in graph_outputs:
                continue
            types = {_TYPE_NAMES.get(tensors[i].type, "?") for i in list(operator.outputs) if i >= 0}
            types |= {_TYPE_NAMES.get(tensors[i].type, "?") for i in operator.inputs if i >= 0 and not is_constant(i)}
            if not types <= _INT_TYPES:
                float_ops[name] = float_ops.get(name, 0) + 1
    graph = model.subgraphs[0]

    def describe(ids):
        return [
            {"dtype": _TYPE_NAMES.get(graph.tensors[i].type, "?"), "shape": [int(s) for s in graph.tensors[i].shape]}
            for i in ids
        ]

    return {
        "ops": dict(sorted(ops.items())),
        "all_builtin": not flex,
        "flex_ops": sorted(set(flex)),
        "static": not dynamic and not has_dynamic_dim,
        "dynamic_ops": sorted(set(dynamic)),
        "fully_integer": not float_ops,
        "float_ops": float_ops,
        "inputs": describe(graph.inputs),
        "outputs": describe(graph.outputs),
    }


def outputs_probabilities(content):
    """Whether a `.tflite` model's output is made by a SOFTMAX: class probabilities, else logits.

    The graph decides, not the metadata: files that `export.tflite.convert` makes end in a SOFTMAX
    (followed by a QUANTIZE or DEQUANTIZE for a quantized output) unless exported with
    `outputs="logits"`, as do files of a model built with `classifier_activation="softmax"`.
    `content` is `.tflite` bytes or the `ModelT` of `load_model_object`.
    """
    model = content if not isinstance(content, (bytes, bytearray)) else load_model_object(content)
    graph = model.subgraphs[0]
    producers = {int(t): op for op in graph.operators for t in (op.outputs if op.outputs is not None else [])}
    tensor = int(graph.outputs[0])
    for _ in range(8):  # walk back through type conversions and reshapes
        operator = producers.get(tensor)
        if operator is None:
            return False
        name = op_name(model, operator)
        if name == "SOFTMAX":
            return True
        if name not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "CAST"):
            return False
        tensor = int(operator.inputs[0])
    return False


def gpu_compatibility(content):
    """Runs `tf.lite.experimental.Analyzer` with `gpu_compatibility=True`.

    Returns `(compatible, text)`: the printed report and whether it found no op the
    GPU delegate cannot run.
    """
    import tensorflow as tf

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    text = buffer.getvalue()
    compatible = "looks compatible with GPU delegate" in text and "GPU COMPATIBILITY WARNING" not in text
    return compatible, text


def parameter_bytes(content):
    """Bytes of the constant buffers (the weights) in a TFLite model, not counting the metadata
    buffers (`export.metadata`'s, the converter's)."""
    model = load_model_object(content)
    metadata = {int(entry.buffer) for entry in model.metadata or []}
    return int(sum(len(b.data) for i, b in enumerate(model.buffers) if b.data is not None and i not in metadata))

