"""Does this CPU run int8 matrix products faster than float32? One FULLY_CONNECTED op at the
shapes of our exported ViTs, converted to float32, full int8 and dynamic range (int8 weights,
activations quantized at run time) and timed under LiteRT (XNNPACK, 1 and 2 threads), interleaved.

    nice python bench/int8_gemm.py [--threads 1,2] [--json out.json]

The int8 latency target (<= 0.6x float32) presumes int8 products well over 1.7x
faster than float32. With AVX-512 VNNI (or AVX-VNNI / ARM dot-product instructions) XNNPACK's
int8 kernels are several times faster; with AVX2 alone they widen int8 to int16 (`vpmovsxbw`),
multiply pairs (`vpmaddwd`) and add (`vpaddd`): `bench/simd_rates.py` measures that step at
1.3x float32's peak multiply-adds on a Zen 3 core, and XNNPACK's float32 kernels already run at
that peak, so no graph change can make an int8 file much faster than float32 there. This script
measures which case a machine is.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (rows, in, out): ViT-Ti/16 at 224 (197 tokens, width 192, MLP 768) and the MNIST/CIFAR-10
# hybrid models of bench/train_accuracy.py (17 tokens, width 128 or 192).
MODES = ("float32", "int8", "dynamic")
SHAPES = [(197, 192, 576), (197, 192, 768), (197, 768, 192), (17, 128, 384), (17, 192, 576), (17, 384, 192)]


def fully_connected(rows, in_dim, out_dim, mode, seed=0):
    """TFLite bytes of `x @ W` with W a constant `[in_dim, out_dim]`, float32 or full int8."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    kernel = tf.constant(rng.normal(0, in_dim**-0.5, (in_dim, out_dim)).astype("float32"))
    function = tf.function(lambda x: tf.matmul(x, kernel), input_signature=[tf.TensorSpec((rows, in_dim), tf.float32)])
    # Constants only (no variables), so the concrete-function path freezes everything.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    if mode == "dynamic":  # int8 weights per channel, activations quantized at run time (XNNPACK's qd8)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.normal(0, 1, (rows, in_dim)).astype("float32")] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    content = converter.convert()
    weight_bytes = in_dim * out_dim * (4 if mode == "float32" else 1)
    if len(content) < weight_bytes:
        raise RuntimeError(f"{mode} FC file is {len(content)} bytes, smaller than its weights ({weight_bytes})")
    return content


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json")
    args = parser.parse_args()

    from bench.machine import machine_info
    from keras_vit.cpuinfo import read_cpuinfo
    from keras_vit.export.cpu_features import cpu_int8_features
    from keras_vit.export.report import measure_latencies

    threads = tuple(int(t) for t in args.threads.split(","))
    contents = {}
    for shape in SHAPES:
        for mode in MODES:
            contents[(shape, mode)] = fully_connected(*shape, mode)
    latency = measure_latencies(contents, thread_counts=threads, rounds=args.rounds, runs=args.runs)
    model, flags = read_cpuinfo()
    print(f"{model}; int8 instructions: {', '.join(cpu_int8_features()['int8']) or 'none known'}")
    rows = []
    print("| FC rows x in -> out | threads | float32 us | GFLOP/s | int8 us (x float32) | dynamic us (x float32) |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        rows_, in_dim, out_dim = shape
        for count in threads:
            us = {mode: latency[(shape, mode)][count]["median_ms"] * 1e3 for mode in MODES}
            rows.append({"shape": shape, "threads": count, **{f"{mode}_us": us[mode] for mode in MODES}})
            print(f"| {rows_} x {in_dim} -> {out_dim} | {count} | {us['float32']:.1f} "
                  f"| {2 * rows_ * in_dim * out_dim / us['float32'] / 1e3:.1f} "
                  f"| {us['int8']:.1f} ({us['int8'] / us['float32']:.2f}x) "
                  f"| {us['dynamic']:.1f} ({us['dynamic'] / us['float32']:.2f}x) |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine_info(), "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
