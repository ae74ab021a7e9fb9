"""Fine-tuning throughput of the pre-trained presets by resolution: `model.fit` images per second.

    python bench/finetune_throughput.py [--presets vit_ti16,vit_s16] [--sizes 224,160,128]
        [--precisions float32,mixed_bfloat16] [--batch-size 32] [--steps 6] [--rounds 2]

Each model is the preset with its position grid at the size (as `load_checkpoint` resamples it) and
a new 10-class head, compiled as a fine-tuning run is (SGD with momentum, clipping at norm 1), and
fit on random images already in memory: the figure is the model's cost, not the input pipeline's.
Rounds alternate the configurations so that a change of load on a shared machine touches all of
them; the median round is reported with the range. Prints a Markdown table and the machine.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(preset, size, precision, batch_size):
    import keras

    from keras_vit import ViT

    keras.mixed_precision.set_global_policy(precision)
    model = ViT.from_preset(preset, image_size=size, num_classes=10, input_scaling="symmetric")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def time_fit(model, size, batch_size, steps):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(batch_size * steps, size, size, 3)).astype("float32")
    labels = rng.integers(0, 10, size=(batch_size * steps,))
    model.fit(images[: batch_size * 2], labels[: batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    cpu = time.process_time()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)
    wall = time.perf_counter() - start
    return batch_size * steps / wall, (time.process_time() - cpu) / wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="vit_ti16,vit_s16")
    parser.add_argument("--sizes", default="224,160,128")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import keras

    from bench.machine import machine_info

    configs = [(preset, int(size), precision) for preset in args.presets.split(",")
               for size in args.sizes.split(",") for precision in args.precisions.split(",")]
    models = {config: build(*config, args.batch_size) for config in configs}
    keras.mixed_precision.set_global_policy("float32")
    results = {config: [] for config in configs}
    for _ in range(args.rounds):
        for config in configs:
            results[config].append(time_fit(models[config], config[1], args.batch_size, args.steps))

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['cpu_flags'])}; "
          f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds")
    print()
    print("| preset | image size | tokens | precision | images/s (range) | CPU use | ms per image | relative to 224 |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for preset, size, precision in configs:
        rates = [rate for rate, _ in results[(preset, size, precision)]]
        median = statistics.median(rates)
        base = statistics.median(rate for rate, _ in results[(preset, 224, precision)]) if (
            preset, 224, precision) in results else None
        cpu = statistics.median(use for _, use in results[(preset, size, precision)])
        tokens = (size // 16) ** 2 + 1
        relative = f"{median / base:.2f}x" if base else "-"
        print(f"| {preset} | {size} | {tokens} | {precision} | {median:.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
              f"{cpu:.0%} | {1000 / median:.0f} | {relative} |")
        rows.append({"preset": preset, "image_size": size, "precision": precision, "images_per_second": rates,
                     "cpu_use": cpu})
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine, "batch_size": args.batch_size, "rows": rows}, file, indent=2, default=str)


if __name__ == "__main__":
    main()
