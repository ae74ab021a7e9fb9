"""Accuracy, agreement with Keras and latency of a `.tflite` model on test images.

Export works on arrays: the caller (a command, a notebook) loads its data and passes raw
0..255 images `[N, H, W, C]` and int labels `[N]`, so these functions serve any Keras
classifier and any data source.

Files and Keras models are compared as class probabilities: a file outputs probabilities
(the default) or logits (`outputs="logits"`), a Keras model usually logits, and each is
turned into probabilities (`export.runtime.class_probabilities`) before the comparison.
Images are fed to each as it takes them: a file that takes RGB for a gray model gets the gray
images repeated to RGB, the Keras model gets gray (`keras_vit.images.prepare_images`).
"""

import os

import numpy as np

from keras_vit.export.analysis import read_tflite
from keras_vit.export.runtime import TFLiteRunner, is_gray_for_rgb


def check_image_array(images, image_shape, name="images", labels=None):
    """`images` `[N, H, W, C]` as they are (uint8 stays uint8: the runners convert batch by batch);
    ValueError unless they are `image_shape` `(H, W, C)` images, or gray `[N, H, W, 1]` for an RGB
    `image_shape` (a gray model's RGB-input file; they are then repeated to RGB), and, with
    `labels`, unless there is one label per image."""
    images = np.asarray(images)
    if is_gray_for_rgb(images.shape, image_shape):
        images = np.repeat(images, 3, axis=-1)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{name} have shape {list(images.shape)}, the model takes [N, {', '.join(map(str, image_shape))}] "
            "(images of the size and channels it was made for)"
        )
    if len(images) == 0:
        raise ValueError(f"no {name}: need at least one")
    if labels is not None and np.shape(labels) != (len(images),):
        raise ValueError(f"{len(images)} {name} need as many labels [N], got labels of shape {list(np.shape(labels))}")
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == bool):
        raise ValueError(f"{name} must be numbers (raw 0..255 pixels), got an array of {images.dtype}")
    return images


def compare_outputs(probabilities, reference, labels=None):
    """Top-1 agreement and probability errors of `probabilities` against `reference` probabilities
    (both `[N, K]`; see `export.runtime.class_probabilities`)."""
    probabilities, reference = np.asarray(probabilities, "float64"), np.asarray(reference, "float64")
    error = np.abs(probabilities - reference)
    result = {
        "agreement_with_keras": float(np.mean(probabilities.argmax(-1) == reference.argmax(-1))),
        "max_probability_error": float(error.max()),
        "mean_probability_error": float(error.mean()),
    }
    if labels is not None:
        result["keras_accuracy"] = float(np.mean(reference.argmax(-1) == labels))
    return result


def keras_inputs(keras_model, images):
    """Raw images `[N, H, W, C]` as `keras_model` takes them: RGB to gray (the rounded luminance of
    `keras_vit.images`, exact for gray images repeated to RGB) or gray to RGB where the channels differ."""
    from keras_vit.images import model_image_shape, prepare_images

    images = np.asarray(images, "float32")
    height, width, channels = model_image_shape(keras_model)
    if images.ndim == 4 and images.shape[-1] != channels:
        images = np.asarray(prepare_images(images, (height, width), channels))
    return images


def keras_logits(keras_model, images, batch_size=256):
    """The Keras model's outputs `[N, K]` for raw images `[N, H, W, C]` (channels fitted by `keras_inputs`).

    Batch by batch (`predict_on_batch`), each converted as it goes: a float32 copy of a test
    split of photos would take 4x the memory of its uint8 pixels (12x for gray repeated to RGB)."""
    images = np.asarray(images)
    # At most about 32 MB of float32 pixels a batch: 256 digits, 55 photos of 224x224 RGB.
    batch_size = max(1, min(int(batch_size), (32 * 2**20) // max(1, 4 * int(np.prod(images.shape[1:])))))
    outputs = [np.asarray(keras_model.predict_on_batch(keras_inputs(keras_model, images[start : start + batch_size])))
               for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, keras_model.output_shape[-1]), "float32")


def keras_probabilities(keras_model, images, batch_size=256):
    """The Keras model's class probabilities `[N, K]` (float64) for raw images `[N, H, W, C]`."""
    from keras_vit.export.runtime import class_probabilities
    from keras_vit.export.savedmodel import outputs_are_probabilities

    return class_probabilities(keras_logits(keras_model, images, batch_size), outputs_are_probabilities(keras_model))


def evaluate_tflite(tflite_path, images, labels, *, keras_model=None, num_threads=None):
    """Evaluates a `.tflite` classifier under LiteRT on `images` (raw 0..255, `[N, H, W, C]`)
    with `labels` `[N]`.

    Returns a dict with `test_accuracy`, `num_images`, `size_bytes`, `median_latency_ms`
    and `p90_latency_ms` (one batch, usually one image), `output_kind` (what the file outputs:
    `probabilities` or `logits`), `agreement_with_keras` and the max/mean error of the class
    probabilities against `keras_model`'s (None without one). Raises ValueError for a missing
    or corrupt file and for images of the wrong size.
    """
    content = read_tflite(tflite_path)
    runner = TFLiteRunner(content, num_threads=num_threads)
    images = check_image_array(images, runner.input_shape[1:], "test images", labels)
    labels = np.asarray(labels)
    probabilities = runner.probabilities(images)
    latency = runner.latency()
    metrics = {
        "test_accuracy": float(np.mean(probabilities.argmax(-1) == labels)),
        "num_images": int(len(labels)),
        "size_bytes": int(os.path.getsize(tflite_path)),
        "median_latency_ms": latency["median_ms"],
        "p90_latency_ms": latency["p90_ms"],
        "batch_size": runner.batch_size,
        "num_threads": runner.num_threads,
        "output_kind": "probabilities" if runner.outputs_probabilities else "logits",
        "agreement_with_keras": None,
        "max_probability_error": None,
        "mean_probability_error": None,
    }
    if keras_model is not None:
        metrics.update(compare_outputs(probabilities, keras_probabilities(keras_model, images), labels))
    return metrics
