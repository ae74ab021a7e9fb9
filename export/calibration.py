"""Calibration images for full-integer quantization, drawn from a dataset's training split."""

import numpy as np


def model_image_shape(model):
    """`(height, width, channels)` of a Keras model's image input."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"the model must take [batch, H, W, C] images of a static size, got {shape}")
    return shape


def calibration_images(dataset_spec, image_shape, count=200, data_dir=None, seed=0, resize=False):
    """`count` training images as float32 `[count, H, W, C]` raw 0..255 pixels.

    The images come from the training split (never the test split, which measures the
    result), shuffled with `seed` so that every class is represented, and prepared
    exactly as training prepares them (`training.data.prepare_images`); `resize`: see
    `training.data.load_splits_for_model`.
    """
    from training.data import load_splits_for_model, make_pipeline, take_sample

    if int(count) < 1:
        raise ValueError(f"calibration size must be at least 1, got {count}")
    height, width, channels = image_shape
    splits = load_splits_for_model(dataset_spec, image_shape, data_dir, resize)
    # A seeded sample of the file or index list: nothing is decoded to choose the images.
    train = take_sample(splits.train, int(count), seed)
    batches = [np.asarray(x) for x, _ in make_pipeline(train, (height, width), channels, 256)]
    if not batches:
        raise ValueError(f"dataset {dataset_spec!r} has no training images to calibrate with")
    return np.concatenate(batches).astype("float32")
