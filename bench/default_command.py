"""The default `keras-vit train` command on a dataset: test accuracy, wall time and peak memory.

    python bench/default_command.py digits --seeds 0,1,2,3,4
    python bench/default_command.py npz:../shared/data/mnist.npz
    python bench/default_command.py folder:/tmp/photos224_3000 --args "--epochs 1"
    python bench/default_command.py digits --runner bench.experiments.keras_adamw_train --name digits_keras_adamw

Each run is `keras-vit train --dataset SPEC --seed S --output runs/bench/default_NAME_sS [ARGS]` in
a child process, timed from start to exit (data loading, training, the final test), with the
child's peak resident memory and CPU use (user + system time over wall time: 200% is two cores
busy throughout). Prints a markdown table with the CPU flags and writes
`runs/bench/default_command.jsonl`.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.machine import machine_info  # noqa: E402


def run(spec, seed, extra, name, runner="keras_vit.training"):
    output = os.path.join(ROOT, "runs", "bench", f"default_{name}_s{seed}")
    command = [sys.executable, "-m", runner, "train", "--dataset", spec, "--seed", str(seed), "--output", output,
               *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, text=True)
        # wait4 gives this child's own peak memory (RUSAGE_CHILDREN would be the largest so far).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if status:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    peak = usage.ru_maxrss * 1024
    with open(os.path.join(output, "metrics.json")) as file:
        metrics = json.load(file)
    choice = next((line for line in out.splitlines() if line.startswith("model: auto")), "")
    cpu_percent = 100 * (usage.ru_utime + usage.ru_stime) / wall  # of one core, over the whole run
    return {"spec": spec, "seed": seed, "args": extra, "wall_seconds": wall, "peak_rss_bytes": peak,
            "cpu_percent": cpu_percent,
            "test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
            "epochs_run": metrics["epochs_run"], "num_params": metrics["num_params"],
            "precision": metrics["precision"], "choice": choice}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--args", default="", help="more `keras-vit train` options, quoted")
    parser.add_argument("--runner", default="keras_vit.training",
                        help="the module run as `python -m RUNNER train ...` (an ablation's patched command line)")
    parser.add_argument("--name", help="the runs' folder, runs/bench/default_NAME_sSEED (default: from SPEC)")
    args = parser.parse_args()
    info = machine_info()
    name = args.name or re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(args.spec.rstrip("/")))[-40:]
    results = []
    os.makedirs(os.path.join(ROOT, "runs", "bench"), exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        result = run(args.spec, seed, shlex.split(args.args), name, args.runner)
        result["runner"] = args.runner
        result["machine"] = {key: info[key] for key in ("cpu", "cores", "cpu_flags", "tensorflow", "keras")}
        results.append(result)
        with open(os.path.join(ROOT, "runs", "bench", "default_command.jsonl"), "a") as file:
            file.write(json.dumps(result) + "\n")
        print(result["choice"] or "(a preset or config chose the model)", flush=True)
    print(f"machine: {info['cpu']}, {info['cores']} cores, {' '.join(info['cpu_flags'])}; "
          f"TensorFlow {info['tensorflow']}, Keras {info['keras']}")
    print("| dataset | seed | test accuracy | wall (s) | training (s) | CPU (whole run) | epochs | params | precision "
          "| peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['spec']} | {r['seed']} | {100 * r['test_accuracy']:.2f}% | {r['wall_seconds']:.0f} | "
              f"{r['train_seconds']:.0f} | {r['cpu_percent']:.0f}% | {r['epochs_run']} | {r['num_params']:,} | {r['precision']} | "
              f"{r['peak_rss_bytes'] / 2**30:.2f} GB |")
    if len(results) > 1:
        accuracies = [r["test_accuracy"] for r in results]
        print(f"mean test accuracy {100 * sum(accuracies) / len(accuracies):.2f}% over {len(results)} seeds "
              f"({100 * min(accuracies):.2f}-{100 * max(accuracies):.2f}%)")


if __name__ == "__main__":
    main()
