"""A/B of random crops drawn per image against one offset per batch (Keras' `RandomCrop`).

    python -m bench.crop_ab --data ../shared/data [--limit-train 8000] [--epochs 4]

Trains the CIFAR-10 recipe of `configs/cifar10.yaml` (narrower stem, for time) on a seeded
sample of the training set twice, with the same seed: once with `training.augment`'s per-image
crops, once with the reflect padding followed by Keras' `RandomCrop`, which draws a single
offset for the whole batch. Prints each run's per-epoch train and validation accuracy.
"""

import argparse
import json
import os

import keras
import tensorflow as tf


class _PerBatchCrop:
    """The crop keras-vit used before: reflect padding, then Keras' RandomCrop (one offset per batch)."""

    def __init__(self, padding, seed=0):
        self.padding = padding
        self.crop = None
        self.seed = seed

    def __call__(self, images, training=True):
        p = self.padding
        if self.crop is None:
            self.crop = keras.layers.RandomCrop(images.shape[1], images.shape[2], seed=self.seed, dtype="float32")
        return self.crop(tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT"), training=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--limit-train", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", default="runs/bench/crop_ab")
    parser.add_argument("--modes", default="per_image,per_batch")
    parser.add_argument("--crop-padding", type=int, default=4, help="4: the recipe when this A/B ran")
    args = parser.parse_args()

    from bench.train_accuracy import load_recipe
    from training import augment
    from training.config import merge_config
    from training.fit import train

    per_image = augment.RandomCropPerImage
    results = {}
    for mode in args.modes.split(","):
        augment.RandomCropPerImage = per_image if mode == "per_image" else _PerBatchCrop
        recipe = load_recipe("cifar10", args.data)
        recipe["model"]["stem_channels"] = [32, 64, 128]
        recipe.update(crop_padding=args.crop_padding, epochs=args.epochs, time_budget_minutes=0,
                      limit_train=args.limit_train, backup_every=100000, output=os.path.join(args.output, mode))
        metrics = train(merge_config(recipe), verbose=2)
        with open(os.path.join(args.output, mode, "history.csv")) as file:
            rows = [line.strip().split(",") for line in file][1:]
        results[mode] = {"test_accuracy": metrics["test_accuracy"],
                         "train_accuracy": [round(float(r[1]), 4) for r in rows],
                         "val_accuracy": [round(float(r[3]), 4) for r in rows]}
        print(mode, json.dumps(results[mode]), flush=True)
    augment.RandomCropPerImage = per_image


if __name__ == "__main__":
    main()
