"""Flip averaging inside the exported .tflite (`keras-vit export --tta flip`) against the plain
file: test accuracy, agreement with the Keras model (plain or flip-averaged) and LiteRT
latency at batch 1, for float32 and full int8, measured side by side.

    nice python bench/experiments/export_tta.py runs/bench/cifar10_s12_batch64 [--limit N] [--rounds 5] [--runs 20]

The four files take turns round after round (`export.report.measure_latencies`), so load
from other processes hits them alike: read the latency ratios, not the milliseconds.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="training output folder (or .keras file with a config.json beside it)")
    parser.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    parser.add_argument("--limit", type=int, help="a seeded sample of N test images (default: all)")
    parser.add_argument("--calibration-size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json", help="write the rows here as JSON")
    args = parser.parse_args()

    import numpy as np

    from keras_vit.export.evaluate import compare_outputs
    from keras_vit.export.report import measure_latencies
    from keras_vit.export.runtime import TFLiteRunner
    from keras_vit.export.tflite import convert
    from keras_vit import flip_averaged
    from keras_vit.images import model_image_shape
    from keras_vit.training.artifacts import load_keras_model
    from keras_vit.training.evaluation import model_data

    model = load_keras_model(args.source, float32=True)
    data = model_data(args.source, model_image_shape(model), args.data.spec, resize=True)
    calibration = data.calibration_arrays(args.calibration_size).astype("float32")
    images, labels = data.test_arrays(args.limit)
    images = images.astype("float32")
    references = {
        "none": model.predict(images, batch_size=256, verbose=0),
        "flip": flip_averaged(model).predict(images, batch_size=256, verbose=0),
    }
    contents = {}
    for mode in ("float32", "int8"):
        for tta in ("none", "flip"):
            contents[(mode, tta)] = convert(model, mode, calibration if mode == "int8" else None,
                                            input_type="uint8" if mode == "int8" else "float32", tta=tta)
    threads = tuple(int(t) for t in args.threads.split(","))
    latencies = measure_latencies({f"{m}/{t}": c for (m, t), c in contents.items()}, threads, args.rounds, args.runs)

    rows = []
    print(f"{len(labels)} test images of {data.spec}\n")
    print("| mode | tta | size MB | accuracy | Keras accuracy (same tta) | agreement | max probability error | "
          + " | ".join(f"ms, {t} thread{'s' if t > 1 else ''} (x plain)" for t in threads) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(threads))
    for (mode, tta), content in contents.items():
        outputs = TFLiteRunner(content).predict(images)
        row = {"mode": mode, "tta": tta, "size_bytes": len(content),
               "accuracy": float(np.mean(outputs.argmax(-1) == labels)),
               **compare_outputs(outputs, references[tta], labels),
               "latency": {str(t): latencies[f"{mode}/{tta}"][t] for t in threads}}
        rows.append(row)
        cells = []
        for t in threads:
            median = latencies[f"{mode}/{tta}"][t]["median_ms"]
            cells.append(f"{median:.2f} ({median / latencies[f'{mode}/none'][t]['median_ms']:.2f}x)")
        print(f"| {mode} | {tta} | {len(content) / 1e6:.3f} | {row['accuracy']:.2%} | {row['keras_accuracy']:.2%} | "
              f"{row['agreement_with_keras']:.2%} | {row['max_probability_error']:.1e} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"dataset": data.spec, "images": int(len(labels)), "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
