"""Test-time augmentation: a classifier's predictions averaged over an image and its mirror image.

Averaging the class probabilities of an image and of its left-right mirror image is the usual
test-time augmentation for models trained with random flips (CIFAR-10, ImageNet). It costs two
forward passes per image. The wrapped model is an ordinary Keras model: it evaluates, saves to
`.keras` and exports like the classifier it wraps.
"""

import math

import keras
from keras import ops

from keras_vit.choices import TTA_MODES


def check_tta(tta):
    """Raises ValueError naming the modes unless `tta` is one of `TTA_MODES`."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")


def mean_probability_logits(logits):
    """`log(mean_i softmax(logits_i))` of a list of `[B, num_classes]` logit tensors, as float32.

    A log-sum-exp of log-softmaxes, so that confident predictions do not underflow to log(0).
    Shared by `MeanProbabilityLogits` and the exported graphs (`export.graph`).
    """
    if not isinstance(logits, (list, tuple)) or len(logits) < 2:
        raise ValueError(f"the mean of class probabilities takes a list of at least two logit tensors, got {logits!r}")
    log_probabilities = ops.stack([ops.log_softmax(ops.cast(each, "float32"), axis=-1) for each in logits])
    return ops.logsumexp(log_probabilities, axis=0) - math.log(len(logits))


@keras.saving.register_keras_serializable(package="keras_vit")
class HorizontalFlip(keras.layers.Layer):
    """Mirrors images left to right, always (`keras.layers.RandomFlip` flips at random, and only
    in training).

    Shapes: `[B, H, W, C]` -> `[B, H, W, C]`.
    """

    def call(self, images):
        return ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_vit")
class MeanProbabilityLogits(keras.layers.Layer):
    """Logits whose softmax is the mean of the softmax of several logit tensors.

    Returns `log(mean_i softmax(logits_i))`, computed as a log-sum-exp of log-softmaxes so that
    confident predictions do not underflow. A softmax of the result gives the averaged
    probabilities, so losses and metrics that take logits work on it unchanged.

    Shapes: a list of `[B, num_classes]` -> `[B, num_classes]`.
    """

    def call(self, logits):
        return mean_probability_logits(logits)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


def check_logits_output(model):
    """Raises ValueError for a model whose head applies a softmax: averaging works on logits."""
    activation = getattr(model, "classifier_activation", None)
    if activation not in (None, "linear"):
        raise ValueError(
            f"test-time averaging needs a model that outputs logits; {model.name!r} has classifier_activation "
            f"{activation!r} (build it with classifier_activation=None)"
        )


def flip_averaged(model, name=None):
    """Wraps an image classifier so it predicts from an image and its mirror image together.

    Args:
        model: a Keras model from images `[B, H, W, C]` to logits `[B, num_classes]` (a `ViT`,
            or any classifier that outputs logits).
        name: the wrapper's name (default: the model's name + `_flip_averaged`).

    Returns:
        A Keras model from the same images to logits `[B, num_classes]`:
        `log((softmax(model(x)) + softmax(model(mirror(x)))) / 2)`.

    Example:

    ```python
    model = keras_vit.ViT(image_size=32, patch_size=4, num_classes=10, hidden_dim=64, num_layers=2,
                          num_heads=2, mlp_dim=128)
    averaged = keras_vit.flip_averaged(model)
    averaged.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    ```
    """
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise ValueError(
            f"flip_averaged wraps a model with one image input [B, H, W, C]; {model.name!r} takes "
            f"{model.input_shape}"
        )
    if len(model.outputs) != 1 or len(model.output_shape) != 2:
        raise ValueError(
            f"flip_averaged wraps a model with one logits output [B, num_classes]; {model.name!r} gives "
            f"{model.output_shape}"
        )
    check_logits_output(model)
    # float32 wrappers: under a mixed-precision policy they would otherwise cast the images and
    # the averaged logits to float16.
    images = keras.Input(shape=model.input_shape[1:], dtype=model.inputs[0].dtype, name="images")
    mirrored = HorizontalFlip(dtype="float32", name="horizontal_flip")(images)
    logits = MeanProbabilityLogits(dtype="float32", name="mean_probability")([model(images), model(mirrored)])
    return keras.Model(images, logits, name=name or f"{model.name}_flip_averaged")
