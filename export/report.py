"""The export report: one row per mode with size, accuracy, parity, latency and graph facts,
written as `report.md` and `report.json`."""

import datetime
import os
import platform

import numpy as np

from export.analysis import analyze_ops, gpu_compatibility
from export.evaluate import compare_outputs
from export.runtime import TFLiteRunner
from export.tflite import write_atomic


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


def build_report(contents, images, labels, keras_logits, thread_counts=(1, 2), rounds=5, runs=20, files=None):
    """Rows of the report, one per mode.

    Args:
        contents: `{mode: tflite bytes}`.
        images: float32 `[N, H, W, C]` test images; labels `[N]`.
        keras_logits: the Keras model's outputs on `images`.
        files: optional `{mode: file name}` to show.
    """
    latencies = measure_latencies(contents, thread_counts, rounds, runs)
    float_size = len(contents["float32"]) if "float32" in contents else None
    rows = []
    for mode, content in contents.items():
        outputs = TFLiteRunner(content).predict(images)
        ops = analyze_ops(content)
        gpu_ok, gpu_text = gpu_compatibility(content)
        row = {
            "mode": mode,
            "file": (files or {}).get(mode),
            "size_bytes": len(content),
            "size_vs_float32": len(content) / float_size if float_size else None,
            "accuracy": float(np.mean(outputs.argmax(-1) == labels)),
            **compare_outputs(outputs, keras_logits, labels),
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
        }
        if "float32" in latencies:
            row["latency_vs_float32"] = {
                str(t): latencies[mode][t]["median_ms"] / latencies["float32"][t]["median_ms"] for t in thread_counts
            }
        rows.append(row)
    return rows


def _gpu_summary(text):
    lines = [line.strip() for line in text.splitlines() if "not supported" in line.lower() or "warning" in line.lower()]
    return "; ".join(dict.fromkeys(lines))[:300]


def format_markdown(rows, title="Export report", context=None):
    """The report rows as Markdown: the main table, then ops and Analyzer notes per mode."""
    threads = list(rows[0]["latency"]) if rows else []
    head = ["mode", "size", "x float32", "accuracy", "agreement", "max / mean logit err"]
    head += [f"{t} thr median / p90 ms" for t in threads]
    head += ["x float32 latency (1 thr)", "builtin", "static", "fully integer", "GPU delegate"]
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
            f"{r['max_logit_error']:.2e} / {r['mean_logit_error']:.2e}",
        ]
        cells += [f"{r['latency'][t]['median_ms']:.2f} / {r['latency'][t]['p90_ms']:.2f}" for t in threads]
        cells += [
            f"{ratio:.2f}" if ratio is not None else "",
            "yes" if r["all_builtin"] else "NO",
            "yes" if r["static"] else f"no ({', '.join(r['dynamic_ops'])})",
            "yes" if r["fully_integer"] else "no",
            "yes" if r["gpu_compatible"] else "no",
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
    return "\n".join(lines) + "\n"


def write_report(rows, folder, title="Export report", context=None):
    """Writes `report.md` and `report.json` into `folder` atomically; returns their paths."""
    import json

    context = dict(context or {})
    context.setdefault("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    context.setdefault("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    md_path, json_path = os.path.join(folder, "report.md"), os.path.join(folder, "report.json")
    write_atomic(md_path, format_markdown(rows, title, context).encode())
    write_atomic(json_path, (json.dumps({"context": context, "rows": rows}, indent=2) + "\n").encode())
    return md_path, json_path
