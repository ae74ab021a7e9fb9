"""Runs the benchmark plan: each measurement in its own process, ours and keras-hub back to back.

The two implementations of a measurement run one right after the other, in an order
that alternates from one measurement to the next, so that on a shared machine both
see nearly the same load; each process also times a float32 matmul between its
repeats, which gives every figure a fraction of the matmul rate under its own load.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.models import IMPLEMENTATIONS

# (config, mode, batch) in the order they run.
_INFER = ("predict", "compiled", "xla", "savedmodel", "tflite")


def _full_plan():
    # Sized to run in about 50 minutes on 2 shared cores; ViT-S/16 gets the main paths.
    per_config = [("compiled", 1), ("compiled", 32), ("xla", 32), ("predict", 32),
                  ("savedmodel", 32), ("tflite", 1), ("tflite", 32),
                  ("fit", 32), ("fit_xla", 32), ("fit_mixed", 32)]
    plan = [(config, mode, batch) for config in ("vit_ti16", "cifar") for mode, batch in per_config]
    plan += [("vit_s16", mode, batch) for mode, batch in
             [("compiled", 32), ("tflite", 32), ("fit", 32), ("fit_mixed", 32)]]
    return plan


PLANS = {
    # About 5 minutes on 2 idle cores: every inference path on the CIFAR configuration,
    # the compiled paths of ViT-Ti/16 at 224, and float32 training on CIFAR.
    "quick": [
        ("cifar", "compiled", 1),
        ("cifar", "compiled", 32),
        ("cifar", "xla", 32),
        ("cifar", "predict", 32),
        ("cifar", "savedmodel", 32),
        ("cifar", "tflite", 32),
        ("cifar", "fit", 32),
        ("vit_ti16", "compiled", 32),
        ("vit_ti16", "xla", 32),
    ],
    "full": _full_plan(),
}
SETTINGS = {"quick": dict(repeats=3, min_time=0.6), "full": dict(repeats=3, min_time=1.5)}


def _run_json(args, log):
    """Runs `python -m ARGS...`, returns its last stdout line as JSON (or an error dict)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        log(f"  FAILED ({proc.returncode}) {' '.join(args)}: {' | '.join(tail)}")
        return {"error": " | ".join(tail), "returncode": proc.returncode, "process_s": elapsed}
    result = json.loads(lines[-1])
    result["process_s"] = elapsed
    return result


def run_plan(plan_name, artifacts, log=print, configs=None, modes=None):
    """Runs a named plan (optionally narrowed to some configs/modes); returns the results."""
    if plan_name not in PLANS:
        raise ValueError(f"plan must be one of {sorted(PLANS)}, got {plan_name!r}")
    settings = SETTINGS[plan_name]
    plan = [
        item for item in PLANS[plan_name]
        if (not configs or item[0] in configs) and (not modes or item[1] in modes)
    ]
    if not plan:
        raise ValueError(f"nothing to run: no {plan_name} item matches configs={configs} modes={modes}")
    os.makedirs(artifacts, exist_ok=True)
    # A fresh folder per run: exported files from an earlier version of the code must
    # never be timed as this one.
    artifacts = tempfile.mkdtemp(dir=artifacts, prefix="run-")
    try:
        return _run_items(plan, settings, artifacts, log)
    finally:
        shutil.rmtree(artifacts, ignore_errors=True)


def _run_items(plan, settings, artifacts, log):
    prepared, results = set(), []
    for index, (config, mode, batch) in enumerate(plan):
        order = IMPLEMENTATIONS if index % 2 == 0 else IMPLEMENTATIONS[::-1]
        for impl in order:
            if mode in ("savedmodel", "tflite") and (impl, config) not in prepared:
                log(f"  exporting {config} {impl} (SavedModel, TFLite)")
                exported = _run_json(["bench.convert", "--impl", impl, "--config", config,
                                      "--dir", artifacts], log)
                if "error" not in exported:
                    prepared.add((impl, config))
            args = ["bench.throughput", "--impl", impl, "--config", config, "--mode", mode,
                    "--batch", str(batch), "--repeats", str(settings["repeats"]),
                    "--min-time", str(settings["min_time"]), "--artifacts", artifacts]
            result = _run_json(args, log)
            result.update(impl=impl, config=config, mode=mode, batch=batch)
            results.append(result)
            if "images_per_s" in result:
                ips = sorted(result["images_per_s"])
                log(f"  {config:9s} {mode:11s} b{batch:<3d} {impl:9s} "
                    f"{ips[len(ips) // 2]:8.1f} img/s  rss {result['peak_rss_mib']:.0f} MiB  "
                    f"({result['process_s']:.0f} s)")
    return results
