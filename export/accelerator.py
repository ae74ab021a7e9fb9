"""Running a `.tflite` file on LiteRT's GPU accelerator, for real, in a child process.

The GPU verdict of `tf.lite.experimental.Analyzer` (export.analysis) is a static check: a
file it calls compatible can still abort the process on the GPU accelerator (a delegate
CHECK failure kills the process: on Android, a crashed app). `run_on_gpu` runs the file
with `CompiledModel` (GPU, with the CPU as fallback for ops the GPU cannot run) in a child
process (`export.accelerator_child`), so an abort is recorded instead of killing the caller.

Without a GPU, LiteRT's WebGPU accelerator (`libLiteRtWebGpuAccelerator.so`, Dawn over
Vulkan) runs on Mesa's lavapipe, a software Vulkan driver: Mesa >= 25 is needed (Debian
bookworm's Mesa 22 lacks a feature Dawn needs), see `ENABLE_HINT`. Latencies measured there
are those of a software rasterizer on this machine's CPUs, not of a phone's GPU.
"""

import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np

ENABLE_HINT = (
    "install Mesa >= 25's lavapipe Vulkan driver; on Debian bookworm: echo 'deb http://deb.debian.org/debian "
    "bookworm-backports main' > /etc/apt/sources.list.d/backports.list && apt-get update && "
    "apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1"
)
SOFTWARE_LATENCY_NOTE = "lavapipe (software Vulkan), not a phone"
STATUSES = ("runs", "aborted", "failed", "timeout", "unavailable")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class AcceleratorRun:
    """What happened when a `.tflite` file ran on an accelerator.

    status: `runs`, `aborted` (the child died of a signal, e.g. a delegate CHECK failure),
        `failed` (LiteRT raised an error), `timeout`, or `unavailable` (not run: no accelerator;
        `message` says how to enable it).
    message: the reason for anything but `runs` (for `aborted`, the child's fatal stderr line).
    stage: where the child got to: `compiling` (creating the CompiledModel, where the delegate
        builds its graph), `running` or `done`.
    fully_accelerated: `CompiledModel.is_fully_accelerated()`: every op on the accelerator.
    gpu_ops, cpu_ops: ops the GPU delegate took and left to the CPU (from LiteRT's log; all
        ops on the GPU when fully accelerated).
    outputs: float32 `[N, K]` outputs (dequantized), None unless `runs`.
    outputs_probabilities: whether the file outputs class probabilities (else logits).
    latency: `{"median_ms", "p90_ms"}` of one batch (run plus reading the output back).
    device: the adapter LiteRT's WebGPU picked (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    latency_note: what the latency is of (`SOFTWARE_LATENCY_NOTE` on lavapipe).
    """

    status: str
    message: str = ""
    accelerator: str = "gpu"
    stage: str = None
    fully_accelerated: bool = None
    gpu_ops: int = None
    cpu_ops: int = None
    outputs: np.ndarray = None
    outputs_probabilities: bool = None
    latency: dict = None
    device: str = None
    latency_note: str = None
    returncode: int = None

    @property
    def runs(self):
        return self.status == "runs"

    def probabilities(self):
        """The outputs as float64 class probabilities `[N, K]` (`export.runtime.class_probabilities`), or None."""
        from keras_vit.export.runtime import class_probabilities

        return None if self.outputs is None else class_probabilities(self.outputs, bool(self.outputs_probabilities))

    def to_dict(self):
        """JSON-friendly fields (no outputs)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "outputs"}

    def summary(self):
        """One line for a report cell: `runs, fully accelerated`, `runs, 89 of 95 ops on CPU`,
        `ABORTS: ...`, `not run: ...`."""
        if self.status == "runs":
            if self.fully_accelerated:
                return "runs, fully accelerated"
            if self.cpu_ops is not None and self.gpu_ops is not None:
                return f"runs, {self.cpu_ops} of {self.cpu_ops + self.gpu_ops} ops on CPU"
            return "runs, not fully accelerated"
        if self.status == "aborted":
            return f"ABORTS ({self.stage}): {self.message}"
        if self.status == "unavailable":
            return f"not run: {self.message}"
        return f"{self.status.upper()} ({self.stage}): {self.message}"


def tiny_model_bytes(kind="add"):
    """A hand-built float32 `.tflite` file of one op on a `[1, 2, 2, 1]` input (no TensorFlow needed).

    `kind="add"`: `x + x` (the availability probe). `kind="one_way_split"`: a SPLIT into one
    part, which LiteRT's GPU accelerator aborts on (`object_reader.cc:373 Check failed:
    CanReadValue(node_input_index)`; bench/experiments/gpu_int8_repro.py).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools.flatbuffer_utils import convert_object_to_bytearray

    def tensor(name, buffer, shape, dtype=schema.TensorType.FLOAT32):
        t = schema.TensorT()
        t.name, t.buffer, t.shape, t.type = name, buffer, list(shape), dtype
        return t

    def code(builtin):
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
        return c

    op = schema.OperatorT()
    op.opcodeIndex = 0
    buffers = [schema.BufferT(), schema.BufferT(), schema.BufferT()]
    if kind == "add":
        tensors = [tensor("x", 1, (1, 2, 2, 1)), tensor("y", 2, (1, 2, 2, 1))]
        opcode = code(schema.BuiltinOperator.ADD)
        op.inputs, op.outputs = [0, 0], [1]
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    elif kind == "one_way_split":
        axis = schema.BufferT()
        axis.data = list(np.int32(0).tobytes())
        buffers.append(axis)
        tensors = [tensor("x", 1, (1, 2, 2, 1)), tensor("y", 2, (1, 2, 2, 1)),
                   tensor("axis", 3, (), schema.TensorType.INT32)]
        opcode = code(schema.BuiltinOperator.SPLIT)
        options = schema.SplitOptionsT()
        options.numSplits = 1
        op.inputs, op.outputs = [2, 0], [1]
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.SplitOptions, options
    else:
        raise ValueError(f"kind must be 'add' or 'one_way_split', got {kind!r}")
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs = [schema.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "x", 0
    signature.outputs = [schema.TensorMapT()]
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "y", 1
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [opcode], [graph]
    model.buffers, model.signatureDefs, model.description = buffers, [signature], "keras_vit GPU probe"
    return bytes(convert_object_to_bytearray(model))


def known_gpu_aborts(content):
    """Ops of a `.tflite` file known to abort LiteRT's GPU accelerator (checked without running it):
    a SPLIT into one part (bench/experiments/gpu_int8_repro.py). A list of descriptions."""
    from keras_vit.export.analysis import load_model_object, op_name

    model = load_model_object(content)
    found = []
    for graph in model.subgraphs:
        for operator in graph.operators:
            if op_name(model, operator) == "SPLIT" and len(operator.outputs) == 1:
                found.append("SPLIT into one part (object_reader.cc:373 Check failed: CanReadValue)")
    return sorted(set(found))


def mesa_version():
    """The installed `mesa-vulkan-drivers` version (Debian), or None."""
    if not shutil.which("dpkg-query"):
        return None
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "mesa-vulkan-drivers"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or "installed" not in out.stdout:
        return None
    return out.stdout.split()[-1]


def _static_unavailable_reason():
    """Why the GPU accelerator surely cannot run here, or None."""
    import ctypes

    try:
        import ai_edge_litert
    except ImportError:
        return "ai-edge-litert is not installed"
    library = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRtWebGpuAccelerator.so")
    if not os.path.exists(library):
        return "this ai-edge-litert has no GPU accelerator (libLiteRtWebGpuAccelerator.so)"
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return f"no Vulkan loader (libvulkan.so.1) for LiteRT's WebGPU accelerator: {ENABLE_HINT}"
    return None


@functools.lru_cache(maxsize=1)
def gpu_accelerator_available():
    """`(available, reason)`: whether LiteRT's GPU accelerator runs a tiny model here.

    Checked once per process: the Vulkan loader, then a real run of `tiny_model_bytes()` in a
    child process. When available, `reason` names the adapter (e.g. `WebGPU on llvmpipe (...),
    software`); else it says what is missing and how to enable it (`ENABLE_HINT`).
    """
    reason = _static_unavailable_reason()
    if reason:
        return False, reason
    with tempfile.TemporaryDirectory(prefix="keras_vit_gpu_probe_") as folder:
        path = os.path.join(folder, "probe.tflite")
        with open(path, "wb") as file:
            file.write(tiny_model_bytes("add"))
        images = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
        result = _run_child(path, images, folder, accelerator="gpu", runs=1, warmup=0, timeout=120)
    if result.runs and result.fully_accelerated and np.allclose(result.outputs, 2 * images):
        kind = ", software" if result.latency_note == SOFTWARE_LATENCY_NOTE else ""
        return True, f"WebGPU on {result.device or 'unknown adapter'}{kind}"
    mesa = mesa_version()
    found = f" (Mesa {mesa} installed)" if mesa else ""
    problem = result.summary() if not result.runs else "the probe model ran wrong or not fully accelerated"
    return False, f"LiteRT's GPU accelerator does not work here{found}: {problem}; {ENABLE_HINT}"


def _child_env(folder):
    env = dict(os.environ)
    # Dawn/Vulkan want a runtime folder; a fresh one per run where the environment names none.
    if not env.get("XDG_RUNTIME_DIR") or not os.path.isdir(env["XDG_RUNTIME_DIR"]):
        runtime = os.path.join(folder, "xdg")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = runtime
    env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


_GLOG = re.compile(r"^[FEWI]\d{4} [\d:.]+\s+\d+ ")
_OPS_LINE = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_WEBGPU_FAILURE = re.compile(r"Failed to initialize WebGPU environment[^\n]*|No adapters found[^\n]*")
_NOT_ACCELERATED = re.compile(r"Some ops are not accelerated[^\n]*")
_ADAPTER = re.compile(r"Selected adapter: (.*?), arch=(\w+).*adapterType=([^\n]*)")


def _fatal_line(stderr):
    """The line that says why a child died (a CHECK failure or another fatal log line), or ''."""
    for line in reversed([line.rstrip() for line in stderr.splitlines() if line.strip()]):
        if "Check failed" in line or re.match(r"^F\d{4} ", line):
            # "F0000 00:00:.. 123 object_reader.cc:373] Check failed: .." -> "object_reader.cc:373 Check failed: .."
            return re.sub(r"^(\S+:\d+)\] ", r"\1 ", _GLOG.sub("", line)).strip()
    return ""


def _last_line(stderr):
    """The last log line that is not a stack frame."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("@", "***")) and "Aborted" not in line]
    return _GLOG.sub("", lines[-1]).strip() if lines else ""


def _run_child(model_path, inputs, folder, accelerator="gpu", runs=20, warmup=3, timeout=300, enforce_f32=False):
    """Runs `export.accelerator_child` on raw model inputs; returns an AcceleratorRun with raw outputs."""
    np.save(os.path.join(folder, "inputs.npy"), inputs)
    command = [sys.executable, "-m", "keras_vit.export.accelerator_child", model_path, folder,
               "--accelerator", accelerator, "--runs", str(runs), "--warmup", str(warmup)]
    if enforce_f32:
        command.append("--enforce-f32")
    stderr_path = os.path.join(folder, "stderr.txt")
    returncode = None
    with open(stderr_path, "wb") as stderr, open(os.devnull, "wb") as devnull:
        try:
            process = subprocess.run(command, stdout=devnull, stderr=stderr, env=_child_env(folder),
                                     cwd=folder, timeout=timeout)
            returncode = process.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    with open(stderr_path, errors="replace") as file:
        text = file.read()
    state = {}
    result_path = os.path.join(folder, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as file:
            state = json.load(file)
    run = AcceleratorRun(status="runs", accelerator=accelerator, stage=state.get("stage"), returncode=returncode)
    run.fully_accelerated = state.get("fully_accelerated")
    adapter = _ADAPTER.search(text)
    if adapter:
        run.device = adapter.group(1)
        if adapter.group(2) == "software" or "Software" in adapter.group(3) or "llvmpipe" in adapter.group(1):
            run.latency_note = SOFTWARE_LATENCY_NOTE
        else:
            run.latency_note = f"{adapter.group(1)} ({adapter.group(3).strip()})"
    elif accelerator == "cpu":
        run.latency_note = "CPU (XNNPACK), this machine"
    counts = _OPS_LINE.search(text)
    if counts:
        run.gpu_ops, run.cpu_ops = int(counts.group(1)), int(counts.group(2))
    if returncode is None:
        run.status, run.message = "timeout", f"no result within {timeout} s"
    elif returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        fatal = _fatal_line(text)
        run.status = "aborted"
        if fatal:
            run.message = f"{fatal} ({name})"
        else:
            run.message = f"killed by {name}, no fatal message (last log line: {_last_line(text)})"
    elif returncode != 0 or state.get("status") != "runs":
        run.status = "failed"
        run.message = state.get("message") or _fatal_line(text) or _last_line(text) or f"exit status {returncode}"
        # LiteRT's exception names only its own source line; the cause is in the log.
        cause = _WEBGPU_FAILURE.search(text) or _NOT_ACCELERATED.search(text)
        if cause:
            run.message += f" ({cause.group(0).strip()})"
    else:
        run.outputs = np.load(os.path.join(folder, "outputs.npy"))
        times = np.asarray(state.get("times_ms") or [np.nan])
        run.latency = {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}
    return run


def run_compiled(tflite_path, images, accelerator="cpu", timeout=300, runs=20, warmup=3, enforce_f32=False):
    """Runs a `.tflite` classifier with LiteRT's `CompiledModel` on `accelerator` (`cpu` or `gpu`, the
    GPU with the CPU as fallback) in a child process: `run_on_gpu` without the availability check.
    Returns an `AcceleratorRun`."""
    from keras_vit.export.analysis import analyze_ops, read_tflite
    from keras_vit.export.runtime import TFLiteRunner

    if accelerator not in ("cpu", "gpu"):
        raise ValueError(f"accelerator must be 'cpu' or 'gpu', got {accelerator!r}")
    content = read_tflite(tflite_path)
    runner = TFLiteRunner(content)  # the model's I/O types, quantization and batch size
    images = runner.check_images(images)
    batch, count = runner.batch_size, len(images)
    pad = (-count) % batch
    if pad:
        images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
    inputs = runner.quantize_input(images)
    with tempfile.TemporaryDirectory(prefix="keras_vit_compiled_") as folder:
        result = _run_child(os.path.abspath(tflite_path), inputs, folder, accelerator, runs, warmup, timeout,
                            enforce_f32)
    if result.runs:
        outputs = result.outputs.reshape(len(images), -1)
        result.outputs = np.asarray(runner.dequantize_output(outputs), "float32")[:count]
        result.outputs_probabilities = runner.outputs_probabilities
        if accelerator == "gpu" and result.fully_accelerated and result.gpu_ops is None:
            result.gpu_ops, result.cpu_ops = sum(analyze_ops(content)["ops"].values()), 0
    return result


def run_on_gpu(tflite_path, images, timeout=300, runs=20, warmup=3, enforce_f32=False, check_available=True):
    """Runs a `.tflite` classifier on LiteRT's GPU accelerator in a child process.

    Args:
        tflite_path: the `.tflite` file.
        images: float32 `[N, H, W, C]` raw pixels (quantized to the model's input type here,
            with its own parameters, and fed in chunks of its static batch size; gray images
            are repeated to RGB for a file that takes RGB).
        timeout: seconds for the child (compile, all images, and the latency runs).
        runs, warmup: timed and untimed runs of one batch for the latency.
        enforce_f32: ask the GPU for float32 arithmetic (by default it may use float16,
            as on a phone).
        check_available: first check `gpu_accelerator_available()` (once per process); when
            it is not, return status `unavailable` with the reason instead of running.

    Returns:
        `AcceleratorRun`; never raises for what happens on the GPU (an abort of the child is
        status `aborted` with the child's fatal stderr line). Raises ValueError for a missing
        or corrupt file or images of the wrong shape, as the CPU runner does.
    """
    from keras_vit.export.analysis import read_tflite

    read_tflite(tflite_path)  # a missing or corrupt file is an error even where no GPU is
    if check_available:
        available, reason = gpu_accelerator_available()
        if not available:
            return AcceleratorRun(status="unavailable", message=reason)
    return run_compiled(tflite_path, images, "gpu", timeout, runs, warmup, enforce_f32)


def gpu_metrics(result, labels=None, cpu_probabilities=None, keras_probabilities=None):
    """Report fields of a GPU run: status, acceleration, accuracy, agreement and the errors of its
    class probabilities (against the CPU interpreter's and against Keras's, both `[N, K]`
    probabilities of the same images: `export.runtime.class_probabilities`) and latency.
    JSON-friendly."""
    row = result.to_dict()
    row["summary"] = result.summary()
    if not result.runs:
        return row
    probabilities = result.probabilities()
    count = len(probabilities)
    row["num_images"] = int(count)
    if labels is not None:
        row["accuracy"] = float(np.mean(probabilities.argmax(-1) == np.asarray(labels)[:count]))
    if cpu_probabilities is not None:
        cpu = np.asarray(cpu_probabilities, "float64")[:count]
        row["max_error_vs_cpu"] = float(np.abs(probabilities - cpu).max())
        row["agreement_with_cpu"] = float(np.mean(probabilities.argmax(-1) == cpu.argmax(-1)))
    if keras_probabilities is not None:
        reference = np.asarray(keras_probabilities, "float64")[:count]
        row["max_error_vs_keras"] = float(np.abs(probabilities - reference).max())
        row["agreement_with_keras"] = float(np.mean(probabilities.argmax(-1) == reference.argmax(-1)))
    return row


def evaluate_on_gpu(tflite_path, images, labels, *, keras_model=None, timeout=600):
    """`export.evaluate.evaluate_tflite` on LiteRT's GPU accelerator: `images` (raw 0..255,
    `[N, H, W, C]`, all in one child-process call: limit them for large test sets) run on
    the GPU in a child process, compared with the CPU interpreter (and with `keras_model`
    when given).

    Returns a dict: `accelerator` (`gpu`), `gpu_status` (see `AcceleratorRun`),
    `gpu_message`, `fully_accelerated`, `gpu_ops`, `cpu_ops`, and when it runs `test_accuracy`,
    `num_images`, `max_error_vs_cpu`, `agreement_with_cpu`, latency (`median_latency_ms`,
    `p90_latency_ms`, `latency_note`), and `agreement_with_keras` / `max_probability_error` /
    `mean_probability_error` against Keras (None without one); all compared as class probabilities.
    Raises ValueError where the GPU accelerator is not available (with the reason) and for a bad
    file or image size.
    """
    from keras_vit.export.analysis import read_tflite
    from keras_vit.export.evaluate import check_image_array, compare_outputs, keras_probabilities
    from keras_vit.export.runtime import TFLiteRunner

    content = read_tflite(tflite_path)
    runner = TFLiteRunner(content)
    available, reason = gpu_accelerator_available()
    if not available:
        raise ValueError(f"LiteRT's GPU accelerator is not available: {reason}")
    images = check_image_array(images, runner.input_shape[1:], "test images", labels)
    labels = np.asarray(labels)
    result = run_on_gpu(tflite_path, images, timeout=timeout, check_available=False)
    cpu = runner.probabilities(images)
    row = gpu_metrics(result, labels, cpu)
    metrics = {
        "accelerator": "gpu",
        "gpu_status": result.status,
        "gpu_message": result.message,
        "fully_accelerated": result.fully_accelerated,
        "gpu_ops": result.gpu_ops,
        "cpu_ops": result.cpu_ops,
        "test_accuracy": row.get("accuracy"),
        "num_images": int(len(labels)),
        "size_bytes": int(os.path.getsize(tflite_path)),
        "max_error_vs_cpu": row.get("max_error_vs_cpu"),
        "agreement_with_cpu": row.get("agreement_with_cpu"),
        "median_latency_ms": result.latency["median_ms"] if result.latency else None,
        "p90_latency_ms": result.latency["p90_ms"] if result.latency else None,
        "latency_note": result.latency_note,
        "device": result.device,
        "batch_size": runner.batch_size,
        "output_kind": "probabilities" if runner.outputs_probabilities else "logits",
        "agreement_with_keras": None,
        "max_probability_error": None,
        "mean_probability_error": None,
    }
    if keras_model is not None and result.runs:
        metrics.update(compare_outputs(result.probabilities(), keras_probabilities(keras_model, images)))
    return metrics
