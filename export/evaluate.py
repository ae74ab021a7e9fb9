"""Accuracy, agreement with Keras and latency of a `.tflite` model on a dataset's test split."""

import os

import numpy as np

from export.analysis import read_tflite
from export.runtime import TFLiteRunner


def test_batches(dataset_spec, image_shape, data_dir=None, limit=None, batch_size=256, resize=False):
    """Yields `(float32 images [B, H, W, C] raw pixels, int labels [B])` of the test split.

    Raises ValueError when the dataset's images are not `image_shape`: a model is
    evaluated on the images it was made for, never on silently resized ones (`resize`:
    resized as training did, see `training.data.load_splits_for_model`).
    """
    from training.data import load_splits_for_model, make_pipeline, take_sample

    height, width, channels = image_shape
    splits = load_splits_for_model(dataset_spec, image_shape, data_dir, resize)
    test = take_sample(splits.test, limit)  # a seeded sample: test splits may be sorted by class
    for images, labels in make_pipeline(test, (height, width), channels, batch_size):
        yield np.asarray(images, dtype="float32"), np.asarray(labels)


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


def predict_test_split(predict, dataset_spec, image_shape, data_dir=None, limit=None, resize=False,
                       keras_model=None):
    """`predict` (float32 `[B, H, W, C]` -> `[B, ...]`) over the test split of `dataset_spec`, a
    batch at a time: its outputs, the labels `[N]` and Keras' logits (None without
    `keras_model`). Raises ValueError when there are no test images."""
    outputs, labels, reference = [], [], []
    for images, batch_labels in test_batches(dataset_spec, image_shape, data_dir, limit, resize=resize):
        outputs.append(predict(images))
        labels.append(batch_labels)
        if keras_model is not None:
            reference.append(np.asarray(keras_model.predict(images, verbose=0)))
    if not outputs:
        raise ValueError(f"dataset {dataset_spec!r} has no test images")
    return np.concatenate(outputs), np.concatenate(labels), np.concatenate(reference) if reference else None


def evaluate_tflite(tflite_path, dataset_spec, *, data_dir=None, keras_model=None, limit=None, num_threads=None,
                    resize=False):
    """Evaluates a `.tflite` classifier under LiteRT on the test split of `dataset_spec`.

    Returns a dict with `test_accuracy`, `num_images`, `size_bytes`, `median_latency_ms`
    and `p90_latency_ms` (one batch, usually one image), `agreement_with_keras` and
    the max/mean logit error against `keras_model` (None without one). Raises
    ValueError for a missing or corrupt file and for images of the wrong size.
    """
    content = read_tflite(tflite_path)
    runner = TFLiteRunner(content, num_threads=num_threads)
    outputs, labels, reference = predict_test_split(
        runner.predict, dataset_spec, runner.input_shape[1:], data_dir, limit, resize=resize, keras_model=keras_model
    )
    latency = runner.latency()
    metrics = {
        "test_accuracy": float(np.mean(outputs.argmax(-1) == labels)),
        "num_images": int(len(labels)),
        "size_bytes": int(os.path.getsize(tflite_path)),
        "median_latency_ms": latency["median_ms"],
        "p90_latency_ms": latency["p90_ms"],
        "batch_size": runner.batch_size,
        "num_threads": runner.num_threads,
        "dataset": dataset_spec,
        "agreement_with_keras": None,
        "max_logit_error": None,
        "mean_logit_error": None,
    }
    if keras_model is not None:
        metrics.update(compare_outputs(outputs, reference, labels))
    return metrics
