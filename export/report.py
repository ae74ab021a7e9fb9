"""The export report: one row per mode with size, accuracy, parity, latency and graph facts,
written as `report.md` and `report.json`."""

import datetime
import os
import platform

import numpy as np

from keras_vit.export.analysis import analyze_ops, gpu_compatibility
from keras_vit.export.evaluate import compare_outputs
from keras_vit.export.runtime import TFLiteRunner
from keras_vit.files import write_bytes_atomic


def measure_latencies(contents, thread_counts=(1, 2), rounds=5, runs=20):
    """Median / p90 ms per model and thread count, measured interleaved.

    The models take turns round after round, so that load from other processes on a
    shared machine hits all of them alike; samples of all rounds are pooled.
    """
    results = {}
    for threads in thread_counts:
        runners = {name: TFLiteRunner(content, num_threads=threads) for name, content in contents.items()}
        samples = {name: [] for name in contents}
        for _ in range(rounds):
            for name, runner in runners.items():
                runner.latency(runs=1, warmup=2)
                samples[name].append(_timed_invokes(runner, runs))
        for name in contents:
            times = np.concatenate(samples[name])
            results.setdefault(name, {})[threads] = {
                "median_ms": float(np.median(times)),
                "p90_ms": float(np.percentile(times, 90)),
            }
    return results


def _timed_invokes(runner, runs):
    import time

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.interpreter.invoke()
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def _are_probabilities(outputs):
    """Whether `[N, K]` outputs look like probabilities: non-negative rows that sum to 1."""
    outputs = np.asarray(outputs, "float64")
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-4))


def build_report(contents, images, labels, keras_logits, thread_counts=(1, 2), rounds=5, runs=20, files=None,
                 gpu_runs=None, keras_outputs_probabilities=None):
    """Rows of the report, one per mode. Files and Keras are compared as class probabilities
    (`export.evaluate.compare_outputs`), whatever each outputs.

    Args:
        contents: `{mode: tflite bytes}`.
        images: float32 `[N, H, W, C]` test images (gray ones for a gray model: its files that
            take RGB get them repeated); labels `[N]`.
        keras_logits: the Keras model's outputs on `images` (logits, or probabilities of a softmax
            head: `keras_outputs_probabilities`, which None tells from the values).
        files: optional `{mode: file name}` to show.
        gpu_runs: optional `{mode: export.accelerator.AcceleratorRun}` of the files run on
            LiteRT's GPU accelerator (on the first images); each row's `gpu` then holds the
            run's status, acceleration, accuracy, agreement and errors against the CPU
            interpreter and Keras, and latency (`export.accelerator.gpu_metrics`). Without it
            `gpu` is None (not checked).
    """
    from keras_vit.export.accelerator import gpu_metrics, known_gpu_aborts

    from keras_vit.export.runtime import class_probabilities

    if keras_outputs_probabilities is None:
        keras_outputs_probabilities = _are_probabilities(keras_logits)
    reference = class_probabilities(keras_logits, keras_outputs_probabilities)
    latencies = measure_latencies(contents, thread_counts, rounds, runs)
    float_size = len(contents["float32"]) if "float32" in contents else None
    rows = []
    for mode, content in contents.items():
        runner = TFLiteRunner(content)
        probabilities = runner.probabilities(images)
        ops = analyze_ops(content)
        gpu_ok, gpu_text = gpu_compatibility(content)
        row = {
            "mode": mode,
            "file": (files or {}).get(mode),
            "size_bytes": len(content),
            "size_vs_float32": len(content) / float_size if float_size else None,
            "output_kind": "probabilities" if runner.outputs_probabilities else "logits",
            "accuracy": float(np.mean(probabilities.argmax(-1) == labels)),
            **compare_outputs(probabilities, reference, labels),
            "latency": {str(t): latencies[mode][t] for t in thread_counts},
            "ops": ops["ops"],
            "all_builtin": ops["all_builtin"],
            "static": ops["static"],
            "dynamic_ops": ops["dynamic_ops"],
            "fully_integer": ops["fully_integer"],
            "float_ops": ops["float_ops"],
            "inputs": ops["inputs"],
            "outputs": ops["outputs"],
            "gpu_compatible": gpu_ok,
            "gpu_analyzer_output": gpu_text,
            # Ops the Analyzer passes but that abort the GPU accelerator at run time.
            "gpu_known_aborts": known_gpu_aborts(content),
            "gpu": None,
        }
        if gpu_runs is not None and mode in gpu_runs:
            row["gpu"] = gpu_metrics(gpu_runs[mode], labels, probabilities, reference)
        if "float32" in latencies:
            row["latency_vs_float32"] = {
                str(t): latencies[mode][t]["median_ms"] / latencies["float32"][t]["median_ms"] for t in thread_counts
            }
        rows.append(row)
    return rows


