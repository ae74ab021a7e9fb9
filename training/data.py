"""Dataset sources behind one spec string, and the tf.data input pipeline.

Specs:
    digits                     scikit-learn's bundled 8x8 digits (offline default)
    npz:PATH                   x_train, y_train, x_test, y_test arrays
    tfds:NAME[:TRAIN[:TEST]]   any TensorFlow Datasets image-classification dataset
    folder:PATH                one sub-folder per class (or PATH/train and PATH/test)

`load_splits(spec)` returns unbatched `tf.data.Dataset`s of `(uint8 image [H, W, C],
int64 label)`; `make_pipeline` resizes, augments, batches and prefetches them.
"""

import dataclasses
import os
import zipfile

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass
class DatasetInfo:
    """What a dataset is: its spec, classes and source image shape (None if it varies)."""

    spec: str
    num_classes: int
    class_names: list
    image_shape: tuple = None
    num_examples: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Splits:
    """Train, validation and test splits, unbatched `(uint8 image, int64 label)` datasets."""

    train: tf.data.Dataset
    validation: tf.data.Dataset  # None when no validation split was asked for
    test: tf.data.Dataset
    info: DatasetInfo


def load_splits(spec, data_dir=None, validation_fraction=0.1, seed=0, image_size=None):
    """Loads a dataset spec into train / validation / test splits.

    Args:
        spec: `digits`, `npz:PATH`, `tfds:NAME[:TRAIN[:TEST]]` or `folder:PATH`.
        data_dir: TensorFlow Datasets data directory (tfds only).
        validation_fraction: share of the training data held out for validation,
            chosen by a seeded shuffle (stratified for array sources; whole percent
            for tfds). 0 trains on all of it: `Splits.validation` is then None.
        seed: seed of the validation split.
        image_size: `(height, width)` that folder images are resized to when
            decoded (they may differ in size); other sources keep their size.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    kind, _, rest = spec.partition(":")
    if kind == "digits" and not rest:
        splits = _from_arrays(spec, *_digits_arrays(), validation_fraction, seed)
    elif kind == "npz" and rest:
        x_train, y_train, x_test, y_test = read_npz(rest)
        splits = _from_arrays(spec, x_train, y_train, x_test, y_test, validation_fraction, seed)
    elif kind == "tfds" and rest:
        splits = _from_tfds(spec, rest, data_dir, validation_fraction)
    elif kind == "folder" and rest:
        splits = _from_folder(spec, rest, validation_fraction, seed, image_size)
    else:
        raise ValueError(
            f"Unknown dataset spec {spec!r}; expected 'digits', 'npz:PATH', "
            f"'tfds:NAME[:TRAIN[:TEST]]' or 'folder:PATH'"
        )
    if validation_fraction == 0:
        # An empty dataset would make Keras validate on nothing and log "NA" scores.
        splits.validation = None
    return splits


def load_splits_for_model(spec, image_shape, data_dir=None, resize=False):
    """`load_splits` for a trained model: its images must already be `image_shape` (H, W, C).

    Calibration and evaluation use the images a model was made for, never silently
    resized ones, so a dataset of another size is an error, unless `resize`: the
    pipeline then resizes them as `keras-vit train` did (the commands turn it on for the
    dataset a model was trained on, or on `--resize`).
    """
    height, width, channels = image_shape
    splits = load_splits(spec, data_dir=data_dir, image_size=(height, width))
    shape = splits.info.image_shape
    if shape is not None and tuple(shape) != (height, width, channels) and not (resize and shape[-1] == channels):
        raise ValueError(
            f"dataset {spec!r} has images of size {'x'.join(map(str, shape))}, the model takes "
            f"{height}x{width}x{channels} (height x width x channels); use the data the model was trained on"
            + ("" if resize or shape[-1] != channels else ", or --resize to resize them as training does")
        )
    return splits


# --- array sources -----------------------------------------------------------------


def _digits_arrays():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 gray levels to 0..255, so that every source feeds raw 8-bit pixels.
    images = np.round(digits.images * (255.0 / 16.0)).astype("uint8")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    return x_train, y_train, x_test, y_test


def read_npz(path):
    """Reads and validates `x_train, y_train, x_test, y_test` from an `.npz` file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"npz file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .npz file (not a zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise ValueError(
                    f"{path} is missing {', '.join(missing)}; an npz dataset needs "
                    f"{', '.join(NPZ_KEYS)} (has {', '.join(archive.files) or 'nothing'})"
                )
            arrays = [archive[key] for key in NPZ_KEYS]
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error})") from None
    x_train, y_train, x_test, y_test = arrays
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        if images.ndim not in (3, 4):
            raise ValueError(
                f"x_{split} in {path} must be images [N, H, W] or [N, H, W, C], got shape {images.shape}"
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"y_{split} in {path} must be integer class ids [N], got {labels.dtype} {labels.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"x_{split} has {len(images)} images but y_{split} has {len(labels)} labels in {path}"
            )
    return x_train, y_train, x_test, y_test


