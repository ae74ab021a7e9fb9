"""keras_vit.images: the image contract every model, export and command shares."""

import numpy as np
import pytest
from PIL import Image

from keras_vit.images import (
    UnreadableImageError,
    list_image_files,
    load_image_file,
    load_image_files,
    model_image_shape,
    prepare_images,
)


def test_load_image_file_resizes_as_an_independent_bilinear_resize_does(tmp_path):
    import tensorflow as tf

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype="uint8")
    Image.fromarray(pixels).save(tmp_path / "a.png")
    exact = load_image_file(str(tmp_path / "a.png"), (20, 30), 3)
    np.testing.assert_array_equal(exact, pixels)  # PNG is lossless: the file's own pixels
    resized = load_image_file(str(tmp_path / "a.png"), (10, 12), 3, resize=True)
    expected = np.clip(np.round(tf.image.resize(pixels.astype("float32"), (10, 12), "bilinear").numpy()), 0, 255)
    np.testing.assert_array_equal(resized, expected.astype("uint8"))
    gray = load_image_file(str(tmp_path / "a.png"), (20, 30), 1)
    luminance = pixels.astype("float64") @ np.array([0.2989, 0.5870, 0.1140])
    assert np.abs(gray[..., 0].astype(int) - np.round(luminance)).max() <= 1
    assert load_image_files([str(tmp_path / "a.png")] * 2, (20, 30), 3).shape == (2, 20, 30, 3)


def test_bad_files_and_sizes_say_what_was_expected(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), "uint8")).save(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="image not found: .*missing.png"):
        load_image_file(str(tmp_path / "missing.png"), (20, 30), 3)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UnreadableImageError, match=r"bad.png is not a readable PNG, JPEG, BMP or GIF image \(Unknown image file format") as info:
        load_image_file(str(tmp_path / "bad.png"), (20, 30), 3)
    assert info.value.reason.startswith("Unknown image file format") and "{{" not in info.value.reason
    with pytest.raises(ValueError, match=r"a.png is 30x20 pixels but the model takes 16x16; resize it first, or ask for resize=True"):
        load_image_file(str(tmp_path / "a.png"), (16, 16), 3)
    with pytest.raises(ValueError, match="no images given"):
        load_image_files([], (16, 16), 3)
    with pytest.raises(ValueError, match="cannot convert images with 4 channels to 3 channels"):
        prepare_images(np.zeros((1, 4, 4, 4)), (4, 4), 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        list_image_files([str(tmp_path / "empty")])
    assert list_image_files([str(tmp_path)]) == [str(tmp_path / "a.png"), str(tmp_path / "bad.png")]


def test_model_image_shape_needs_a_static_image_input():
    import keras

    assert model_image_shape(keras.Sequential([keras.Input((8, 6, 3)), keras.layers.Flatten()])) == (8, 6, 3)
    with pytest.raises(ValueError, match=r"static size, got \(None, None, 3\)"):
        model_image_shape(keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D()]))
