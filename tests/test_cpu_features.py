"""The CPU's int8 instructions as the export report names them, read from /proc/cpuinfo-format files
written here for each CPU kind (x86 AVX2 only, AVX-512 VNNI, AMX; ARM with and without dot product)."""

import pytest

from keras_vit.export.cpu_features import cpu_int8_features, describe_int8_support, int8_context
from keras_vit.export.report import int8_verdict, recommend

X86 = "processor\t: 0\nmodel name\t: {model}\nflags\t\t: fpu sse sse2 {flags}\n\n"
ARM = "processor\t: 0\nFeatures\t: fp {flags}\nCPU implementer\t: 0x41\n\n"


def _cpuinfo(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("flags, expected_int8, pays", [
    ("avx avx2 fma", ["avx2"], False),
    ("avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16", ["avx512_vnni", "avx512bw", "avx2"], True),
    ("avx2 avx_vnni", ["avx_vnni", "avx2"], True),
    ("avx2 avx512bw avx512_vnni amx_tile amx_int8 amx_bf16", ["amx_int8", "avx512_vnni", "avx512bw", "avx2"], True),
    ("sse4_2", [], None),
])
def test_x86_int8_instructions(tmp_path, flags, expected_int8, pays):
    features = cpu_int8_features(_cpuinfo(tmp_path, X86.format(model="Some CPU", flags=flags) * 2))
    assert features["cpu"] == "Some CPU" and features["int8"] == expected_int8
    assert describe_int8_support(features)["int8_pays"] is pays


def test_arm_dot_product_and_i8mm(tmp_path):
    with_dot = cpu_int8_features(_cpuinfo(tmp_path, ARM.format(flags="asimd asimddp i8mm")))
    assert with_dot["int8"] == ["i8mm", "asimddp", "asimd"]
    assert describe_int8_support(with_dot) == {
        "int8_pays": True, "why": "i8mm (ARM int8 matrix multiply): int8 products in one instruction"}
    plain = cpu_int8_features(_cpuinfo(tmp_path, ARM.format(flags="asimd")))
    assert describe_int8_support(plain)["int8_pays"] is False


def _row(mode, ratios, accuracy=0.98):
    return {"mode": mode, "accuracy": accuracy, "latency": {t: {"median_ms": 10 * r} for t, r in ratios.items()},
            "latency_vs_float32": ratios}


def test_the_verdict_names_the_instructions_and_the_measured_ratios():
    rows = [_row("float32", {"1": 1.0, "2": 1.0}), _row("int8", {"1": 0.98, "2": 0.95})]
    avx2 = {"cpu": "AMD EPYC", "arch": "x86_64", "int8": ["avx2"]}
    line = int8_verdict(rows, avx2)
    assert line.startswith("int8 is not expected to be faster than float32 on this CPU (AMD EPYC; int8 "
                           "instructions: avx2): no VNNI (AVX2 only)")
    assert "int8 0.98x / 0.95x" in line and "\n" not in line
    vnni = {"cpu": "Xeon", "arch": "x86_64", "int8": ["avx512_vnni", "avx2"]}
    assert int8_verdict(rows, vnni).startswith("int8 can be faster than float32 on this CPU (Xeon; avx512_vnni:")
    assert "quantize and dequantize steps or its float ops" in int8_verdict(rows, vnni)


def test_the_report_records_this_machines_int8_support():
    rows = [_row("float32", {"1": 1.0}), _row("dynamic", {"1": 0.7})]
    for row in rows:
        row["gpu"] = None
    advice = recommend(rows)
    here = cpu_int8_features()
    assert advice["cpu_int8"]["int8"] == here["int8"]
    assert advice["cpu_int8"]["int8_pays"] is describe_int8_support(here)["int8_pays"]
    assert advice["cpu"]["1"]["mode"] == "dynamic"
    assert int8_context().startswith(here["cpu"])


def test_cpuinfo_without_the_file_has_no_flags(tmp_path):
    from keras_vit.cpuinfo import read_cpuinfo

    model, flags = read_cpuinfo(str(tmp_path / "missing"))
    assert flags == set() and model