def _to_uint8_images(images, name):
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"{name} must hold pixel values in 0..255, got {images.min()}..{images.max()}")
        images = images.astype("uint8")
    return images


def _from_arrays(spec, x_train, y_train, x_test, y_test, validation_fraction, seed):
    x_train = _to_uint8_images(x_train, "x_train")
    x_test = _to_uint8_images(x_test, "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    check_labels(y_train, num_classes, "y_train")
    check_labels(y_test, num_classes, "y_test")
    train_index, val_index = stratified_split(y_train, validation_fraction, seed)
    info = DatasetInfo(
        spec=spec,
        num_classes=num_classes,
        class_names=[str(i) for i in range(num_classes)],
        image_shape=tuple(x_train.shape[1:]),
        num_examples={"train": len(train_index), "validation": len(val_index), "test": len(x_test)},
    )

    def dataset(images, labels):
        return tf.data.Dataset.from_tensor_slices((images, labels.astype("int64")))

    return Splits(
        train=dataset(x_train[train_index], y_train[train_index]),
        validation=dataset(x_train[val_index], y_train[val_index]),
        test=dataset(x_test, y_test),
        info=info,
    )


def check_labels(labels, num_classes, name="labels"):
    """Raises if any label is outside `[0, num_classes)`."""
    labels = np.asarray(labels)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} holds {int(bad.sum())} labels outside [0, {num_classes}), "
            f"e.g. {labels[bad][0]}"
        )


# Elements a `limit` draws from: a shuffle buffer this large holds a CIFAR/MNIST test split whole.
SAMPLE_BUFFER = 10_000


def take_sample(dataset, count, seed=0):
    """The first `count` elements of a seeded shuffle of `dataset` (all of it when `count` is falsy).

    A plain `take(count)` is biased where a split is stored sorted by class (the test split of
    `cifar10_jpeg.npz` is: its first 5,000 images are classes 0-4), so limits draw a fixed,
    seeded sample instead. The order is the same on every iteration and every run.
    """
    if not count:
        return dataset
    return dataset.shuffle(SAMPLE_BUFFER, seed=seed, reshuffle_each_iteration=False).take(int(count))


def stratified_split(labels, fraction, seed):
    """Seeded per-class split of indices into (kept, held_out), `fraction` held out."""
    rng = np.random.default_rng(seed)
    kept, held_out = [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(len(index) * fraction))
        held_out.append(index[:count])
        kept.append(index[count:])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(held_out))


# --- TensorFlow Datasets --------------------------------------------------------------


def _from_tfds(spec, rest, data_dir, validation_fraction):
    import tensorflow_datasets as tfds

    name, *splits = rest.split(":")
    train_split = splits[0] if len(splits) > 0 else "train"
    test_split = splits[1] if len(splits) > 1 else "test"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError and others
        raise ValueError(f"Unknown TensorFlow Datasets dataset {name!r}: {str(error).splitlines()[0]}") from None
    builder.download_and_prepare()
    info = builder.info
    if info.supervised_keys is None or "label" not in info.features:
        raise ValueError(f"tfds dataset {name!r} is not a supervised image-classification dataset")
    # TFDS slices by whole percent; a small non-zero fraction still holds out 1%.
    percent = max(int(round(validation_fraction * 100)), 1) if validation_fraction else 0
    if percent:
        train_part, val_part = f"{train_split}[:{100 - percent}%]", f"{train_split}[{100 - percent}%:]"
    else:
        train_part, val_part = train_split, f"{train_split}[:0%]"
    train, validation, test = (
        builder.as_dataset(split=part, as_supervised=True, shuffle_files=False)
        for part in (train_part, val_part, test_split)
    )
    label_feature = info.features["label"]
    image_feature = info.features[info.supervised_keys[0]]
    shape = tuple(image_feature.shape)
    cast = lambda image, label: (tf.cast(image, tf.uint8), tf.cast(label, tf.int64))
    return Splits(
        train=train.map(cast),
        validation=validation.map(cast),
        test=test.map(cast),
        info=DatasetInfo(
            spec=spec,
            num_classes=label_feature.num_classes,
            class_names=list(label_feature.names),
            image_shape=shape if None not in shape else None,
            num_examples={"train": None, "validation": None, "test": _split_size(info, test_split)},
        ),
    )


