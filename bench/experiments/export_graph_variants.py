"""Fully integer graph variants of a trained model, timed against its float32 file.

    nice python bench/experiments/export_graph_variants.py runs/bench/mnist

Variants of `export.graph` (per-tensor int8 weights, uint8 input): the default (per-head
FULLY_CONNECTED attention, `rsqrt` LayerNorm), 4-D BATCH_MATMUL attention, and the `l2`
LayerNorm. LiteRT, 1 thread, interleaved (`export.report.measure_latencies`).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = [
    # name, mode, attention, normalization (None: what export.tflite.convert picks)
    ("float32", "float32", None, None),
    ("int8", "int8", None, None),
    ("int8, BATCH_MATMUL attention", "int8", "batch_matmul", None),
    ("int8, l2 LayerNorm", "int8", None, "l2"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="training output folder")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    import keras_vit.export.tflite as tflite
    from keras_vit.export.report import measure_latencies
    from keras_vit.images import model_image_shape
    from keras_vit.training.artifacts import load_keras_model
    from keras_vit.training.evaluation import model_data

    model = load_keras_model(args.source, float32=True)
    calibration = model_data(args.source, model_image_shape(model)).calibration_arrays(200).astype("float32")
    save = tflite.save_inference_savedmodel
    contents = {}
    for name, mode, attention, normalization in VARIANTS:
        # convert() has no switch for these graph choices; override what it passes on.
        def variant(model, path, graph="keras", batch_size=1, norm="rsqrt", att="fully_connected",
                    attention=attention, normalization=normalization):
            return save(model, path, graph, batch_size, normalization or norm, attention or att)

        tflite.save_inference_savedmodel = variant
        try:
            contents[name] = tflite.convert(model, mode, calibration, weight_granularity="tensor",
                                            input_type="uint8" if mode == "int8" else "float32")
        finally:
            tflite.save_inference_savedmodel = save
    latency = measure_latencies(contents, thread_counts=(1,), rounds=args.rounds, runs=args.runs)
    base = latency["float32"][1]["median_ms"]
    print("| graph | 1 thr median ms | x float32 |\n|---|---|---|")
    for name in contents:
        ms = latency[name][1]["median_ms"]
        print(f"| {name} | {ms:.3f} | {ms / base:.2f}x |")


if __name__ == "__main__":
    main()