def _gpu_summary(text):
    lines = [line.strip() for line in text.splitlines() if "not supported" in line.lower() or "warning" in line.lower()]
    return "; ".join(dict.fromkeys(lines))[:300]


def _gpu_cell(gpu):
    """Short verdict of a GPU run for the main table."""
    if not gpu:
        return "not checked"
    if gpu["status"] == "runs":
        if gpu.get("fully_accelerated"):
            return "runs, fully accelerated"
        if gpu.get("cpu_ops") is not None:
            return f"runs, {gpu['cpu_ops']} of {gpu['cpu_ops'] + gpu['gpu_ops']} ops on CPU"
        return "runs, partly on CPU"
    if gpu["status"] == "unavailable":
        return "not run (no GPU accelerator here)"
    return f"**{gpu['status'].upper()}**"


# What each file is for, whatever this machine measured (see export.accelerator for the GPU).
INTENDED_ACCELERATOR = {
    "float32": "the reference; CPU, or the GPU (which may compute in float16)",
    "float16": "the GPU accelerator (its native precision, half the float32 file)",
    "dynamic": "the CPU (XNNPACK's dynamic-range kernels); the GPU dequantizes it to float",
    "int8": "the CPU (XNNPACK integer kernels) and integer NPUs; the GPU dequantizes it to float "
    "(no integer speed there): use float16 for the GPU",
    "int16x8": "NPUs with 16-bit activations (docs/npu.md); not the CPU (no XNNPACK int16 kernels: 20-30x "
    "float32's latency), and the GPU accelerator runs its int16 ops on the CPU",
    "weight_only": "a smaller file only: its weights are dequantized to float before each op, so it runs as "
    "float32 does on the CPU; the GPU accelerator refuses it",
}
# An int8 file with parts kept float (--float-fallback, --float-ops) is not fully integer.
PARTLY_INTEGER = ("the CPU (int8 projections, float elsewhere: the fastest int8 where XNNPACK lacks int8 "
                  "softmax and attention kernels); not for integer-only NPUs; use float16 for the GPU")


