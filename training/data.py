"""Dataset sources behind one spec string, and the tf.data input pipeline.

Specs:
    digits                     scikit-learn's bundled 8x8 digits (offline default)
    npz:PATH                   x_train, y_train, x_test, y_test arrays
    tfds:NAME[:TRAIN[:TEST]]   any TensorFlow Datasets image-classification dataset
    folder:PATH                one sub-folder per class (or PATH/train and PATH/test)

`load_splits(spec)` returns unbatched `tf.data.Dataset`s of `(uint8 image [H, W, C],
int64 label)`; `make_pipeline` (training.pipeline) shuffles, decodes, resizes, caches,
augments, batches and prefetches them. Image folders are listed and checked by
training.image_folder.
"""

import dataclasses
import math
import os
import zipfile

import numpy as np
import tensorflow as tf

from keras_vit.files import env_limit, resolve_limit
from keras_vit.training.image_folder import MAX_CLASSES_VARIABLE, list_image_folder
from keras_vit.training.pipeline import (
    ArraySource,
    FileSource,
    TfdsSource,
    make_pipeline,
    shard_options,
    source_of,
    worker_shard,
)

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
__all__ = [
    "DEFAULT_MAX_CLASSES", "DatasetInfo", "NPZ_KEYS", "Splits", "check_labels", "check_npz_sizes", "load_splits",
    "npz_array_headers", "resolve_max_classes",
    "EmptySplitError", "load_splits_for_model", "make_pipeline", "read_npz", "split_arrays", "shard_options", "stratified_split",
    "take_sample", "worker_shard",
]


@dataclasses.dataclass
class DatasetInfo:
    """What a dataset is: its spec, classes and source image shape (None if it varies)."""

    spec: str
    num_classes: int
    class_names: list
    image_shape: tuple = None
    num_examples: dict = dataclasses.field(default_factory=dict)
    # Distinct classes among the training images, where they are known without reading them.
    train_classes: int = None


@dataclasses.dataclass
class Splits:
    """Train, validation and test splits, unbatched `(uint8 image, int64 label)` datasets."""

    train: tf.data.Dataset
    validation: tf.data.Dataset  # None when no validation split was asked for
    test: tf.data.Dataset
    info: DatasetInfo


