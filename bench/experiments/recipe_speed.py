"""Training throughput (`fit`, batch 128 unless `--batch-size`, synthetic images) of the accuracy recipes' models
against the plain ViTs they replaced, one model per process, alternating.

    nice python bench/experiments/recipe_speed.py [--steps 40] [--batch-size 128] [--precision float32] [--jit-compile false] [--models a,b]

Prints images/s per model; a CPU budget (`--time-budget`) turns these into epochs.
Runs of a few steps are noisy on a shared machine: 16 steps showed the (96, 192, 384) stem
as fast as the (32, 64, 128) one, and real epochs took 1.3x longer, as its FLOPs predict.
"""

import argparse
import json
import os
import subprocess
import sys

MODELS = {
    # name: ViT overrides on vit_digits
    "mnist_plain_patch7": {"image_size": 28, "channels": 1, "patch_size": 7, "stem_channels": None, "hidden_dim": 128,
                           "num_layers": 6, "mlp_dim": 256},
    "mnist_hybrid_recipe": {"image_size": 32, "channels": 1, "patch_size": 8, "stem_channels": [16, 32], "hidden_dim": 128,
                            "num_layers": 4, "mlp_dim": 256},
    "cifar_plain_patch4": {"image_size": 32, "channels": 3, "patch_size": 4, "stem_channels": None, "hidden_dim": 128,
                           "num_layers": 6, "mlp_dim": 256},
    "cifar_hybrid_recipe": {"image_size": 32, "channels": 3, "patch_size": 8, "stem_channels": [96, 192, 384],
                            "hidden_dim": 192, "num_layers": 6, "mlp_dim": 384},
    "cifar_hybrid_recipe_gap": {"image_size": 32, "channels": 3, "patch_size": 8, "stem_channels": [96, 192, 384],
                                "hidden_dim": 192, "num_layers": 6, "mlp_dim": 384, "pooling": "gap",
                                "use_class_token": False},  # the average-pooling trial
    "cifar_hybrid_stem32_6l": {"image_size": 32, "channels": 3, "patch_size": 8, "stem_channels": [32, 64, 128],
                               "hidden_dim": 192, "num_layers": 6, "mlp_dim": 384},  # the first hybrid CIFAR-10 recipe
    # candidates: more of the compute in the stem's convolutions
    "mnist_hybrid_stem32_64": {"image_size": 32, "channels": 1, "patch_size": 8, "stem_channels": [32, 64],
                               "hidden_dim": 128, "num_layers": 4, "mlp_dim": 256},
    "cifar_hybrid_stem64_6l": {"image_size": 32, "channels": 3, "patch_size": 8, "stem_channels": [64, 128, 256],
                               "hidden_dim": 192, "num_layers": 6, "mlp_dim": 384},
    "cifar_hybrid_stem64_4l": {"image_size": 32, "channels": 3, "patch_size": 8, "stem_channels": [64, 128, 256],
                               "hidden_dim": 192, "num_layers": 4, "mlp_dim": 384},
    "cifar_hybrid_stem64_h256": {"image_size": 32, "channels": 3, "patch_size": 8, "stem_channels": [64, 128, 256],
                                 "hidden_dim": 256, "num_layers": 6, "mlp_dim": 512},
    "cifar_hybrid_64_tokens": {"image_size": 32, "channels": 3, "patch_size": 4, "stem_channels": [64, 128],
                               "hidden_dim": 192, "num_layers": 6, "mlp_dim": 384},
}

_CHILD = """
import json, sys, time, numpy as np, keras
from keras_vit import ViT
overrides, steps, precision = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jit_compile, batch_size = sys.argv[4] == "true", int(sys.argv[5])
keras.mixed_precision.set_global_policy(precision)
model = ViT.from_preset("vit_digits", dropout_rate=0.0, **overrides)
model.compile(optimizer=keras.optimizers.AdamW(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
size, channels = overrides["image_size"], overrides["channels"]
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (batch_size * steps, size, size, channels)).astype("float32")
y = rng.integers(0, 10, len(x))
model.fit(x[:2 * batch_size], y[:2 * batch_size], batch_size=batch_size, epochs=1, verbose=0)  # compile, warm up
start = time.perf_counter()
model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
print(json.dumps({"params": model.count_params(), "images_per_second": len(x) / (time.perf_counter() - start)}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="float32")
    # `keras-vit train` leaves XLA off on CPU-only machines (Keras' jit_compile="auto")
    parser.add_argument("--jit-compile", choices=("true", "false"), default="true")
    parser.add_argument("--models", help="comma-separated names (default: all)")
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    names = args.models.split(",") if args.models else list(MODELS)
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; known: {', '.join(MODELS)}")
    results = {name: [] for name in names}
    for _ in range(args.rounds):  # alternate, so load hits every model alike
        for name in names:
            done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(MODELS[name]), str(args.steps), args.precision,
                                   args.jit_compile, str(args.batch_size)],
                                  capture_output=True, text=True, env=env, check=True)
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| model | params | images/s (median of rounds) |\n|---|---|---|")
    for name, runs in results.items():
        speeds = sorted(r["images_per_second"] for r in runs)
        print(f"| {name} | {runs[0]['params']:,} | {speeds[len(speeds) // 2]:.0f} |")


if __name__ == "__main__":
    main()
