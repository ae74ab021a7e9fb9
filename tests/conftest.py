"""Shared fixtures: real datasets from ../shared/data, skipped with a reason where absent."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Scripts that tests run in worker processes: not modules to import (--doctest-modules would).
collect_ignore = ["scripts"]
SHARED_DATA = os.environ.get("KERAS_VIT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


def shared_file(name):
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not found in {SHARED_DATA} (real datasets live in ../shared/data)")
    return path


@pytest.fixture(scope="package")
def mnist_path():
    """Path of the real MNIST .npz (x_train, y_train, x_test, y_test)."""
    return shared_file("mnist.npz")


@pytest.fixture(scope="package")
def mnist_small(mnist_path):
    """2,000 training and 1,000 test MNIST images (uint8 [N, 28, 28]) with labels."""
    with np.load(mnist_path, allow_pickle=False) as data:
        return (data["x_train"][:2000], data["y_train"][:2000], data["x_test"][:1000], data["y_test"][:1000])


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