def load_splits(spec, data_dir=None, validation_fraction=0.1, seed=0, image_size=None, shard=None, manual_dir=None,
                verify_images=False, max_classes=None, max_bytes=None):
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
        shard: `(num_shards, index)`: the train split holds only this worker's share,
            split by file before decoding (folders: every num_shards-th image of the
            seeded file order; tfds: every num_shards-th record file; arrays: by index).
            Validation and test are not sharded; `info.num_examples["train"]` stays the
            whole split's size. `make_pipeline` turns tf.distribute's auto-sharding off
            for a sharded split (`shard_options()`); `worker_shard()` gives this worker's.
        manual_dir: where a tfds dataset that cannot be downloaded finds its manually
            downloaded files (ImageNet's tars); default `DATA_DIR/downloads/manual`.
        verify_images: decode every image of a folder before training (slow) to find
            corrupt data that the quick header check cannot see.
        max_classes: the most classes a dataset may have (`max_classes()`: 100,000 unless
            $KERAS_VIT_MAX_CLASSES says otherwise); checked before anything per class is built.
        max_bytes: the most bytes an npz's arrays may declare in their headers (default: the
            memory available, `read_npz`); checked before they are read.

    Images of folders over the pixel limit ($KERAS_VIT_MAX_IMAGE_PIXELS, see
    `keras_vit.files.max_image_pixels`) are skipped with the warning line of broken files.
    """
    max_classes = resolve_max_classes(max_classes)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if shard is not None:
        num_shards, index = (int(v) for v in shard)
        if num_shards < 1 or not 0 <= index < num_shards:
            raise ValueError(f"shard must be (num_shards, index) with 0 <= index < num_shards, got {shard}")
        shard = None if num_shards == 1 else (num_shards, index)
    kind, _, rest = spec.partition(":")
    if kind == "digits" and not rest:
        splits = _from_arrays(spec, *_digits_arrays(), validation_fraction, seed, shard)
    elif kind == "npz" and rest:
        x_train, y_train, x_test, y_test = read_npz(rest, max_bytes)
        splits = _from_arrays(spec, x_train, y_train, x_test, y_test, validation_fraction, seed, shard, max_classes)
    elif kind == "tfds" and rest:
        splits = _from_tfds(spec, rest, data_dir, validation_fraction, shard, manual_dir)
        if splits.info.num_classes > max_classes:
            raise ValueError(f"tfds dataset {rest.split(':')[0]!r} has {splits.info.num_classes:,} classes, more than "
                             f"the limit of {max_classes:,} (${MAX_CLASSES_VARIABLE} raises it)")
    elif kind == "folder" and rest:
        splits = _from_folder(spec, rest, validation_fraction, seed, image_size, shard, verify_images, max_classes)
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
    if shape is not None:
        # Gray data fits an RGB input, repeated as keras_vit.images converts a gray file: a gray
        # model's .tflite files take RGB and convert to gray inside (MediaPipe takes RGB only).
        fits_channels = shape[-1] == channels or (shape[-1] == 1 and channels == 3)
        if not fits_channels or (tuple(shape[:2]) != (height, width) and not resize):
            raise ValueError(
                f"dataset {spec!r} has images of size {'x'.join(map(str, shape))}, the model takes "
                f"{height}x{width}x{channels} (height x width x channels); use the data the model was trained on"
                + ("" if resize or not fits_channels else ", or --resize to resize them as training does")
            )
    return splits


class EmptySplitError(ValueError):
    """A split with no images where some are needed."""


def split_arrays(split, image_shape, count=None, seed=0, batch_size=256):
    """A split as arrays: uint8 images `[N, H, W, C]` and int64 labels `[N]`.

    The images are prepared to `image_shape` `(H, W, C)` exactly as the training pipeline
    prepares them; `count`: a seeded sample of that many (`take_sample`), else all of them.
    This is how commands hand a dataset to `export` (calibration images, test images),
    which takes arrays and knows nothing of dataset specs. Raises ValueError when the split
    holds no images.
    """
    height, width, channels = image_shape
    images, labels = [], []
    for batch, batch_labels in make_pipeline(take_sample(split, count, seed), (height, width), channels, batch_size):
        # Whole pixel values in 0..255 (prepare_images rounds): uint8 holds them exactly, in a quarter of the bytes.
        images.append(np.asarray(batch).astype("uint8"))
        labels.append(np.asarray(batch_labels, dtype="int64"))
    if not images:
        raise EmptySplitError("the split holds no images")
    return np.concatenate(images), np.concatenate(labels)


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


# Classes a dataset may have. Labels are class ids and every class costs memory (a name, a column of
# every one-hot batch, a row of the head): one stray label of 10^9 in a 20 kB npz once built a
# billion class names, past 8 GB.
DEFAULT_MAX_CLASSES = 100_000


def resolve_max_classes(max_classes=None):
    """The limit on classes: `max_classes`, else $KERAS_VIT_MAX_CLASSES, else 100,000."""
    return resolve_limit(max_classes, "max_classes", MAX_CLASSES_VARIABLE, DEFAULT_MAX_CLASSES, minimum=2)


def available_host_memory():
    """Bytes of memory the host can still give this process (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(count):
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("kiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def npz_array_headers(path):
    """`{name: (shape, dtype, stored bytes)}` of the arrays in an `.npz`, from their `.npy` headers
    (numpy.lib.format) and the zip directory alone: nothing is decompressed but the headers."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as file:
                version = np.lib.format.read_magic(file)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(file)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(file)
                else:  # (3, 0), a UTF-8 header: numpy has no public reader of its own for it
                    shape, _, dtype = np.lib.format._read_array_header(file, version)
            headers[info.filename[: -len(".npy")]] = (tuple(shape), dtype, info.file_size)
    return headers


def check_npz_sizes(path, headers, keys=NPZ_KEYS, max_bytes=None):
    """Refuses an npz whose headers declare arrays that could not be read: more bytes than their
    members hold (a corrupt or forged header), Python objects, or more than `max_bytes` together
    (default: the memory available, or $KERAS_VIT_MAX_NPZ_BYTES). Before any array is allocated."""
    total = 0
    for key in keys:
        shape, dtype, stored = headers[key]
        if dtype.hasobject:
            raise ValueError(f"{key} in {path} holds Python objects (dtype {dtype}), which are never unpickled; "
                             "an npz dataset needs numeric arrays")
        declared = math.prod(shape) * dtype.itemsize
        if declared > stored:
            raise ValueError(
                f"{key} in {path} declares shape {shape} of {dtype} ({_bytes(declared)}) but its member holds "
                f"{_bytes(stored)}: the npz file is corrupt"
            )
        total += declared
    limit, source = max_bytes, "max_bytes"
    if limit is None:
        limit, source = env_limit(MAX_NPZ_BYTES_VARIABLE, 0), f"${MAX_NPZ_BYTES_VARIABLE}"
        if not limit:
            limit, source = available_host_memory(), "the memory available"
    if limit is not None and total > limit:
        raise ValueError(
            f"the arrays of {path} take {_bytes(total)} ({', '.join(keys)}), more than {source} "
            f"({_bytes(limit)}); ${MAX_NPZ_BYTES_VARIABLE} sets the limit"
        )
    return total


MAX_NPZ_BYTES_VARIABLE = "KERAS_VIT_MAX_NPZ_BYTES"


def read_npz(path, max_bytes=None):
    """Reads and validates `x_train, y_train, x_test, y_test` from an `.npz` file.

    The arrays' headers are checked first (`check_npz_sizes`, against `max_bytes`, by default
    the memory available), so a forged header costs no memory and no traceback.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"npz file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .npz file (not a zip archive of arrays)")
    try:
        headers = npz_array_headers(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:  # numpy: ValueError for a bad header
        raise ValueError(f"{path} is not a readable .npz file ({str(error).splitlines()[0]})") from None
    missing = [key for key in NPZ_KEYS if key not in headers]
    if missing:
        raise ValueError(
            f"{path} is missing {', '.join(missing)}; an npz dataset needs "
            f"{', '.join(NPZ_KEYS)} (has {', '.join(headers) or 'nothing'})"
        )
    check_npz_sizes(path, headers, max_bytes=max_bytes)
    try:
        with np.load(path, allow_pickle=False) as archive:
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
        if len(images) == 0:
            raise ValueError(f"x_{split} in {path} holds no images; an npz dataset needs at least one train and one test image")
    return x_train, y_train, x_test, y_test


def _to_uint8_images(images, name):
    """uint8 `[N, H, W, C]` from 8-bit pixel values of any numeric dtype; anything else is an error."""
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return images
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
        raise ValueError(f"{name} must hold numeric pixel values in 0..255, got dtype {images.dtype}")
    if np.issubdtype(images.dtype, np.floating):
        nan, inf = int(np.isnan(images).sum()), int(np.isinf(images).sum())
        if nan or inf:
            found = " and ".join(f"{count:,} {kind}" for count, kind in ((nan, "NaN"), (inf, "infinite")) if count)
            raise ValueError(f"{name} holds {found} values; images must be finite pixel values in 0..255")
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise ValueError(f"{name} must hold pixel values in 0..255, got values from {low} to {high}")
    if np.issubdtype(images.dtype, np.floating):
        if high <= 1.0 and np.any(images != np.round(images)):
            raise ValueError(
                f"{name} holds fractional values from {low} to {high}, pixels scaled to 0..1; "
                f"the dataset needs 0..255 pixel values (multiply by 255)"
            )
        images = np.round(images)
    return images.astype("uint8")


def _from_arrays(spec, x_train, y_train, x_test, y_test, validation_fraction, seed, shard=None, max_classes=None):
    where = f" in {spec.partition(':')[2]}" if spec.startswith("npz:") else ""
    max_classes = resolve_max_classes(max_classes)
    for name, labels in (("y_train", y_train), ("y_test", y_test)):
        if len(labels) and int(labels.max()) >= max_classes:
            # Before anything is built per class (names, one-hot batches, the head).
            raise ValueError(
                f"{name}{where} holds the label {int(labels.max()):,}: labels are class ids 0..{max_classes - 1:,}, "
                f"at most {max_classes:,} classes (${MAX_CLASSES_VARIABLE} raises the limit)"
            )
    x_train = _to_uint8_images(x_train, f"x_train{where}")
    x_test = _to_uint8_images(x_test, f"x_test{where}")
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
        train_classes=len(np.unique(y_train)),
    )

    if shard:
        train_index = train_index[shard[1]::shard[0]]  # stratified_split's order is already seeded-random
    return Splits(
        train=ArraySource(x_train[train_index], y_train[train_index], f"{spec}/train", shard[0] if shard else 1).as_split(),
        validation=ArraySource(x_train[val_index], y_train[val_index], f"{spec}/validation").as_split(),
        test=ArraySource(x_test, y_test, f"{spec}/test").as_split(),
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


# Elements a `limit` draws from: a shuffle buffer this large holds a CIFAR/MNIST test split whole...
SAMPLE_BUFFER = 10_000
# ...unless its decoded images would take more bytes than this.
SAMPLE_BUFFER_BYTES = 256 * 2**20


def take_sample(dataset, count, seed=0):
    """`count` elements of a seeded shuffle of `dataset` (all of it when `count` is falsy).

    A plain `take(count)` is biased where a split is stored sorted by class (the test split of
    `cifar10_jpeg.npz` is: its first 5,000 images are classes 0-4), so limits draw a fixed,
    seeded sample instead. The order is the same on every iteration and every run. Splits of
    arrays and image files sample their index or file list (nothing is decoded to choose);
    a sharded split gives each worker its share of `count`. Other datasets sample through a
    shuffle buffer of at most 10,000 elements and 256 MiB.
    """
    if count is not None and int(count) < 0:
        raise ValueError(f"a sample needs a count of at least 1, got {count}")
    if not count:
        return dataset
    source = source_of(dataset)
    if source is not None:
        share = getattr(source, "num_shards", 1)
        sampled = source.sample(-(-int(count) // share), seed)
        if sampled is not None:
            return sampled.as_split()
    shape = dataset.element_spec[0].shape if isinstance(dataset.element_spec, tuple) else dataset.element_spec.shape
    buffer = SAMPLE_BUFFER
    if shape.is_fully_defined():
        by_bytes = SAMPLE_BUFFER_BYTES // max(shape.num_elements(), 1)
        buffer = max(min(SAMPLE_BUFFER, by_bytes), min(int(count), SAMPLE_BUFFER))
    return dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=False).take(int(count))


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


def _from_tfds(spec, rest, data_dir, validation_fraction, shard=None, manual_dir=None):
    import tensorflow_datasets as tfds

    name, *splits = rest.split(":")
    train_split = splits[0] if len(splits) > 0 else "train"
    test_split = splits[1] if len(splits) > 1 else "test"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError and others
        raise ValueError(f"Unknown TensorFlow Datasets dataset {name!r}: {str(error).splitlines()[0]}") from None
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    try:
        builder.download_and_prepare(download_config=download_config)
    except AssertionError as error:  # how tfds says that a manual download is missing
        raise FileNotFoundError(
            f"tfds dataset {name!r} is built from files downloaded by hand: {str(error).strip().splitlines()[0]} "
            f"(the folder is --manual-dir, by default DATA_DIR/downloads/manual)"
        ) from None
    info = builder.info
    if info.supervised_keys is None or "label" not in info.features:
        raise ValueError(f"tfds dataset {name!r} is not a supervised image-classification dataset")
    # TFDS slices by whole percent; a small non-zero fraction still holds out 1%.
    percent = max(int(round(validation_fraction * 100)), 1) if validation_fraction else 0
    if percent:
        train_part, val_part = f"{train_split}[:{100 - percent}%]", f"{train_split}[{100 - percent}%:]"
    else:
        train_part, val_part = train_split, f"{train_split}[:0%]"
    label_feature = info.features["label"]
    image_feature = info.features[info.supervised_keys[0]]
    shape = tuple(image_feature.shape)
    shape = shape if None not in shape else None
    train, validation, test = (
        TfdsSource(builder, part, shape, shard if part == train_part else None)
        for part in (train_part, val_part, test_split)
    )
    return Splits(
        train=train.as_split(),
        validation=validation.as_split(),
        test=test.as_split(),
        info=DatasetInfo(
            spec=spec,
            num_classes=label_feature.num_classes,
            class_names=list(label_feature.names),
            image_shape=shape,
            num_examples={
                # The whole split's size, also when sharded (what steps per epoch are counted from).
                "train": TfdsSource(builder, train_part).num_examples,
                "validation": validation.num_examples,
                "test": test.num_examples,
            },
        ),
    )


# --- image folders --------------------------------------------------------------------


def _from_folder(spec, path, validation_fraction, seed, image_size, shard=None, verify_images=False, max_classes=None):
    train_dir, test_dir = os.path.join(path, "train"), os.path.join(path, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        class_names, files, labels, channels, size = list_image_folder(train_dir, verify_images, max_classes)
        test_names, test_files, test_labels, test_channels, _ = list_image_folder(test_dir, verify_images, max_classes)
        if test_names != class_names:
            raise ValueError(f"{test_dir} has classes {test_names}, {train_dir} has {class_names}")
        channels = max(channels, test_channels)
    else:
        # No separate test folder: hold out a seeded 20% of each class as the test split.
        class_names, all_files, all_labels, channels, size = list_image_folder(path, verify_images, max_classes)
        keep, held = stratified_split(all_labels, 0.2, seed + 1)
        files, labels = all_files[keep], all_labels[keep]
        test_files, test_labels = all_files[held], all_labels[held]
    train_index, val_index = stratified_split(labels, validation_fraction, seed)
    image_size = tuple(image_size) if image_size is not None else size

    def source(index_files, index_labels, split):
        return FileSource(index_files, index_labels, channels, image_size, f"{spec}/{split}")

    train = source(files[train_index], labels[train_index], "train")
    if shard:
        train = train.shard(*shard)
    return Splits(
        train=train.as_split(),
        validation=source(files[val_index], labels[val_index], "validation").as_split(),
        test=source(test_files, test_labels, "test").as_split(),
        info=DatasetInfo(
            spec=spec,
            num_classes=len(class_names),
            class_names=class_names,
            image_shape=(*image_size, channels),
            num_examples={"train": len(train_index), "validation": len(val_index), "test": len(test_files)},
            train_classes=len(np.unique(labels[train_index])),
        ),
    )