def _accelerator_section(rows):
    """`## GPU accelerator` and `## Which file for which accelerator`."""
    lines = ["", "## LiteRT GPU accelerator (run, not the static Analyzer)", ""]
    gpus = [r.get("gpu") for r in rows]
    if not any(gpus):
        lines += ["Not checked (`--no-gpu-check`)."]
    unavailable = [g for g in gpus if g and g["status"] == "unavailable"]
    if unavailable:
        lines += [f"Not run: {unavailable[0]['message']}", ""]
    ran = [(r, r["gpu"]) for r in rows if r.get("gpu") and r["gpu"]["status"] != "unavailable"]
    if ran:
        note = next((g.get("latency_note") for _, g in ran if g.get("latency_note")), "")
        head = ["mode", "result", "accuracy", "agreement with Keras", "max probability err vs CPU interpreter",
                f"median / p90 ms ({note})", "message"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r, g in ran:
            runs = g["status"] == "runs"
            cells = [
                r["mode"],
                _gpu_cell(g),
                f"{g['accuracy']:.4f}" if runs and "accuracy" in g else "",
                f"{g['agreement_with_keras']:.4f}" if runs and "agreement_with_keras" in g else "",
                f"{g['max_error_vs_cpu']:.2e}" if runs and "max_error_vs_cpu" in g else "",
                f"{g['latency']['median_ms']:.2f} / {g['latency']['p90_ms']:.2f}" if runs and g.get("latency") else "",
                "" if runs else g.get("message", "").replace("|", "/"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        images = next((g.get("num_images") for _, g in ran if g.get("num_images")), None)
        lines += ["", f"On {images or 'the first'} test images, in a child process (an abort there is recorded, "
                  "not fatal). The CPU interpreter's probabilities are the reference for the error."]
    lines += ["", "## Which file for which accelerator", ""]
    for r in rows:
        base = r["mode"].split("+")[0].split(":")[0]  # int8+float:attention, int8:ai-edge -> int8
        intended = INTENDED_ACCELERATOR.get(base, "")
        if base == "int8" and not r.get("fully_integer", True):
            intended = PARTLY_INTEGER
        if r["mode"].endswith(":ai-edge"):
            intended += " (made by AI Edge Quantizer)"
        g = r.get("gpu")
        if g and g["status"] in ("aborted", "failed", "timeout"):
            intended += f". **Not for the GPU: it {g['status']} there** ({g.get('message', '')})"
        elif r.get("gpu_known_aborts"):
            intended += f". **Not for the GPU: it holds ops that abort it** ({'; '.join(r['gpu_known_aborts'])})"
        lines.append(f"- **{r['mode']}**" + (f" ({r['file']})" if r.get("file") else "") + f": {intended}")
    return lines


def _analyzer_cell(row):
    """The Analyzer's static verdict, overruled by ops known to abort at run time."""
    verdict = "yes" if row["gpu_compatible"] else "no"
    if row.get("gpu_known_aborts"):
        return f"{verdict}, but aborts at run time: {'; '.join(row['gpu_known_aborts'])}"
    return verdict


def recommend(rows, tolerance=0.01):
    """The files to use, from measured rows: per thread count, the fastest CPU file whose accuracy
    is within `tolerance` (0.01: 1 point) of float32's, and the GPU-accelerator file.

    The GPU file is float16 (its native precision, half the float32 file) unless float16 did not
    run there (aborted, failed, timed out): then the fastest file that ran, or None.

    Returns `{"cpu": {threads: {"mode", "median_ms", "x_float32", "accuracy"}}, "gpu": {"mode",
    "reason"}, "tolerance"}`; without a float32 row the best accuracy is the reference.
    """
    if not rows:
        return {"cpu": {}, "gpu": {"mode": None, "reason": "no files"}, "tolerance": tolerance}
    by_mode = {r["mode"]: r for r in rows}
    reference = by_mode["float32"]["accuracy"] if "float32" in by_mode else max(r["accuracy"] for r in rows)
    accurate = [r for r in rows if r["accuracy"] >= reference - tolerance - 1e-9]
    cpu = {}
    for threads in rows[0]["latency"]:
        best = min(accurate, key=lambda r: r["latency"][threads]["median_ms"])
        cpu[threads] = {
            "mode": best["mode"],
            "median_ms": best["latency"][threads]["median_ms"],
            "x_float32": best.get("latency_vs_float32", {}).get(threads),
            "accuracy": best["accuracy"],
        }
    float16 = by_mode.get("float16")
    gpu16 = (float16 or {}).get("gpu")
    if float16 is not None and (not gpu16 or gpu16["status"] in ("runs", "unavailable")):
        reason = "runs on the GPU accelerator" if gpu16 and gpu16["status"] == "runs" else (
            "not run here; the GPU's native precision")
        gpu = {"mode": "float16", "reason": reason}
    else:
        ran = [r for r in rows if r.get("gpu") and r["gpu"]["status"] == "runs"]
        if ran:
            best = min(ran, key=lambda r: (r["gpu"].get("latency") or {}).get("median_ms", float("inf")))
            why = f"float16 {gpu16['status']} there" if gpu16 else "no float16 file"
            gpu = {"mode": best["mode"], "reason": f"{why}; the fastest file that ran"}
        else:
            gpu = {"mode": None, "reason": "no file ran on the GPU accelerator"}
    from keras_vit.export.cpu_features import cpu_int8_features, describe_int8_support

    features = cpu_int8_features()
    return {"cpu": cpu, "gpu": gpu, "tolerance": tolerance,
            "cpu_int8": dict(features, **describe_int8_support(features))}


def int8_verdict(rows, features=None):
    """Why the int8 and dynamic-range files are or are not faster than float32 on this CPU: its
    int8 instructions (`cpu_features`), and the measured ratios. One line."""
    from keras_vit.export.cpu_features import cpu_int8_features, describe_int8_support

    features = features or cpu_int8_features()
    support = describe_int8_support(features)
    ratios = []
    for r in rows:
        if r["mode"].startswith(("int8", "dynamic")) and r.get("latency_vs_float32"):
            ratios.append(f"{r['mode']} " + " / ".join(f"{x:.2f}x" for x in r["latency_vs_float32"].values()))
    measured = f" (measured here, float32 = 1, by thread count: {'; '.join(ratios)})" if ratios else ""
    flags = ", ".join(features["int8"]) or "none known"
    if support["int8_pays"] is False:
        return f"int8 is not expected to be faster than float32 on this CPU ({features['cpu']}; int8 instructions: " \
               f"{flags}): {support['why']}{measured}"
    if support["int8_pays"]:
        return (f"int8 can be faster than float32 on this CPU ({features['cpu']}; {support['why']}){measured}; "
                "an int8 file slower here loses to its quantize and dequantize steps or its float ops (see the ops "
                "per mode)")
    return f"int8 speed unknown for this CPU ({features['cpu']}): {support['why']}{measured}"


def _recommendation_section(rows):
    advice = recommend(rows)
    points = f"{100 * advice['tolerance']:g} point"
    lines = ["", "## Recommendation", ""]
    for threads, pick in advice["cpu"].items():
        ratio = f", {pick['x_float32']:.2f}x float32's latency" if pick["x_float32"] is not None else ""
        lines.append(f"- CPU, {threads} thread{'s' if threads != '1' else ''}: **{pick['mode']}** "
                     f"({pick['median_ms']:.2f} ms{ratio}, accuracy {pick['accuracy']:.4f}): the fastest file "
                     f"within {points} of float32's accuracy")
    if any(r["mode"].startswith(("int8", "dynamic")) for r in rows):
        lines.append(f"- Why: {int8_verdict(rows)}")
    gpu = advice["gpu"]
    lines.append(f"- GPU accelerator: **{gpu['mode']}** ({gpu['reason']})" if gpu["mode"]
                 else f"- GPU accelerator: none ({gpu['reason']})")
    return lines


def format_markdown(rows, title="Export report", context=None):
    """The report rows as Markdown: the main table, then ops and Analyzer notes per mode, and
    the GPU accelerator's run results."""
    threads = list(rows[0]["latency"]) if rows else []
    head = ["mode", "size", "x float32", "accuracy", "agreement", "max / mean probability err"]
    head += [f"{t} thr median / p90 ms" for t in threads]
    head += ["x float32 latency (1 thr)", "builtin", "static", "fully integer", "GPU accelerator (run)",
             "GPU Analyzer (static)"]
    lines = [f"# {title}", ""]
    for key, value in (context or {}).items():
        lines.append(f"- {key}: {value}")
    if context:
        lines.append("")
    if rows:
        images = (context or {}).get("images", "?")
        lines.append(f"Keras accuracy on the same images: {rows[0]['keras_accuracy']:.4f} ({images} images)")
        lines.append("")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = r.get("latency_vs_float32", {}).get(threads[0]) if threads else None
        cells = [
            r["mode"],
            f"{r['size_bytes'] / 1e6:.3f} MB",
            f"{r['size_vs_float32']:.2f}" if r["size_vs_float32"] else "",
            f"{r['accuracy']:.4f}",
            f"{r['agreement_with_keras']:.4f}",
            f"{r['max_probability_error']:.2e} / {r['mean_probability_error']:.2e}",
        ]
        cells += [f"{r['latency'][t]['median_ms']:.2f} / {r['latency'][t]['p90_ms']:.2f}" for t in threads]
        cells += [
            f"{ratio:.2f}" if ratio is not None else "",
            "yes" if r["all_builtin"] else "NO",
            "yes" if r["static"] else f"no ({', '.join(r['dynamic_ops'])})",
            "yes" if r["fully_integer"] else "no",
            _gpu_cell(r.get("gpu")),
            _analyzer_cell(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Ops per mode", ""]
    for r in rows:
        ops = ", ".join(f"{name} x{count}" for name, count in r["ops"].items())
        lines.append(f"- **{r['mode']}**: {ops}")
        if r["float_ops"] and r["mode"].startswith("int"):
            lines.append(f"  - float ops: {r['float_ops']}")
        if not r["gpu_compatible"]:
            lines.append(f"  - GPU Analyzer: {_gpu_summary(r['gpu_analyzer_output'])}")
    if rows:
        lines += _recommendation_section(rows)
        lines += _accelerator_section(rows)
        lines += _validation_section(rows)
    return "\n".join(lines) + "\n"


def _validation_section(rows):
    """AI Edge Quantizer's per-tensor comparison (`export.ai_edge_quantizer.validate`) of its files."""
    checked = [r for r in rows if r.get("ai_edge_validation")]
    if not checked:
        return []
    lines = ["", "## AI Edge Quantizer: where the error arises (validate)", "",
             "Mean-squared error of each tensor against the float32 file's, on the first test images; "
             "the largest first.", ""]
    for r in checked:
        v = r["ai_edge_validation"]
        worst = ", ".join(f"`{name}` {mse:.3g}" for name, mse in v["worst"])
        output = ", ".join(f"{mse:.3g}" for mse in v["output_mse"].values())
        lines.append(f"- **{r['mode']}** ({v['tensors']} tensors, {v['images']} images): output {output}; "
                     f"median {v['median_mse']:.3g}; worst {worst}")
    return lines


def write_report(rows, folder, title="Export report", context=None):
    """Writes `report.md` and `report.json` into `folder` atomically; returns their paths."""
    import json

    context = dict(context or {})
    context.setdefault("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    context.setdefault("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    md_path, json_path = os.path.join(folder, "report.md"), os.path.join(folder, "report.json")
    write_bytes_atomic(md_path, format_markdown(rows, title, context).encode())
    write_bytes_atomic(json_path, (json.dumps({"context": context, "rows": rows, "recommendation": recommend(rows)}, indent=2) + "\n").encode())
    return md_path, json_path
