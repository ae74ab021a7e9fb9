"""Batch augmentation from Keras preprocessing layers, applied inside tf.data."""

import keras
import tensorflow as tf


def make_augmenter(image_size, crop_padding=0, flip=False, randaugment=False, mixup=0.0, cutmix=0.0, seed=0):
    """Returns `fn(images, one_hot_labels) -> (images, labels)` for batches, or None.

    Images are raw 0..255 float32 `[B, H, W, C]`; the layers stay float32 under a
    mixed-precision policy (the model casts its inputs itself). Crop-with-padding pads by
    reflection then crops back to `image_size`; MixUp/CutMix mix the one-hot labels.
    """
    height, width = image_size
    layers = []
    if crop_padding:
        layers.append(_PadReflect(int(crop_padding)))
        layers.append(keras.layers.RandomCrop(height, width, seed=seed, dtype="float32"))
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1, dtype="float32"))
    if randaugment:
        layers.append(keras.layers.RandAugment(value_range=(0, 255), seed=seed + 2, dtype="float32"))
    mixers = []
    if mixup:
        mixers.append(keras.layers.MixUp(alpha=float(mixup), seed=seed + 3, dtype="float32"))
    if cutmix:
        mixers.append(keras.layers.CutMix(factor=float(cutmix), seed=seed + 4, dtype="float32"))
    if not layers and not mixers:
        return None

    def augment(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        for mixer in mixers:
            mixed = mixer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return tf.clip_by_value(images, 0.0, 255.0), labels

    return augment


class _PadReflect:
    """Reflect-pads the spatial dims (Keras' ZeroPadding2D pads with zeros only)."""

    def __init__(self, padding):
        self.padding = padding

    def __call__(self, images, training=True):
        p = self.padding
        return tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
