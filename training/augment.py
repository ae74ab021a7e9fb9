"""Batch augmentation from Keras preprocessing layers, applied inside tf.data."""

import keras
import tensorflow as tf

from keras_vit.training.choices import CROP_FILLS


def make_augmenter(image_size, crop_padding=0, flip=False, randaugment=False, mixup=0.0, cutmix=0.0, seed=0,
                   crop_fill="reflect"):
    """Returns `fn(images, one_hot_labels) -> (images, labels)` for batches, or None.

    Images are raw 0..255 float32 `[B, H, W, C]`; the layers stay float32 under a
    mixed-precision policy (the model casts its inputs itself). Crop-with-padding pads
    (`crop_fill`: "reflect" or "zeros") then crops each image back to `image_size` at its
    own random offset; MixUp/CutMix mix the one-hot labels.
    """
    height, width = image_size
    layers = []
    if crop_padding:
        if not 0 < int(crop_padding) < min(height, width):
            raise ValueError(
                f"crop_padding must be between 1 and {min(height, width) - 1} for {height}x{width} images,"
                f" got {crop_padding}"
            )
        layers.append(RandomCropPerImage(int(crop_padding), seed=seed, fill=crop_fill))
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


class RandomCropPerImage:
    """Pads a batch by `padding` pixels and crops every image at its own offset.

    Written here because Keras' `RandomCrop` (3.15) draws one offset for the whole
    batch, so all images of a batch shift alike, and its `ZeroPadding2D` pads with
    zeros only. `fill="reflect"` mirrors the image into the border (the default);
    `fill="zeros"` pads with black, as torchvision's `RandomCrop(padding=...)` does.
    The offsets come from a Keras `SeedGenerator`, so a fresh augmenter with the same
    seed repeats the same crops.

    Shapes: `[B, H, W, C]` -> `[B, H, W, C]`; each output image is the window of its
    padded image at rows `dy .. dy+H-1`, columns `dx .. dx+W-1`, `0 <= dy, dx <= 2*padding`.
    """

    def __init__(self, padding, seed=0, fill="reflect"):
        if int(padding) < 1:
            raise ValueError(f"padding must be at least 1 pixel, got {padding}")
        if fill not in CROP_FILLS:
            raise ValueError(f"fill must be one of {', '.join(CROP_FILLS)}, got {fill!r}")
        self.padding = int(padding)
        self.fill = fill
        self.seed_generator = keras.random.SeedGenerator(seed)

    def __call__(self, images, training=True):
        if not training:
            return images
        p = self.padding
        shape = tf.shape(images)
        mode = "REFLECT" if self.fill == "reflect" else "CONSTANT"
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode=mode)
        offsets = keras.random.randint((shape[0], 2), 0, 2 * p + 1, seed=self.seed_generator, dtype="int32")
        rows = offsets[:, :1] + tf.range(shape[1])[None, :]  # [B, H] rows of the padded images
        columns = offsets[:, 1:] + tf.range(shape[2])[None, :]  # [B, W]
        cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), columns, axis=2, batch_dims=1)
        return tf.ensure_shape(cropped, images.shape)
