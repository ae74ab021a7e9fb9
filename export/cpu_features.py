"""The CPU's int8 instructions, and what they mean for an int8 file's speed against float32.

XNNPACK (LiteRT's CPU runtime) multiplies int8 matrices with the best instructions the CPU has,
and whether an int8 or dynamic-range file beats float32 depends on them:

- x86 `amx_int8` (AMX tiles), `avx512_vnni` / `avx_vnni` (VNNI: `vpdpbusd`, four int8 products
  summed into int32 in one instruction): int8 products run at up to 4x float32's multiply-adds per
  instruction; BENCHMARKS.md measured ViT-Ti/16's int8 file at 0.47x / 0.50x float32's latency
  (1 / 2 threads) on an AVX-512 VNNI CPU.
- x86 with AVX2 but no VNNI: XNNPACK widens int8 to int16 (`vpmovsxbw`, `vpmaddwd`, `vpaddd`),
  a step that issues at most 1.3x float32's multiply-adds per cycle, while its float32 kernels
  already run at the FMA peak: int8 and dynamic-range products take 0.90-1.02x float32's time,
  and ViT-Ti/16's files 0.93-0.97x at best (BENCHMARKS.md, "int8 and the folded graph", machine B).
  int8 files gain size, not speed.
- ARM `asimddp` (dot product, `sdot`) and `i8mm` (`smmla`): int8 products in one instruction, the
  usual reason int8 pays on phones; without them (ARMv8.0) int8 widens to 16 bits first.

    >>> describe_int8_support({"arch": "x86_64", "int8": ["avx2"]})["int8_pays"]
    False
"""

import platform

from keras_vit.cpuinfo import read_cpuinfo

# Flags of /proc/cpuinfo (x86 `flags`, ARM `Features`) that int8 kernels use, best first.
X86_INT8 = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2")
ARM_INT8 = ("i8mm", "asimddp", "asimd")


def cpu_int8_features(cpuinfo_path="/proc/cpuinfo"):
    """`{"cpu": model name, "arch": machine, "int8": [flags of X86_INT8 / ARM_INT8 it has]}`."""
    model, flags = read_cpuinfo(cpuinfo_path)
    arch = platform.machine().lower()
    known = ARM_INT8 if arch in ("aarch64", "arm64") or "asimd" in flags else X86_INT8
    return {"cpu": model, "arch": arch, "int8": [flag for flag in known if flag in flags]}


def describe_int8_support(features):
    """What the CPU's int8 instructions predict: `{"int8_pays": bool or None, "why": words}`.

    `int8_pays` is True where int8 products take one instruction (VNNI, AMX, ARM dot product),
    False where they cannot beat float32 (x86 AVX2 without VNNI; ARM without dot product), None
    where nothing is known.
    """
    have = set(features.get("int8", ()))
    if have & {"amx_int8", "avx512_vnni", "avx_vnni"}:
        best = next(flag for flag in ("amx_int8", "avx512_vnni", "avx_vnni") if flag in have)
        return {"int8_pays": True, "why": f"{best}: int8 products in one instruction, up to 4x float32's per instruction"}
    if have & {"i8mm", "asimddp"}:
        best = "i8mm" if "i8mm" in have else "asimddp"
        return {"int8_pays": True, "why": f"{best} (ARM {'int8 matrix multiply' if best == 'i8mm' else 'dot product'}): "
                                          "int8 products in one instruction"}
    if "avx2" in have or "avx512bw" in have:
        return {"int8_pays": False, "why": "no VNNI (AVX2 only): XNNPACK widens int8 to int16, a step of at most "
                                           "1.3x float32's multiply-adds, and its int8 products run about as fast as "
                                           "float32's; int8 files gain size, not speed"}
    if "asimd" in have:
        return {"int8_pays": False, "why": "ARM without the dot-product extension: int8 widens to 16 bits first"}
    return {"int8_pays": None, "why": "no int8 instructions known for this CPU"}


def int8_context(features=None):
    """One line for a report: the CPU, its int8 instructions, and what they predict."""
    features = features or cpu_int8_features()
    verdict = describe_int8_support(features)
    flags = ", ".join(features["int8"]) or "none known"
    return f"{features['cpu']} ({features['arch']}); int8 instructions: {flags}; {verdict['why']}"
