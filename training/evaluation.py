"""The data a trained model is evaluated, calibrated and exported with, and its Keras test metrics.

Commands load a dataset once, here, and hand arrays to `export`, which knows nothing of
dataset specs.
"""

import dataclasses
import math
import os
import sys

from keras_vit.training.artifacts import read_training_config
from keras_vit.training.data import EmptySplitError, load_splits_for_model, make_pipeline, split_arrays, take_sample

# The folder of a run that `train --export-tflite` writes its files into (RUN/tflite/).
TFLITE_FOLDER = "tflite"
# An export report holds its test images in memory (uint8) while every file runs on them, and
# the runners' float copies beside them: past this many bytes of images it takes a seeded
# sample, so that memory does not grow with the test split (224-pixel RGB: 1,741 images).
REPORT_IMAGE_BYTES = 256 * 2**20


@dataclasses.dataclass
class ModelData:
    """A dataset as a trained model sees it: `spec`, its splits at the model's `image_shape`."""

    spec: str
    image_shape: tuple
    splits: object  # training.data.Splits

    def calibration_arrays(self, count, seed=0):
        """`count` seeded training images, uint8 `[count, H, W, C]` (never test images)."""
        if int(count) < 1:
            raise ValueError(f"calibration size must be at least 1, got {count}")
        try:
            return split_arrays(self.splits.train, self.image_shape, int(count), seed)[0]
        except EmptySplitError:
            raise EmptySplitError(f"dataset {self.spec!r} has no training images to calibrate with") from None

    def test_arrays(self, limit=None):
        """The test split (a seeded sample of `limit`): uint8 images `[N, H, W, C]`, int64 labels `[N]`."""
        try:
            return split_arrays(self.splits.test, self.image_shape, limit)
        except EmptySplitError:
            raise EmptySplitError(f"dataset {self.spec!r} has no test images") from None

    def report_arrays(self, limit=None, max_bytes=REPORT_IMAGE_BYTES):
        """`test_arrays` for an export report: at most `max_bytes` of images (a seeded sample
        past it), and at most `limit` images."""
        bounded = max(1, int(max_bytes // math.prod(self.image_shape)))
        return self.test_arrays(bounded if limit is None else min(int(limit), bounded))


def model_data(source, image_shape, dataset=None, data_dir=None, resize=False, trained_with=None, needed_for="the test images"):
    """Loads the dataset for a model saved at `source` (a .keras file, training folder or .tflite).

    `dataset` defaults to the one the model was trained on (its `config.json`, or that of
    `trained_with`, the Keras model a .tflite was made from). Images must be `image_shape`
    unless `resize`, which is on for the training dataset: the pipeline then resizes them
    as training did. Raises ValueError, naming what it is `needed_for`, when no dataset is
    given or recorded.
    """
    trained_on = training_config(source).get("dataset")
    if trained_with and not trained_on:
        trained_on = training_config(trained_with).get("dataset")
    spec = dataset or trained_on
    if not spec:
        raise ValueError(f"--dataset SPEC is needed for {needed_for}: no training config.json beside the model names one")
    resize = bool(resize or spec == trained_on)
    return ModelData(spec, tuple(image_shape), load_splits_for_model(spec, image_shape, data_dir, resize))


def training_config(source):
    """The training `config.json` of a model at `source` (a folder, `.keras` or `.tflite` file):
    the one beside it or, for a file of a run's `tflite/` folder (`train --export-tflite`), the
    run's, one folder up. `{}` if none."""
    config = read_training_config(source)
    folder = os.path.dirname(os.path.abspath(source))
    if not config and not os.path.isdir(source) and os.path.basename(folder) == TFLITE_FOLDER:
        config = read_training_config(os.path.dirname(folder))
    return config


def evaluate_keras(model, data, limit=None, batch_size=64):
    """Test accuracy and loss of a Keras classifier (logits out) on `data.splits.test` (`ModelData`)."""
    import keras

    height, width, channels = data.image_shape
    num_classes = int(model.output_shape[-1])
    if data.splits.info.num_classes > num_classes:
        raise ValueError(f"dataset {data.spec} has {data.splits.info.num_classes} classes, the model only {num_classes}")
    test = make_pipeline(take_sample(data.splits.test, limit), (height, width), channels, batch_size,
                         num_classes=num_classes)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    loss, accuracy = model.evaluate(test, verbose=0)
    return {"test_accuracy": float(accuracy), "test_loss": float(loss), "num_params": int(model.count_params()),
            "dataset": data.spec}


def note_if_trained_without_flip(source, tta, command):
    """Notes on stderr that flip averaging is asked of a model trained without `--flip`."""
    if tta == "flip" and training_config(source).get("flip") is False:
        # Allowed (the data may be mirror-symmetric), but rarely what the user meant.
        print(f"keras-vit {command}: note: the model was trained without --flip; mirror images may score "
              "lower (digits do)", file=sys.stderr)
