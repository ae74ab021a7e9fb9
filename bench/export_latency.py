"""Headline LiteRT latency: a ViT-Ti/16 at 224 (random weights), ours vs keras-hub's
ViTBackbone + Dense head, float32 / dynamic / int8, measured side by side.

    nice python bench/export_latency.py [--rounds 7] [--runs 15] [--json out.json]

"folded graph" is export.graph's formulation (the default for a keras_vit ViT),
"keras graph" the Keras model traced as is. Every model goes through the same converter path (SavedModel with a static batch-1
signature -> TFLiteConverter.from_saved_model, builtin ops only). The models take turns
round after round (see export.report.measure_latencies), so load from other processes on
a shared machine hits them alike; compare ratios, not absolute milliseconds.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_hub_classifier(image_size, num_classes, seed=0):
    """keras-hub ViTBackbone (ViT-Ti/16 sizes) + class-token Dense head, raw 0..255 input."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3), patch_size=16, num_layers=12, num_heads=3,
        hidden_dim=192, mlp_dim=768,
    )
    inputs = keras.Input((image_size, image_size, 3), name="images")
    tokens = backbone(keras.layers.Rescaling(1 / 255.0)(inputs))
    outputs = keras.layers.Dense(num_classes, name="head")(tokens[:, 0])
    return keras.Model(inputs, outputs, name="keras_hub_vit_ti16")


def ours(image_size, num_classes, seed=0):
    import keras
    import numpy as np

    from keras_vit import ViT

    keras.utils.set_random_seed(seed)
    model = ViT.from_preset("vit_ti16", image_size=image_size, num_classes=num_classes)
    head = model.get_layer("head")  # zero-initialized: give it weights so outputs differ
    rng = np.random.default_rng(seed)
    head.set_weights([rng.normal(0, 0.02, w.shape).astype("float32") for w in head.get_weights()])
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json")
    args = parser.parse_args()

    import numpy as np

    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.report import measure_latencies
    from keras_vit.export.runtime import TFLiteRunner
    from keras_vit.export.tflite import convert

    size = args.image_size
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, (16, size, size, 3)).astype("float32")
    probe = rng.uniform(0, 255, (4, size, size, 3)).astype("float32")
    models = {"ours": ours(size, 10), "keras-hub": keras_hub_classifier(size, 10)}
    plan = [
        ("ours", "float32", "folded"),
        ("ours", "float32", "keras"),
        ("ours", "dynamic", "folded"),
        ("ours", "int8", "folded"),
        ("ours", "int8+float:attention,gelu", "folded"),
        ("ours", "int8", "keras"),
        ("keras-hub", "float32", "keras"),
        ("keras-hub", "dynamic", "keras"),
        ("keras-hub", "int8", "keras"),
    ]
    contents, facts = {}, {}
    for name, mode, graph in plan:
        key = f"{name} {mode} ({graph} graph)"
        print(f"converting {key} ...", flush=True)
        model = models[name]
        fallback = tuple(mode.split(":")[1].split(",")) if ":" in mode else ()
        # Logits out, as the Keras models': the table compares them (files default to probabilities).
        contents[key] = convert(model, mode.split("+")[0], calibration, graph=graph, float_fallback=fallback,
                                outputs="logits")
        outputs = TFLiteRunner(contents[key]).predict(probe)
        reference = np.asarray(model.predict(probe, verbose=0))
        ops = analyze_ops(contents[key])
        facts[key] = {
            "size_mb": len(contents[key]) / 1e6,
            "max_logit_error": float(np.abs(outputs - reference).max()),
            "fully_integer": ops["fully_integer"],
            "ops": ops["ops"],
        }
    threads = tuple(int(t) for t in args.threads.split(","))
    latency = measure_latencies(contents, threads, rounds=args.rounds, runs=args.runs)
    base = "ours float32 (folded graph)"
    hub = "keras-hub float32 (keras graph)"
    head = "| model | size MB | max logit err vs Keras | " + " | ".join(
        f"{t} thr median / p90 ms | x ours f32 | x keras-hub f32" for t in threads
    ) + " | fully integer |"
    print()
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for key, fact in facts.items():
        cells = [key, f"{fact['size_mb']:.2f}", f"{fact['max_logit_error']:.2e}"]
        for t in threads:
            lat = latency[key][t]
            cells += [
                f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f}",
                f"{lat['median_ms'] / latency[base][t]['median_ms']:.2f}",
                f"{lat['median_ms'] / latency[hub][t]['median_ms']:.2f}",
            ]
        cells.append("yes" if fact["fully_integer"] else "no")
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"facts": facts, "latency": {k: {str(t): v for t, v in d.items()} for k, d in latency.items()}},
                      file, indent=2)


if __name__ == "__main__":
    main()
