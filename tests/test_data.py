"""Dataset sources and the tf.data pipeline: shapes, labels, splits, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_vit.training.data import load_splits, make_pipeline, stratified_split


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


def test_folder_pipelines_have_a_known_length_so_keras_does_not_warn(tmp_path):
    """Keras warns "Your input ran out of data" whenever a dataset of unknown length ends, in
    validation and evaluate too; skipping undecodable files (ignore_errors) made it unknown."""
    import warnings

    import keras

    _write_folder(tmp_path)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.25, image_size=(16, 16))
    pipelines = [make_pipeline(split, (16, 16), 3, 4, num_classes=3, cache_memory_bytes=cache)
                 for split in (splits.validation, splits.test) for cache in (0, 2**20)]
    assert [int(p.cardinality()) for p in pipelines] == [2, 2, 2, 2]  # 6 validation / 6 test images, batches of 4
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.evaluate(pipelines[0], verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]


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
        (
            {"x_train": np.zeros((0, 8, 8), "uint8"), "y_train": np.zeros(0, "int64"),
             "x_test": np.zeros((2, 8, 8), "uint8"), "y_test": np.zeros(2, "int64")},
            "x_train in .*bad.npz holds no images; an npz dataset needs at least one train and one test image",
        ),
        (
            {"x_train": np.zeros((4, 8, 8), "uint8"), "y_train": np.zeros(4, "float32"),
             "x_test": np.zeros((2, 8, 8), "uint8"), "y_test": np.zeros(2, "int64")},
            r"y_train in .*bad.npz must be integer class ids \[N\], got float32",
        ),
        (
            {"x_train": np.zeros((4, 8, 8), "uint8"), "y_train": np.zeros(4, "int64"),
             "x_test": np.zeros((2, 6, 6), "uint8"), "y_test": np.zeros(2, "int64")},
            r"train images \(8, 8, 1\) and test images \(6, 6, 1\) differ in shape",
        ),
        (
            {"x_train": np.array([["a"] * 8] * 32).reshape(4, 8, 8), "y_train": np.zeros(4, "int64"),
             "x_test": np.zeros((2, 8, 8), "uint8"), "y_test": np.zeros(2, "int64")},
            "x_train in .*bad.npz must hold numeric pixel values in 0..255, got dtype <U1",
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
    from keras_vit.training.augment import make_augmenter

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

    from keras_vit.training.data import take_sample

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
    from keras_vit.training.augment import RandomCropPerImage

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
    from keras_vit.training.augment import make_augmenter

    with pytest.raises(ValueError, match="crop_padding must be between 1 and 7 for 8x8 images"):
        make_augmenter((8, 8), crop_padding=8)
    from keras_vit.training.augment import RandomCropPerImage

    with pytest.raises(ValueError, match="padding must be at least 1 pixel, got 0"):
        RandomCropPerImage(0)
    with pytest.raises(ValueError, match="fill must be one of reflect, zeros, got 'edge'"):
        make_augmenter((8, 8), crop_padding=2, crop_fill="edge")


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([0.0, np.nan, 3.0, np.nan]), "x_train in .*bad.npz holds 2 NaN values; images must be finite"),
        (np.array([0.0, np.inf, -np.inf, 7.0]), "holds 2 infinite values"),
        (np.array([0.0, np.nan, np.inf, 7.0]), "holds 1 NaN and 1 infinite values"),
        (np.array([0.0, 300.0, 2.0, 7.0]), r"x_train in .*bad.npz must hold pixel values in 0..255, got values from 0.0 to 300"),
        (np.array([-1, 0, 2, 7]), r"from -1 to 7"),
        (np.array([0.0, 0.25, 0.5, 1.0]), r"pixels scaled to 0..1; the dataset needs 0..255 pixel values"),
    ],
)
def test_npz_pixel_values_out_of_range_or_not_finite(tmp_path, values, message):
    """NaN passed `images.min() < 0` and trained to 10%: refused, naming the array and what it holds."""
    x_train = values[:, None, None].astype("float32")  # one pixel per image
    if values.dtype.kind == "i":
        x_train = x_train.astype("int32")
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(4), x_test=np.zeros((2, 1, 1), "uint8"), y_test=np.arange(2))
    with pytest.raises(ValueError, match=message):
        load_splits(f"npz:{path}")


def test_npz_of_whole_float_pixels_is_rounded_to_uint8(tmp_path):
    path = tmp_path / "floats.npz"
    x_train = np.arange(4 * 4, dtype="float64").reshape(4, 2, 2) * 10 + 0.4
    np.savez(path, x_train=x_train, y_train=np.arange(4), x_test=np.full((2, 2, 2), 254.6), y_test=np.arange(2))
    splits = load_splits(f"npz:{path}", validation_fraction=0.0)
    images, _ = _collect(splits.test)
    assert images.dtype == np.uint8 and (images == 255).all()


def _id_images(root, count=24, classes=3, size=(8, 8)):
    """Flat PNGs whose color (id // 256, id % 256, label) identifies them."""
    from PIL import Image

    for i in range(count):
        label = i % classes
        os.makedirs(root / f"c{label}", exist_ok=True)
        pixels = np.zeros((*size, 3), "uint8")
        pixels[..., 0], pixels[..., 1], pixels[..., 2] = i // 256, i % 256, label
        Image.fromarray(pixels).save(root / f"c{label}" / f"{i:03d}.png")


def _ids(dataset):
    return [int(x[0, 0, 0]) * 256 + int(x[0, 0, 1]) for images, _ in dataset for x in images.numpy()]


def test_training_pipeline_shuffles_the_file_list_each_epoch(tmp_path):
    _id_images(tmp_path)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    n = splits.info.num_examples["train"]
    ds = make_pipeline(splits.train, (8, 8), 3, 4, training=True, seed=3)
    assert ds.cardinality() == -(-n // 4)  # known: Keras' fit counts on it
    first, second = _ids(ds), _ids(ds)
    assert sorted(first) == sorted(second) and len(first) == n == len(set(first))
    assert first != second  # a new order each epoch
    assert _ids(make_pipeline(splits.train, (8, 8), 3, 4, training=True, seed=3)) == first  # seeded
    # repeat=True: endless, each pass a new order (what a sharded split gets by default).
    endless = make_pipeline(splits.train, (8, 8), 3, 5, training=True, seed=3, repeat=True)
    assert endless.cardinality() == tf.data.INFINITE_CARDINALITY
    ids = _ids(endless.take(2 * n // 5 + 1))
    assert sorted(ids[:n]) == sorted(first)


def test_memory_cache_holds_decoded_images_only_within_its_budget(tmp_path):
    """Within the budget the second epoch reads memory (the files may be gone); over it, the files."""
    _id_images(tmp_path, count=12)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    n = splits.info.num_examples["train"]
    budgets = {"fits": n * 8 * 8 * 3, "too small": n * 8 * 8 * 3 - 1}
    pipelines = {name: make_pipeline(splits.train, (8, 8), 3, 4, training=True, cache_memory_bytes=budget)
                 for name, budget in budgets.items()}
    first = {name: sorted(_ids(ds)) for name, ds in pipelines.items()}
    for path in tmp_path.rglob("*.png"):
        path.unlink()
    assert sorted(_ids(pipelines["fits"])) == first["fits"]
    assert _ids(pipelines["too small"]) == []  # re-read from files that are gone: skipped, not a crash
    with pytest.raises(TypeError):
        make_pipeline(splits.train, (8, 8), 3, 4, cache=True)  # the float32 cache is gone


def test_file_cache_is_reused_by_a_later_pipeline(tmp_path):
    _id_images(tmp_path / "data", count=12)
    splits = load_splits(f"folder:{tmp_path / 'data'}", validation_fraction=0.0)
    prefix = str(tmp_path / "cache" / "train")
    first = _ids(make_pipeline(splits.test, (8, 8), 3, 4, cache_file=prefix))
    assert any(name.endswith(".index") for name in os.listdir(tmp_path / "cache"))
    for path in (tmp_path / "data").rglob("*.png"):
        path.unlink()
    assert _ids(make_pipeline(splits.test, (8, 8), 3, 4, cache_file=prefix)) == first


def test_pipeline_resizes_before_the_cast_and_rounds_like_prepare_images():
    """uint8 at the model's size until the batch is cast: the values are `prepare_images`' own."""
    from keras_vit.images import prepare_images

    splits = load_splits("digits")
    images, _ = next(iter(make_pipeline(splits.test, (12, 12), 3, 16, cache_memory_bytes=2**30)))
    raw, _ = _collect(splits.test.take(16))
    np.testing.assert_array_equal(images.numpy(), prepare_images(raw, (12, 12), 3).numpy())
    assert np.array_equal(images.numpy(), np.round(images.numpy()))


@pytest.mark.parametrize("spec", ["digits", "folder"])
def test_shards_split_the_train_split_by_file_and_leave_validation_whole(tmp_path, spec):
    if spec == "folder":
        _id_images(tmp_path, count=30)
        spec = f"folder:{tmp_path}"
        identify = _ids
    else:
        identify = lambda ds: [x.tobytes() for images, _ in ds for x in images.numpy()]  # noqa: E731
    whole = load_splits(spec)
    shards = [load_splits(spec, shard=(2, i)) for i in range(2)]
    pipeline = lambda split: make_pipeline(split, whole.info.image_shape[:2], whole.info.image_shape[2], 8)  # noqa: E731
    seen = [identify(pipeline(s.train)) for s in shards]
    # Together exactly the whole train split (as multisets: digits holds a few identical images).
    assert sorted(seen[0] + seen[1]) == sorted(identify(pipeline(whole.train)))
    assert abs(len(seen[0]) - len(seen[1])) <= 1
    assert shards[1].info.num_examples["train"] == whole.info.num_examples["train"]  # the whole split's size
    assert identify(pipeline(shards[1].validation)) == identify(pipeline(whole.validation))
    train = make_pipeline(shards[0].train, whole.info.image_shape[:2], 1 if spec == "digits" else 3, 8, training=True)
    assert train.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
    assert train.cardinality() == tf.data.INFINITE_CARDINALITY  # workers step together
    with pytest.raises(ValueError, match=r"shard must be \(num_shards, index\)"):
        load_splits(spec, shard=(2, 2))


def test_take_sample_of_files_chooses_from_the_file_list(tmp_path):
    from keras_vit.training.data import take_sample

    _id_images(tmp_path, count=30)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    sample = take_sample(splits.train, 7, seed=1)
    ids = _ids(make_pipeline(sample, (8, 8), 3, 4))
    assert len(ids) == len(set(ids)) == 7 and ids == _ids(make_pipeline(take_sample(splits.train, 7, seed=1), (8, 8), 3, 4))
    assert set(ids) <= set(_ids(make_pipeline(splits.train, (8, 8), 3, 4)))
    assert ids != _ids(make_pipeline(take_sample(splits.train, 7, seed=2), (8, 8), 3, 4))


def test_tfds_shards_by_record_file_or_by_even_split(tmp_path):
    """A real TFDS dataset of 4 record files: 2 workers read 2 files each; 5 workers, more
    than there are files, each read an even fifth (tfds.even_splits). Together: the train split."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_vit.training.pipeline import source_of

    class KerasVitTestIds(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {"image": tfds.features.Image(shape=(4, 4, 3)), "label": tfds.features.ClassLabel(num_classes=2)}
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                         supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 64), "test": self._generate_examples(1000, 8)}

        def _generate_examples(self, start, count):
            for i in range(start, start + count):
                image = np.zeros((4, 4, 3), np.uint8)
                image[..., 0], image[..., 1] = i // 256, i % 256
                yield i, {"image": image, "label": i % 2}

    tfds.disable_progress_bar()
    builder = tfds.builder("keras_vit_test_ids", data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
    spec = "tfds:keras_vit_test_ids"
    whole = load_splits(spec, data_dir=str(tmp_path))
    assert whole.info.num_examples == {"train": 58, "validation": 6, "test": 8}
    everything = sorted(_ids(make_pipeline(whole.train, (4, 4), 3, 8)))
    for workers in (2, 5):
        seen = []
        for index in range(workers):
            shard = load_splits(spec, data_dir=str(tmp_path), shard=(workers, index))
            assert shard.info.num_examples["train"] == 58
            ids = _ids(make_pipeline(shard.train, (4, 4), 3, 8, training=True, repeat=False))
            assert len(ids) == source_of(shard.train).num_examples  # this worker's count, for the cache budget
            seen.append(ids)
        assert sum(len(s) for s in seen) == 58 and sorted(sum(seen, [])) == everything, workers
        if workers == 5:
            assert max(map(len, seen)) - min(map(len, seen)) <= 1


def test_webp_photos_are_images_where_tensorflow_decodes_them(tmp_path):
    import tensorflow as tf
    from PIL import Image

    if not hasattr(tf.io, "decode_webp"):
        pytest.skip("this TensorFlow has no WebP decoder")
    pixels = {}
    for label, name in enumerate(["cat", "dog"]):
        os.makedirs(tmp_path / name)
        for i in range(3):
            pixels[(name, i)] = np.full((8, 8, 3), 60 * label + 20 * i, "uint8")
            Image.fromarray(pixels[(name, i)]).save(tmp_path / name / f"{i}.webp", lossless=True)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0, image_size=(8, 8))
    images, labels = _collect(splits.train)
    test_images, test_labels = _collect(splits.test)
    assert len(images) + len(test_images) == 6
    expected = {(int(p[0, 0, 0]), label) for (name, i), p in pixels.items() for label in [["cat", "dog"].index(name)]}
    assert {(int(x[0, 0, 0]), int(y)) for x, y in zip(np.concatenate([images, test_images]),
                                                       np.concatenate([labels, test_labels]))} == expected


def test_model_data_says_which_split_is_empty_and_lets_other_errors_through():
    from keras_vit.training.data import EmptySplitError
    from keras_vit.training.evaluation import ModelData

    splits = load_splits("digits")
    splits.test = splits.test.take(0)
    data = ModelData("digits", (8, 8, 1), splits)
    with pytest.raises(EmptySplitError, match="dataset 'digits' has no test images"):
        data.test_arrays()
    images = data.calibration_arrays(5)
    assert images.shape == (5, 8, 8, 1) and images.dtype == np.uint8 and images.max() > 100
    with pytest.raises(ValueError, match="cannot convert images with 1 channels to 4 channels"):
        ModelData("digits", (8, 8, 4), splits).calibration_arrays(5)


def test_pipeline_image_size_is_an_int_or_a_pair_and_a_bad_one_is_named():
    splits = load_splits("digits")
    square = next(iter(make_pipeline(splits.test, 4, 1, 3)))[0]
    pair = next(iter(make_pipeline(splits.test, (4, 4), 1, 3)))[0]
    np.testing.assert_array_equal(square.numpy(), pair.numpy())
    assert square.shape == (3, 4, 4, 1)
    with pytest.raises(TypeError, match="image_size must be an int or a pair of ints"):
        make_pipeline(splits.test, "8", 1, 3)
