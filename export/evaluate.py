"""Accuracy, agreement with Keras and latency of a `.tflite` model on test images.

Export works on arrays: the caller (a command, a notebook) loads its data and passes raw
0..255 images `[N, H, W, C]` and int labels `[N]`, so these functions serve any Keras
classifier and any data source.
"""

import os

import numpy as np

from keras_vit.export.analysis import read_tflite
from keras_vit.export.runtime import TFLiteRunner


def check_image_array(images, image_shape, name="images", labels=None):
    """`images` as float32 `[N, H, W, C]`; ValueError unless they are `image_shape` `(H, W, C)` images
    (and, with `labels`, unless there is one label per image)."""
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{name} have shape {list(images.shape)}, the model takes [N, {', '.join(map(str, image_shape))}] "
            "(images of the size and channels it was made for)"
        )
    if len(images) == 0:
        raise ValueError(f"no {name}: need at least one")
    if labels is not None and np.shape(labels) != (len(images),):
        raise ValueError(f"{len(images)} {name} need as many labels [N], got labels of shape {list(np.shape(labels))}")
    return images.astype("float32", copy=False)


def compare_outputs(outputs, reference, labels=None):
    """Top-1 agreement and logit errors of `outputs` against `reference` (both `[N, K]`)."""
    outputs, reference = np.asarray(outputs, "float32"), np.asarray(reference, "float32")
    error = np.abs(outputs - reference)
    result = {
        "agreement_with_keras": float(np.mean(outputs.argmax(-1) == reference.argmax(-1))),
        "max_logit_error": float(error.max()),
        "mean_logit_error": float(error.mean()),
    }
    if labels is not None:
        result["keras_accuracy"] = float(np.mean(reference.argmax(-1) == labels))
    return result


def keras_logits(keras_model, images, batch_size=256):
    """The Keras model's outputs `[N, K]` for raw images `[N, H, W, C]`."""
    return np.asarray(keras_model.predict(np.asarray(images, "float32"), batch_size=batch_size, verbose=0))


def evaluate_tflite(tflite_path, images, labels, *, keras_model=None, num_threads=None):
    """Evaluates a `.tflite` classifier under LiteRT on `images` (raw 0..255, `[N, H, W, C]`)
    with `labels` `[N]`.

    Returns a dict with `test_accuracy`, `num_images`, `size_bytes`, `median_latency_ms`
    and `p90_latency_ms` (one batch, usually one image), `agreement_with_keras` and
    the max/mean logit error against `keras_model` (None without one). Raises
    ValueError for a missing or corrupt file and for images of the wrong size.
    """
    content = read_tflite(tflite_path)
    runner = TFLiteRunner(content, num_threads=num_threads)
    images = check_image_array(images, runner.input_shape[1:], "test images", labels)
    labels = np.asarray(labels)
    outputs = runner.predict(images)
    latency = runner.latency()
    metrics = {
        "test_accuracy": float(np.mean(outputs.argmax(-1) == labels)),
        "num_images": int(len(labels)),
        "size_bytes": int(os.path.getsize(tflite_path)),
        "median_latency_ms": latency["median_ms"],
        "p90_latency_ms": latency["p90_ms"],
        "batch_size": runner.batch_size,
        "num_threads": runner.num_threads,
        "agreement_with_keras": None,
        "max_logit_error": None,
        "mean_logit_error": None,
    }
    if keras_model is not None:
        metrics.update(compare_outputs(outputs, keras_logits(keras_model, images), labels))
    return metrics
