"""bench/gray_proxy.py: CIFAR-10 as 28x28 gray images, MNIST's layout, written once."""

import numpy as np
import pytest

from bench.gray_proxy import build, to_gray28
from keras_vit.training.data import read_npz


def _rgb_dataset(path, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(12) % 3,
              "x_test": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(6) % 3}
    np.savez(path, **arrays)
    return arrays


def test_gray_is_the_bt601_luma_and_the_resize_averages():
    """Flat colours keep their luma exactly; a 32x32 image averaged to 28x28 keeps its mean."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]], np.uint8)
    flat = np.broadcast_to(colours[:, None, None, :], (4, 32, 32, 3))
    luma = colours.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gray = to_gray28(flat)
    assert gray.shape == (4, 28, 28) and gray.dtype == np.uint8
    np.testing.assert_allclose(gray[:, 0, 0], np.round(luma), atol=1)
    assert (gray == gray[:, :1, :1]).all()
    stripes = np.zeros((1, 32, 32, 3), np.uint8)
    stripes[:, :, ::2] = 255  # every other column white: a nearest-neighbour resize would keep 0s and 255s
    out = to_gray28(stripes)
    # Each 28x28 pixel covers 1.14 columns: every one mixes a white and a black column.
    assert abs(out.mean() - 127.5) < 3 and out.min() > 0 and out.max() < 255


def test_the_proxy_keeps_the_split_and_labels_and_trains_as_npz(tmp_path):
    source = tmp_path / "rgb.npz"
    arrays = _rgb_dataset(source)
    target = tmp_path / "out" / "gray.npz"
    build(str(source), str(target))
    x_train, y_train, x_test, y_test = read_npz(str(target))
    assert x_train.shape == (12, 28, 28) and x_test.shape == (6, 28, 28)
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    np.testing.assert_array_equal(x_test, to_gray28(arrays["x_test"]))


def test_an_existing_file_is_never_replaced(tmp_path):
    source = tmp_path / "rgb.npz"
    _rgb_dataset(source)
    target = tmp_path / "gray.npz"
    target.write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match="writes a new file only"):
        build(str(source), str(target))
    assert target.read_bytes() == b"the user's file"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_gray_input_is_refused_with_the_shape_expected():
    with pytest.raises(ValueError, match=r"expected RGB images \[N, H, W, 3\], got an array of shape \(2, 28, 28\)"):
        to_gray28(np.zeros((2, 28, 28), np.uint8))
