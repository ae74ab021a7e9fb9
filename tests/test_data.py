"""Dataset sources and the tf.data pipeline: shapes, labels, splits, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf

from training.data import load_splits, make_pipeline, stratified_split


def _collect(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.stack(images), np.array(labels)


def test_digits_is_a_fixed_stratified_split():
    splits = load_splits("digits")
    info = splits.info
    assert info.num_classes == 10 and info.image_shape == (8, 8, 1)
    x_train, y_train = _collect(splits.train)
    x_val, y_val = _collect(splits.validation)
    x_test, y_test = _collect(splits.test)
    assert len(x_train) + len(x_val) + len(x_test) == 1797
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    # Every class in every split, in roughly equal shares (stratified).
    for labels in (y_train, y_val, y_test):
        counts = np.bincount(labels, minlength=10)
        assert counts.min() > 0.7 * counts.mean()
    # Same split on a second call.
    np.testing.assert_array_equal(_collect(load_splits("digits").test)[1], y_test)


def test_validation_fraction_zero_keeps_every_training_image():
    held_out = load_splits("digits")
    splits = load_splits("digits", validation_fraction=0.0)
    assert splits.validation is None
    x_train, _ = _collect(splits.train)
    assert len(x_train) == held_out.info.num_examples["train"] + held_out.info.num_examples["validation"]
    assert len(x_train) == splits.info.num_examples["train"]
    # The test split does not depend on the validation split.
    np.testing.assert_array_equal(_collect(splits.test)[0], _collect(held_out.test)[0])


def test_digits_images_match_scikit_learn():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_test, y_test = _collect(load_splits("digits").test)
    reference = {img.tobytes(): lbl for img, lbl in zip(np.round(digits.images * 255 / 16).astype("uint8"), digits.target)}
    assert all(reference[x[..., 0].tobytes()] == y for x, y in zip(x_test[:50], y_test[:50]))


def test_npz_on_real_mnist_slice(mnist_small, tmp_path):
    x_train, y_train, x_test, y_test = mnist_small
    path = tmp_path / "mnist_small.npz"
    np.savez(path, x_train=x_train[:300], y_train=y_train[:300], x_test=x_test[:100], y_test=y_test[:100])
    splits = load_splits(f"npz:{path}", validation_fraction=0.2, seed=3)
    assert splits.info.image_shape == (28, 28, 1) and splits.info.num_classes == 10
    xt, yt = _collect(splits.train)
    xv, yv = _collect(splits.validation)
    assert len(xt) + len(xv) == 300 and 50 <= len(xv) <= 70
    # Labels travel with their images: look each image up in the original arrays.
    lookup = {img.tobytes(): lbl for img, lbl in zip(x_train[:300], y_train[:300])}
    assert all(lookup[x[..., 0].tobytes()] == y for x, y in zip(xt, yt))
    assert set(map(bytes, (x.tobytes() for x in xt))).isdisjoint(x.tobytes() for x in xv)
    batch_x, batch_y = next(iter(make_pipeline(splits.test, (32, 32), 3, 16)))
    assert batch_x.shape == (16, 32, 32, 3) and batch_x.dtype == tf.float32
    np.testing.assert_array_equal(batch_y.numpy(), y_test[:16])


def test_tfds_through_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        splits = load_splits("tfds:mnist")
        assert splits.info.num_classes == 10 and splits.info.class_names[3] == "3"
        assert load_splits("tfds:mnist", validation_fraction=0.0).validation is None
        images, labels = next(iter(make_pipeline(splits.train, (28, 28), 1, 8, training=True, num_classes=10)))
    assert images.shape == (8, 28, 28, 1) and labels.shape == (8, 10)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0)


def test_tfds_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown TensorFlow Datasets dataset 'no_such_dataset_xyz'"):
        load_splits("tfds:no_such_dataset_xyz")


def _write_folder(root, sizes=((20, 24), (16, 16))):
    from PIL import Image

    rng = np.random.default_rng(0)
    expected = {}
    for label, name in enumerate(["cat", "dog", "emu"]):
        os.makedirs(root / name)
        for i in range(10):
            size = sizes[i % len(sizes)]
            # Class encoded in brightness so labels can be checked from pixels.
            pixels = np.full((*size, 3), 40 + 80 * label, dtype="uint8") + rng.integers(0, 10, (*size, 3), dtype="uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
            expected[name] = label
    return expected


def test_folder_of_pngs(tmp_path):
    _write_folder(tmp_path)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.25, image_size=(16, 16))
    assert splits.info.class_names == ["cat", "dog", "emu"] and splits.info.image_shape == (16, 16, 3)
    counts = [sum(1 for _ in split) for split in (splits.train, splits.validation, splits.test)]
    assert sum(counts) == 30 and counts[2] == 6
    images, labels = _collect(splits.train)
    assert images.shape[1:] == (16, 16, 3)
    brightness_class = np.round((images.mean(axis=(1, 2, 3)) - 44) / 80).astype(int)
    np.testing.assert_array_equal(brightness_class, labels)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_splits(f"folder:{tmp_path}")
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_splits(f"folder:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        load_splits(f"folder:{tmp_path}/missing")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((4, 8, 8), "uint8"), "y_train": np.zeros(4, "int64")}, "missing x_test, y_test"),
        (
            {"x_train": np.zeros((4, 8, 8), "uint8"), "y_train": np.zeros(3, "int64"),
             "x_test": np.zeros((2, 8, 8), "uint8"), "y_test": np.zeros(2, "int64")},
            "x_train has 4 images but y_train has 3 labels",
        ),
        (
            {"x_train": np.zeros((4, 8, 8), "uint8"), "y_train": np.array([0, 1, -1, 2]),
             "x_test": np.zeros((2, 8, 8), "uint8"), "y_test": np.zeros(2, "int64")},
            r"y_train holds 1 labels outside \[0, 3\)",
        ),
        (
            {"x_train": np.zeros((4, 8), "uint8"), "y_train": np.zeros(4, "int64"),
             "x_test": np.zeros((2, 8), "uint8"), "y_test": np.zeros(2, "int64")},
            r"must be images \[N, H, W\]",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_splits(f"npz:{path}")


def test_corrupt_and_unknown_specs(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        load_splits(f"npz:{path}")
    with pytest.raises(FileNotFoundError):
        load_splits(f"npz:{tmp_path}/nothing.npz")
    with pytest.raises(ValueError, match="Unknown dataset spec 'imagenet'"):
        load_splits("imagenet")


def test_pipeline_is_deterministic_under_a_seed():
    from training.augment import make_augmenter

    splits = load_splits("digits")

    def first_batch():
        # A fresh run: new augmentation layers from the same seeds.
        augmenter = make_augmenter((8, 8), crop_padding=1, mixup=0.2, seed=5)
        ds = make_pipeline(splits.train, (8, 8), 1, 32, training=True, num_classes=10, augmenter=augmenter, seed=7)
        return [t.numpy() for t in next(iter(ds))]

    a, b = first_batch(), first_batch()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    images, labels = a
    assert images.shape == (32, 8, 8, 1) and 0 <= images.min() and images.max() <= 255
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)


def test_stratified_split_holds_out_each_class():
    labels = np.repeat(np.arange(5), 20)
    kept, held = stratified_split(labels, 0.1, seed=0)
    assert len(set(kept) | set(held)) == 100 and not set(kept) & set(held)
    np.testing.assert_array_equal(np.bincount(labels[held]), [2] * 5)


def test_limits_draw_a_seeded_sample_not_the_first_images():
    """A test split stored sorted by class (as cifar10_jpeg.npz's is) must not make `--limit`
    evaluate the first classes only."""
    import tensorflow as tf

    from training.data import take_sample

    labels = np.repeat(np.arange(10), 100)  # sorted by class
    dataset = tf.data.Dataset.from_tensor_slices(labels)
    sample = [int(x) for x in take_sample(dataset, 200)]
    assert len(sample) == 200 and len(set(sample)) == 10
    assert sample == [int(x) for x in take_sample(dataset, 200)]  # the same on every call
    assert [int(x) for x in take_sample(dataset, None)] == list(labels)


@pytest.mark.parametrize("fill, numpy_mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_random_crop_shifts_each_image_by_its_own_offset(fill, numpy_mode):
    """Every cropped image is a window of its own padded image (NumPy's `np.pad`), and
    the offsets vary within a batch: Keras' RandomCrop shifts a whole batch alike."""
    from training.augment import RandomCropPerImage

    images = np.random.default_rng(0).uniform(1, 255, (32, 8, 6, 3)).astype("float32")
    cropped = RandomCropPerImage(2, seed=3, fill=fill)(images).numpy()
    assert cropped.shape == images.shape
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode=numpy_mode)
    offsets = []
    for image, window in zip(padded, cropped):
        found = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(image[dy:dy + 8, dx:dx + 6], window)]
        assert found, "a cropped image is not a window of its padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 5
    np.testing.assert_array_equal(RandomCropPerImage(2, seed=3, fill=fill)(images).numpy(), cropped)


def test_crop_padding_must_fit_the_image():
    from training.augment import make_augmenter

    with pytest.raises(ValueError, match="crop_padding must be between 1 and 7 for 8x8 images"):
        make_augmenter((8, 8), crop_padding=8)
    from training.augment import RandomCropPerImage

    with pytest.raises(ValueError, match="padding must be at least 1 pixel, got 0"):
        RandomCropPerImage(0)
    with pytest.raises(ValueError, match="fill must be one of reflect, zeros, got 'edge'"):
        make_augmenter((8, 8), crop_padding=2, crop_fill="edge")
