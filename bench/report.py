"""Turns raw benchmark results into rows, a Markdown report and a PNG chart of the ratios."""

import os
import statistics
import tempfile

TARGETS = {"inference": (1.5, 0.70), "training": (1.3, 0.60)}  # (x keras-hub, of matmul rate)


def _median(values):
    return statistics.median(values) if values else float("nan")


def summarize(results):
    """Pairs ours with keras-hub per (config, mode, batch, dtype); returns rows (dicts).

    Each side: median images/s with min and max over the repeats, GFLOP/s, fraction
    of the matmul rate measured in the same process, CPU-time images/s, peak RSS.
    Ratios: wall-clock medians ours/keras-hub, and the same from CPU time.
    """
    sides = {}
    for r in results:
        sides.setdefault((r["config"], r["mode"], r["batch"]), {})[r["impl"]] = r
    rows = []
    for (config, mode, batch), pair in sides.items():
        row = {"config": config, "mode": mode, "batch": batch}
        for impl, r in pair.items():
            if "images_per_s" not in r:
                row[impl] = {"error": r.get("error", "failed")}
                continue
            ips = _median(r["images_per_s"])
            gflops = ips * r["flops_per_image"] / 1e9
            matmul = _median(r["matmul_gflops"])
            row[impl] = {
                "ips": ips, "min": min(r["images_per_s"]), "max": max(r["images_per_s"]),
                "cpu_ips": _median(r["cpu_images_per_s"]), "gflops": gflops,
                "matmul_gflops": matmul, "of_matmul": gflops / matmul,
                "rss_mib": r["peak_rss_mib"], "params": r.get("params"),
                "dtype": r.get("dtype", "float32"),
            }
        ours, peer = row.get("ours", {}), row.get("keras_hub", {})
        if "ips" in ours and "ips" in peer:
            row["ratio"] = ours["ips"] / peer["ips"]
            row["ratio_cpu"] = ours["cpu_ips"] / peer["cpu_ips"]
            if ours["params"] is not None and peer["params"] is not None:
                row["params_equal"] = ours["params"] == peer["params"]
        rows.append(row)
    return rows


def target_lines(rows):
    """One line per config and kind (inference at batch 32, training): the best path of
    ours against the targets (x keras-hub on the same path, fraction of matmul rate)."""
    lines = []
    kinds = {"inference": ("compiled", "xla", "predict"), "training": ("fit", "fit_xla")}
    for config in dict.fromkeys(r["config"] for r in rows):
        for kind, modes in kinds.items():
            candidates = [r for r in rows if r["config"] == config and r["mode"] in modes
                          and r["batch"] == 32 and "ratio" in r]
            if not candidates:
                continue
            best = max(candidates, key=lambda r: r["ours"]["ips"])
            ratio_target, matmul_target = TARGETS[kind]
            ratio_ok = "met" if best["ratio"] >= ratio_target else "not met"
            mm_ok = "met" if best["ours"]["of_matmul"] >= matmul_target else "not met"
            peer_best = max(candidates, key=lambda r: r["keras_hub"]["ips"])
            lines.append(
                f"- {config} {kind}, best of ours (`{best['mode']}`, {best['ours']['ips']:.1f} img/s) "
                f"vs best of keras-hub (`{peer_best['mode']}`, {peer_best['keras_hub']['ips']:.1f} "
                f"img/s): {best['ours']['ips'] / peer_best['keras_hub']['ips']:.2f}x."
            )
            lines.append(
                f"- {config} {kind} (fastest path of ours: `{best['mode']}`): "
                f"{best['ratio']:.2f}x keras-hub on that path (CPU time {best['ratio_cpu']:.2f}x; "
                f"target {ratio_target}x: {ratio_ok}), "
                f"{100 * best['ours']['of_matmul']:.0f}% of the matmul rate "
                f"(target {100 * matmul_target:.0f}%: {mm_ok})."
            )
    return lines


