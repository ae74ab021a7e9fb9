"""Can this CPU multiply int8 faster than float32? The peak rate of one core for the inner step of
each kind of matrix product, from `bench/simd_rates.c` (built here with the system's C compiler).

    python bench/simd_rates.py [--json out.json]

XNNPACK (LiteRT's CPU runtime) has no dot-product instruction on AVX2 without VNNI: its int8
GEMM widens int8 to int16 (`vpmovsxbw`), multiplies pairs (`vpmaddwd`) and adds them (`vpaddd`),
where float32 needs one FMA per 8 products. Whether int8 can pay is then a question of how many
of those steps a core issues per cycle, which this measures; `bench/int8_gemm.py` measures what
XNNPACK's kernels actually reach at our models' shapes.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "bench", "simd_rates.c")
STEPS = {
    "fma": "float32: `vfmadd231ps`, registers only",
    "fma_memory": "float32, a 1x16 tile: `vbroadcastss` + 2 `vfmadd231ps` from memory (load-bound)",
    "madd_add": "int16: `vpmaddwd` + `vpaddd`, registers only",
    "sx_madd_add": "int8 as XNNPACK's AVX2 qs8/qd8 GEMM: `vpmovsxbw` from memory + `vpmaddwd` + `vpaddd`",
    "ubs_madd_add": "u8 x s8 as oneDNN / MLAS on AVX2: `vpmaddubsw` + `vpmaddwd` + `vpaddd` (int16 saturation)",
}


def measure():
    """{step: (G steps/s, G multiply-adds/s)} on one core; raises where it cannot build or run."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise SystemExit(f"simd_rates: x86-64 only (this is {platform.machine()})")
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("simd_rates: no C compiler (set CC or install gcc)")
    with tempfile.TemporaryDirectory() as folder:
        binary = os.path.join(folder, "simd_rates")
        subprocess.run([compiler, "-O2", SOURCE, "-o", binary], check=True)
        output = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    return {step: tuple(values) for step, values in json.loads(output).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from keras_vit.cpuinfo import read_cpuinfo

    model, flags = read_cpuinfo()
    rates = measure()
    fma_macs = rates["fma"][1]  # the float32 peak: XNNPACK's f32 GEMM tiles reach 70-80% of it
    print(f"{model}; flags: {' '.join(f for f in ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni') if f in flags)}")
    print("| step | G steps/s | G multiply-adds/s | x float32 peak |")
    print("|---|---|---|---|")
    for step, words in STEPS.items():
        steps, macs = rates[step]
        print(f"| {words} | {steps:.2f} | {macs:.1f} | {macs / fma_macs:.2f}x |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"cpu": model, "flags": sorted(flags), "rates": rates}, file, indent=2)


if __name__ == "__main__":
    main()
