"""Does this CPU run int8 matrix products faster than float32? One FULLY_CONNECTED op at the
shapes of our exported ViTs, converted to float32 and to full int8 and timed under LiteRT
(XNNPACK, 1 thread), interleaved.

    nice python bench/int8_gemm.py [--json out.json]

The int8 latency target (<= 0.6x float32) presumes int8 products well over 1.7x
faster than float32. With AVX-512 VNNI (or AVX-VNNI / ARM dot-product instructions) XNNPACK's
int8 kernels are several times faster; with AVX2 alone they widen int8 to int16 and multiply
pairs (`vpmaddwd`), about as much work per value as a float32 FMA, so no graph change can make
a full-int8 model much faster than float32 there. This script measures which case a machine is.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (rows, in, out): ViT-Ti/16 at 224 (197 tokens, width 192, MLP 768) and the MNIST/CIFAR-10
# hybrid models of bench/train_accuracy.py (17 tokens, width 128 or 192).
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
    if mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.normal(0, 1, (rows, in_dim)).astype("float32")] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    content = converter.convert()
    weight_bytes = in_dim * out_dim * (1 if mode == "int8" else 4)
    if len(content) < weight_bytes:
        raise RuntimeError(f"{mode} FC file is {len(content)} bytes, smaller than its weights ({weight_bytes})")
    return content


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()

    from bench.machine import machine_info
    from keras_vit.export.report import measure_latencies

    contents = {}
    for shape in SHAPES:
        for mode in ("float32", "int8"):
            contents[(shape, mode)] = fully_connected(*shape, mode)
    latency = measure_latencies(contents, thread_counts=(1,), rounds=args.rounds, runs=args.runs)
    rows = []
    print("| FC rows x in -> out | float32 us | GFLOP/s | int8 us | int8 / float32 |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        rows_, in_dim, out_dim = shape
        f32 = latency[(shape, "float32")][1]["median_ms"] * 1e3
        int8 = latency[(shape, "int8")][1]["median_ms"] * 1e3
        rows.append({"shape": shape, "float32_us": f32, "int8_us": int8, "ratio": int8 / f32})
        print(f"| {rows_} x {in_dim} -> {out_dim} | {f32:.1f} | {2 * rows_ * in_dim * out_dim / f32 / 1e3:.1f} "
              f"| {int8:.1f} | {int8 / f32:.2f}x |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine_info(), "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