def _side(s):
    if not s:
        return "-", "-", "-", "-"
    if "error" in s:
        return "failed", "-", "-", "-"
    return (
        f"{s['ips']:.1f} ({s['min']:.1f}-{s['max']:.1f})",
        f"{s['gflops']:.0f}",
        f"{100 * s['of_matmul']:.0f}%",
        f"{s['rss_mib']:.0f}",
    )


def markdown(rows, machine, command, elapsed_s):
    """The report as Markdown: machine, method, one table per configuration."""
    lines = [
        "## Throughput: keras-vit vs keras-hub `ViTBackbone` + Dense head",
        "",
        f"Command: `{command}` ({elapsed_s / 60:.1f} min).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['cpu_flags'])}, "
        f"{machine['memory_gib']} GiB; Python {machine['python']}, TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}, keras-hub {machine['keras_hub']}; load average at start "
        f"{' '.join(f'{v:.1f}' for v in machine['load_average'])}. Float32 `tf.matmul` "
        f"(4096x4096) at start/end of the run: {machine.get('matmul_gflops', 'n/a')} GFLOP/s.",
        "",
        "Each cell: median images/s over the timed repeats after warm-up (min-max); GFLOP/s from "
        "the matrix-product FLOPs (training = 3x forward); `%mm` = that GFLOP/s over the float32 "
        "2048x2048 matmul rate timed between the repeats in the same process (same load); RSS = peak "
        "resident MiB of the measuring process (SavedModel/TFLite: loaded file only). `ratio` = "
        "ours/keras-hub medians; `cpu` = the same ratio from process CPU time, less sensitive to "
        "other processes on a shared machine.",
        "",
    ]
    for config in dict.fromkeys(r["config"] for r in rows):
        params = {
            impl: next((r[impl]["params"] for r in rows if r["config"] == config
                        and r.get(impl, {}).get("params")), None)
            for impl in ("ours", "keras_hub")
        }
        same = "equal" if params["ours"] == params["keras_hub"] else "DIFFERENT"
        lines += [
            f"### {config} (parameters: ours {params['ours']:,}, keras-hub "
            f"{params['keras_hub']:,}: {same})" if all(params.values()) else f"### {config}",
            "",
            "| mode | batch | dtype | ours img/s | GFLOP/s | %mm | RSS | keras-hub img/s | GFLOP/s "
            "| %mm | RSS | ratio | cpu |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["config"] != config:
                continue
            ours, peer = _side(r.get("ours")), _side(r.get("keras_hub"))
            dtype = (r.get("ours") or {}).get("dtype", "float32")
            ratio = f"**{r['ratio']:.2f}**" if "ratio" in r else "-"
            cpu = f"{r['ratio_cpu']:.2f}" if "ratio_cpu" in r else "-"
            lines.append(
                f"| {r['mode']} | {r['batch']} | {dtype} | {' | '.join(ours)} | {' | '.join(peer)} "
                f"| {ratio} | {cpu} |"
            )
        lines.append("")
    targets = target_lines(rows)
    if targets:
        lines += ["### Against the speed targets", ""] + targets + [""]
    return "\n".join(lines)


def chart(rows, path):
    """Writes a horizontal bar chart of ours/keras-hub ratios (wall and CPU time) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "ratio" in r]
    if not rows:
        return None
    labels = [f"{r['config']} {r['mode']} b{r['batch']}" for r in rows]
    height = 0.4
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    y = range(len(rows))
    ax.barh([i - height / 2 for i in y], [r["ratio"] for r in rows], height, label="wall clock")
    ax.barh([i + height / 2 for i in y], [r["ratio_cpu"] for r in rows], height, label="CPU time")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(1.3, color="gray", linestyle=":", linewidth=1, label="1.3x (training target)")
    ax.axvline(1.5, color="gray", linestyle="--", linewidth=1, label="1.5x (inference target)")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("throughput ratio keras-vit / keras-hub (higher is faster)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.35 * len(rows) + 1.5)), ncol=4)
    fig.tight_layout()
    fd, staging = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".png")
    os.close(fd)
    fig.savefig(staging, dpi=110)
    plt.close(fig)
    os.replace(staging, path)
    return path


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    fd, staging = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(staging, path)