def _split_size(info, split):
    try:
        return info.splits[split].num_examples
    except (KeyError, ValueError):  # unknown before generation, e.g. under tfds mock_data
        return None


# --- image folders --------------------------------------------------------------------


def _list_class_folder(path):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"image folder not found: {path}")
    class_names = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not class_names:
        raise ValueError(f"{path} has no class sub-folders; expected one sub-folder of images per class")
    files, labels = [], []
    for label, class_name in enumerate(class_names):
        for root, _, names in sorted(os.walk(os.path.join(path, class_name))):
            for file_name in sorted(names):
                if file_name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(root, file_name))
                    labels.append(label)
    if not files:
        raise ValueError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    return class_names, np.array(files), np.array(labels, dtype="int64")


def decode_image_file(path, channels, image_size):
    """Reads one image file into uint8 `[H, W, C]`, resized to `image_size` if given."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    if image_size is not None:
        image = tf.cast(tf.clip_by_value(tf.image.resize(image, image_size), 0, 255), tf.uint8)
    return image


def _from_folder(spec, path, validation_fraction, seed, image_size):
    train_dir, test_dir = os.path.join(path, "train"), os.path.join(path, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        class_names, files, labels = _list_class_folder(train_dir)
        test_names, test_files, test_labels = _list_class_folder(test_dir)
        if test_names != class_names:
            raise ValueError(f"{test_dir} has classes {test_names}, {train_dir} has {class_names}")
    else:
        # No separate test folder: hold out a seeded 20% of each class as the test split.
        class_names, all_files, all_labels = _list_class_folder(path)
        keep, held = stratified_split(all_labels, 0.2, seed + 1)
        files, labels = all_files[keep], all_labels[keep]
        test_files, test_labels = all_files[held], all_labels[held]
    train_index, val_index = stratified_split(labels, validation_fraction, seed)
    first = decode_image_file(files[0], 0, None)
    channels = int(first.shape[-1])
    if image_size is None:
        image_size = tuple(first.shape[:2])

    def dataset(paths, ids):
        ds = tf.data.Dataset.from_tensor_slices((paths, ids))
        return ds.map(
            lambda p, y: (decode_image_file(p, channels, image_size), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return Splits(
        train=dataset(files[train_index], labels[train_index]),
        validation=dataset(files[val_index], labels[val_index]),
        test=dataset(test_files, test_labels),
        info=DatasetInfo(
            spec=spec,
            num_classes=len(class_names),
            class_names=class_names,
            image_shape=(*image_size, channels),
            num_examples={"train": len(train_index), "validation": len(val_index), "test": len(test_files)},
        ),
    )


# --- the input pipeline --------------------------------------------------------------


def prepare_images(images, image_size, channels):
    """Casts raw images to float32 0..255, resizes to `image_size` and adapts channels.

    Works on `[H, W, C]` or `[B, H, W, C]`; 1 -> 3 channels repeats the gray level,
    3 -> 1 takes the luminance.
    """
    images = tf.cast(images, tf.float32)
    have = images.shape[-1]
    if have != channels:
        if have == 1 and channels == 3:
            images = tf.image.grayscale_to_rgb(images)
        elif have == 3 and channels == 1:
            images = tf.image.rgb_to_grayscale(images)
        else:
            raise ValueError(f"cannot convert images with {have} channels to {channels} channels")
    if tuple(images.shape[-3:-1]) != tuple(image_size):
        images = tf.image.resize(images, image_size, method="bilinear")
    return images


def make_pipeline(
    dataset,
    image_size,
    channels,
    batch_size,
    training=False,
    num_classes=None,
    augmenter=None,
    seed=0,
    shuffle_buffer=10_000,
    cache=True,
    drop_remainder=False,
):
    """Turns an unbatched `(image, label)` dataset into model-ready batches.

    Output: `(float32 [B, H, W, C] raw 0..255 pixels, labels)`; labels are int32 ids,
    or float32 one-hot `[B, num_classes]` when `num_classes` is given (needed for
    label smoothing and MixUp/CutMix). `augmenter` (see `training.augment`) maps a
    batch `(images, one_hot_labels)` while training.
    """
    image_size = tuple(image_size)
    ds = dataset.map(
        lambda image, label: (prepare_images(image, image_size, channels), tf.cast(label, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if num_classes is not None:
        ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))
    if training and augmenter is not None:
        if num_classes is None:
            raise ValueError("augmentation needs one-hot labels: pass num_classes")
        # Sequential on purpose: the Keras augmentation layers draw from stateful seed
        # generators, and parallel calls would hand out their states in a racy order,
        # breaking determinism under a seed.
        ds = ds.map(augmenter)
    return ds.prefetch(tf.data.AUTOTUNE)
