"""Flip-averaged predictions against a NumPy computation; saving; errors."""

import keras
import numpy as np
import pytest

from keras_vit import ViT, flip_averaged
from keras_vit.test_time_augmentation import HorizontalFlip, MeanProbabilityLogits
from numpy_reference import softmax
from test_model import randomize


def _model(**overrides):
    config = dict(image_size=(8, 12), patch_size=4, num_classes=5, hidden_dim=16, num_layers=1, num_heads=2,
                  mlp_dim=32, stem_channels=None)
    config.update(overrides)
    model = ViT(**config)
    randomize(model)  # the head starts at zero: every image would score every class alike
    return model


def _images(batch=3, height=8, width=12, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


def test_flip_averaged_equals_mean_of_both_softmaxes():
    model = _model()
    images = _images()
    logits = model.predict(images, verbose=0).astype("float64")
    mirrored_logits = model.predict(images[:, :, ::-1], verbose=0).astype("float64")
    expected = (softmax(logits) + softmax(mirrored_logits)) / 2
    # The model is not mirror-symmetric, so the average differs from either pass.
    assert np.abs(expected - softmax(logits)).max() > 1e-3

    averaged = flip_averaged(model).predict(images, verbose=0)
    assert averaged.shape == (3, 5)
    np.testing.assert_allclose(softmax(averaged.astype("float64")), expected, atol=1e-6)
    np.testing.assert_allclose(averaged, np.log(expected), atol=1e-5)


def test_mean_probability_logits_of_confident_predictions_stay_finite():
    # Plain log(mean(softmax)) in float32 would give log(0) = -inf: e**-200 underflows.
    logits = np.array([[200.0, -200.0, 0.0]], "float32")
    mirrored = np.array([[-200.0, 200.0, 0.0]], "float32")
    averaged = keras.ops.convert_to_numpy(MeanProbabilityLogits()([logits, mirrored]))
    np.testing.assert_allclose(averaged, [[np.log(0.5), np.log(0.5), -200.0]], rtol=1e-5)


def test_horizontal_flip_mirrors_the_width_axis():
    images = _images(batch=2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(HorizontalFlip()(images)), images[:, :, ::-1])


def test_flip_averaged_model_round_trips_through_a_keras_file(tmp_path):
    model = flip_averaged(_model())
    path = tmp_path / "averaged.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    images = _images(seed=1)
    np.testing.assert_allclose(restored.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    assert restored.name == model.name and restored.count_params() == model.count_params()


def test_flip_averaged_under_mixed_precision_gives_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        averaged = flip_averaged(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    images = _images()
    output = averaged.predict(images, verbose=0)
    assert output.dtype == np.float32
    expected = (softmax(model.predict(images, verbose=0).astype("float64"))
                + softmax(model.predict(images[:, :, ::-1], verbose=0).astype("float64"))) / 2
    np.testing.assert_allclose(softmax(output.astype("float64")), expected, atol=1e-5)


def test_flip_averaged_errors_name_the_expected_model():
    sequence_model = keras.Sequential([keras.Input((7, 3)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match=r"one image input \[B, H, W, C\]"):
        flip_averaged(sequence_model)
    features = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match=r"one logits output \[B, num_classes\]"):
        flip_averaged(features)
    with pytest.raises(ValueError, match="a list of at least two"):
        MeanProbabilityLogits()(np.zeros((1, 3), "float32"))
