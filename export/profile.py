"""Per-operator latency of a `.tflite` model, one operator at a time, under LiteRT.

LiteRT's Python package has no op profiler (the C++ `benchmark_model --enable_op_profiling`
is not shipped in the wheel), so each operator is cut out into a one-op model with the
flatbuffer object API and timed alone with the same runtime and thread count. This also
tells, per operator, whether XNNPACK took it (the one-op model then runs as a DELEGATE
node) or it fell back to the builtin kernels. Isolated timings leave out the cost of
partition boundaries, so their sum is a lower bound of the whole model's latency.
"""

import collections
import copy
import time

import numpy as np

from keras_vit.export.analysis import interpreter_class, load_model_object, op_name


def _one_op_model(model, operator_index):
    from ai_edge_litert import schema_py_generated as schema

    subgraph = model.subgraphs[0]
    operator = subgraph.operators[operator_index]
    tensor_ids = [i for i in list(operator.inputs) + list(operator.outputs) if i >= 0]
    tensor_ids += [i for i in (operator.intermediates if operator.intermediates is not None else []) if i >= 0]
    tensor_ids = list(dict.fromkeys(tensor_ids))
    new_index, tensors, buffers = {}, [], [schema.BufferT()]
    for old in tensor_ids:
        tensor = copy.copy(subgraph.tensors[old])
        buffer = model.buffers[tensor.buffer]
        if buffer.data is not None and len(buffer.data):
            buffers.append(buffer)
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        new_index[old] = len(tensors)
        tensors.append(tensor)
    op = copy.copy(operator)
    op.inputs = [new_index[i] if i >= 0 else -1 for i in operator.inputs]
    op.outputs = [new_index[i] for i in operator.outputs]
    if operator.intermediates is not None:
        op.intermediates = [new_index[i] for i in operator.intermediates if i >= 0]
    graph = schema.SubGraphT()
    graph.tensors = tensors
    graph.operators = [op]
    graph.inputs = [
        new_index[i] for i in operator.inputs if i >= 0 and buffers[tensors[new_index[i]].buffer].data is None
    ]
    graph.outputs = list(op.outputs)
    graph.name = "op"
    one = schema.ModelT()
    one.version = model.version
    one.operatorCodes = model.operatorCodes
    one.subgraphs = [graph]
    one.buffers = buffers
    one.description = "one-op profile"
    return one


def _random_input(detail, rng):
    shape, dtype = detail["shape"], detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True).astype(dtype)


def profile_ops(model_content, num_threads=1, repeats=15, inner=5, seed=0):
    """Times every operator of subgraph 0 alone.

    Returns a list of dicts `{index, op, output_shape, dtype, ms, delegated}`, where
    `ms` is the median time of one invocation and `delegated` says XNNPACK ran it.
    """
    from ai_edge_litert.tools.flatbuffer_utils import convert_object_to_bytearray

    model = load_model_object(model_content)
    Interpreter = interpreter_class()
    rng = np.random.default_rng(seed)
    rows = []
    for index, operator in enumerate(model.subgraphs[0].operators):
        name = op_name(model, operator)
        out = model.subgraphs[0].tensors[operator.outputs[0]]
        row = {
            "index": index,
            "op": name,
            "output_shape": [int(s) for s in (out.shape if out.shape is not None else [])],
            "dtype": _TYPE_NAMES.get(out.type, str(out.type)),
        }
        try:
            content = bytes(convert_object_to_bytearray(_one_op_model(model, index)))
            interpreter = Interpreter(model_content=content, num_threads=num_threads)
            interpreter.allocate_tensors()
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], _random_input(detail, rng))
            interpreter.invoke()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(inner):
                    interpreter.invoke()
                times.append((time.perf_counter() - start) / inner)
            row["ms"] = float(np.median(times) * 1e3)
            row["delegated"] = any(d["op_name"] == "DELEGATE" for d in interpreter._get_ops_details())
        except (RuntimeError, ValueError) as error:  # an op that cannot run alone
            row["ms"], row["delegated"], row["error"] = None, None, str(error).splitlines()[0]
        rows.append(row)
    return rows


_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


def summarize_profile(rows):
    """Groups a profile by (op, output dtype, delegated): count and total ms, slowest first."""
    groups = collections.defaultdict(lambda: {"count": 0, "ms": 0.0})
    for row in rows:
        key = (row["op"], row["dtype"], row["delegated"])
        groups[key]["count"] += 1
        groups[key]["ms"] += row["ms"] or 0.0
    summary = [
        {"op": op, "dtype": dtype, "xnnpack": delegated, **values}
        for (op, dtype, delegated), values in groups.items()
    ]
    return sorted(summary, key=lambda r: -r["ms"])


def format_profile(summary):
    """The grouped profile as a Markdown table."""
    total = sum(r["ms"] for r in summary) or 1.0
    lines = ["| op | output dtype | XNNPACK | count | total ms | share |", "|---|---|---|---:|---:|---:|"]
    for r in summary:
        lines.append(
            f"| {r['op']} | {r['dtype']} | {'yes' if r['xnnpack'] else 'no'} | {r['count']} "
            f"| {r['ms']:.2f} | {100 * r['ms'] / total:.0f}% |"
        )
    return "\n".join(lines)
