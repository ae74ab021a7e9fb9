"""Training time of the default digits job against `--steps-per-execution`, alternating.

    python -m bench.steps_per_execution [--values 1,7,21] [--rounds 2] [--epochs 60]

Each run is `keras-vit train` (the README's main job without the export: 21 steps an epoch)
in its own process, the values taken in turn so that a slow spell of the shared host falls on
all of them. Grouping steps changes the dispatch, not the arithmetic, so every run should end
with the same test accuracy; the script reports it to show that. Prints one JSON line per run and a summary of
training seconds relative to the first value; writes `bench/results/steps_per_execution.json`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile


def train_once(steps_per_execution, epochs, seed, output):
    command = [
        sys.executable, "-m", "training", "train", "--output", output, "--seed", str(seed), "--epochs", str(epochs),
        "--steps-per-execution", str(steps_per_execution),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    with open(os.path.join(output, "metrics.json")) as file:
        metrics = json.load(file)
    return {
        "steps_per_execution": steps_per_execution,
        "train_seconds": metrics["train_seconds"],
        "test_accuracy": metrics["test_accuracy"],
        "epochs_run": metrics["epochs_run"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", default="1,7,21", help="steps per execution to compare, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    values = [int(value) for value in args.values.split(",")]

    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for value in values:
                output = os.path.join(scratch, f"round{round_index}_steps{value}")
                run = train_once(value, args.epochs, args.seed, output)
                runs.append(run)
                print(json.dumps(run), flush=True)

    seconds = {value: [run["train_seconds"] for run in runs if run["steps_per_execution"] == value] for value in values}
    baseline = min(seconds[values[0]])
    summary = {
        str(value): {
            "train_seconds": seconds[value],
            "best_vs_first_value": round(min(seconds[value]) / baseline, 3),
            "test_accuracy": sorted({run["test_accuracy"] for run in runs if run["steps_per_execution"] == value}),
        }
        for value in values
    }
    print(json.dumps(summary, indent=2))
    os.makedirs("bench/results", exist_ok=True)
    path = "bench/results/steps_per_execution.json"
    with open(path + ".tmp", "w") as file:
        json.dump({"args": vars(args), "runs": runs, "summary": summary}, file, indent=2)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
