"""How long `keras-vit` takes to answer `--help`, `--version` and a bad option (each in a fresh
process, as a user types it), and whether it imported TensorFlow to do so:

    python bench/cli_startup.py --runs 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["--version"], ["train", "--help"], ["export", "--help"], ["predict", "--help"],
            ["train", "--epochs", "many"])
PROBE = ("import sys\nfrom keras_vit.training.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n"
         "    pass\nprint('tensorflow' in sys.modules, file=sys.stderr)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.machine import _cpuinfo

    model, flags = _cpuinfo()
    print(json.dumps({"cpu": model, "cores": os.cpu_count(),
                      "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"})}))
    print("| command | median s | min s | max s | imports TensorFlow |")
    print("|---|---:|---:|---:|---|")
    for argv in COMMANDS:
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(["keras-vit", *argv], capture_output=True)
            times.append(time.perf_counter() - start)
        probe = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True)
        imported = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "?"
        print(f"| `keras-vit {' '.join(argv)}` | {statistics.median(times):.2f} | {min(times):.2f} | "
              f"{max(times):.2f} | {'yes' if imported == 'True' else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
