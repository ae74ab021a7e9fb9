"""The tf.data input pipeline: from a split's source to model-ready float32 batches.

A split from `training.data.load_splits` is a plain `tf.data.Dataset` of `(uint8 image,
int64 label)`, and it also carries its `Source` (arrays, image files or a TFDS split).
`make_pipeline` asks the source for a dataset shuffled before decoding when it can: image
files shuffle their path list and arrays an index (full shuffles, new each epoch, that
hold no images), TFDS shuffles its record files and then a buffer bounded in bytes. Images
stay uint8 at the model's size until the batch is cast to float32, so a memory cache holds
1 byte per pixel value, and only when the split fits its budget.
"""

import hashlib
import os

import numpy as np
import tensorflow as tf

from keras_vit.images import decode_image_file, prepare_images, resize_uint8
from keras_vit.layers.patches import int_pair

# Bytes of decoded images a shuffle buffer may hold (about 440 images of 224x224x3)...
SHUFFLE_BUFFER_BYTES = 64 * 2**20
# ...and at most this many images (small images: the old fixed buffer).
SHUFFLE_BUFFER_MAX = 10_000


class Source:
    """Where a split's examples come from, for shuffling, sampling and sharding before decoding.

    Subclasses give `num_examples` (None if unknown), `image_shape` (None if it varies),
    `decodes` (whether reading an example costs a decode), `shuffles_fully` and
    `dataset(shuffle_seed, deterministic, exact_count)`.
    """

    num_examples = None
    image_shape = None
    decodes = True
    shuffles_fully = False
    fingerprint = ""
    num_shards = 1  # a shard's share of a sample is 1 / num_shards of it

    def dataset(self, shuffle_seed=None, deterministic=None, exact_count=False):
        """Unbatched `(uint8 image, int64 label)`; `shuffle_seed`: reshuffled on every iteration.

        `exact_count`: a pass holds `num_examples` elements even where some could not be read.
        """
        raise NotImplementedError

    def sample(self, count, seed):
        """A source of `count` of these examples, seeded; None if this source cannot sample."""
        return None

    def as_split(self):
        """The split's plain dataset (the source's fixed order), carrying this source."""
        dataset = self.dataset()
        dataset._keras_vit_source = self
        return dataset


def source_of(dataset):
    """The `Source` a split dataset came from, or None for any other dataset."""
    return getattr(dataset, "_keras_vit_source", None)


def _sample_index(size, count, seed):
    return np.random.default_rng(seed).permutation(size)[: int(count)]


class ArraySource(Source):
    """Images already in memory: uint8 `[N, H, W, C]` and int64 labels `[N]`."""

    decodes = False
    shuffles_fully = True

    def __init__(self, images, labels, name="", num_shards=1):
        self.images, self.labels = images, np.asarray(labels, dtype="int64")
        self.num_shards = num_shards
        self.num_examples = len(self.labels)
        self.image_shape = tuple(images.shape[1:])
        self.fingerprint = name

    def dataset(self, shuffle_seed=None, deterministic=None, exact_count=False):
        if shuffle_seed is None:
            return tf.data.Dataset.from_tensor_slices((self.images, self.labels))
        images, labels = tf.constant(self.images), tf.constant(self.labels)
        # A permuted index, not a buffer of image copies: a full shuffle that holds no images.
        index = tf.data.Dataset.range(self.num_examples).shuffle(
            self.num_examples, seed=shuffle_seed, reshuffle_each_iteration=True
        )
        return index.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))

    def sample(self, count, seed):
        index = _sample_index(self.num_examples, count, seed)
        return ArraySource(self.images[index], self.labels[index], f"{self.fingerprint}/sample{count}-{seed}",
                           self.num_shards)


class FileSource(Source):
    """Image files decoded to uint8 `[*decode_size, channels]`, in `paths` order."""

    shuffles_fully = True

    def __init__(self, paths, labels, channels, decode_size, name="", num_shards=1):
        self.num_shards = num_shards
        self.paths, self.labels = np.asarray(paths, dtype=object), np.asarray(labels, dtype="int64")
        self.channels, self.decode_size = int(channels), tuple(decode_size)
        self.num_examples = len(self.labels)
        self.image_shape = (*self.decode_size, self.channels)
        digest = hashlib.sha1("\n".join(self.paths.tolist()).encode()).hexdigest()[:12]
        self.fingerprint = f"{name}-{digest}"

    def dataset(self, shuffle_seed=None, deterministic=None, exact_count=False):
        ds = tf.data.Dataset.from_tensor_slices((self.paths, self.labels))
        if shuffle_seed is not None:
            # Paths, not images: a full shuffle, new each epoch, in a few bytes per file.
            ds = ds.shuffle(self.num_examples, seed=shuffle_seed, reshuffle_each_iteration=True)
        channels, size = self.channels, self.decode_size
        ds = ds.map(
            lambda path, label: (decode_image_file(path, channels, size), label),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic,
        )
        # The last safety net: a file that passed the pre-training check but fails to decode
        # (corrupt data inside it) is skipped, not an error that ends the epoch. tf.data logs
        # each at WARNING level (hidden under TF_CPP_MIN_LOG_LEVEL=2); counting them here
        # would take a sequential per-image step (40 us an image on this project's 2-core
        # machine), so `load_splits(verify_images=True)` is the way to find and name them.
        ds = ds.ignore_errors(log_warning=True)
        if exact_count:
            # A skipped file leaves a pass one short and its length unknown, and Keras' fit,
            # told steps_per_epoch, then runs every other epoch empty. The next images of a
            # fresh pass fill the gap and keep the length known. (A pass of only unreadable
            # files ends empty: repeat stops on an input that yields nothing.)
            ds = ds.repeat().take(self.num_examples)
        return ds

    def sample(self, count, seed):
        index = _sample_index(self.num_examples, count, seed)
        return FileSource(self.paths[index], self.labels[index], self.channels, self.decode_size,
                          f"{self.fingerprint}/sample{count}-{seed}", self.num_shards)

    def shard(self, num_shards, index):
        return FileSource(self.paths[index::num_shards], self.labels[index::num_shards], self.channels,
                          self.decode_size, f"{self.fingerprint}/shard{index}of{num_shards}", num_shards)


class TfdsSource(Source):
    """A TensorFlow Datasets split, read with `builder.as_dataset`.

    Shuffling shuffles the order of its record files (new each epoch); `make_pipeline` adds a
    buffer bounded in bytes. `shard=(num_shards, index)` reads every num_shards-th file
    (`tfds.ReadConfig(input_context=...)`), or, with fewer files than shards, an even
    share of the examples (`tfds.even_splits`), so no worker reads what another decodes.
    """

    def __init__(self, builder, split, image_shape=None, shard=None):
        self.builder, self.split, self.shard_spec = builder, split, shard
        self.num_shards = shard[0] if shard else 1
        self.image_shape = image_shape
        self.fingerprint = f"tfds-{builder.name}-{builder.version}-{split}"
        if shard:
            self.fingerprint += f"-shard{shard[1]}of{shard[0]}"
        self.by_files = False
        if shard:
            import tensorflow_datasets as tfds

            num_files = _num_files(builder, split)
            self.by_files = num_files is not None and num_files >= shard[0]
            if not self.by_files:
                self.split = tfds.even_splits(split, n=shard[0], drop_remainder=False)[shard[1]]
        if shard and self.by_files:
            # tfds gives worker i the files i, i + num_shards, ... of the split.
            instructions = builder.info.splits[split].file_instructions[shard[1]::shard[0]]
            self.num_examples = sum(int(f.take) for f in instructions)  # `take`: examples read from that file
        else:
            self.num_examples = _split_size(builder.info, self.split)
        self.shuffles_fully = False

    def dataset(self, shuffle_seed=None, deterministic=None, exact_count=False):
        import tensorflow_datasets as tfds

        input_context = None
        if self.shard_spec and self.by_files:
            input_context = tf.distribute.InputContext(num_input_pipelines=self.shard_spec[0],
                                                       input_pipeline_id=self.shard_spec[1])
        read_config = tfds.ReadConfig(
            shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=True, input_context=input_context,
        )
        ds = self.builder.as_dataset(split=self.split, as_supervised=True, shuffle_files=shuffle_seed is not None,
                                     read_config=read_config)
        return ds.map(lambda image, label: (tf.cast(image, tf.uint8), tf.cast(label, tf.int64)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _num_files(builder, split):
    try:
        return len(builder.info.splits[split].file_instructions)
    except Exception:  # unknown before generation (mock data) or an unusual split string
        return None


def _split_size(info, split):
    try:
        return int(info.splits[split].num_examples)
    except Exception:  # unknown before generation, e.g. under tfds mock_data
        return None


def shard_options():
    """`tf.data.Options` for a train dataset sharded by `load_splits(shard=...)`.

    Each worker already reads only its own files, so `tf.distribute`'s automatic sharding
    must be off (`AutoShardPolicy.OFF`): `dataset.with_options(shard_options())`.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def worker_shard(tf_config=None):
    """`(num_input_pipelines, index)` of this worker under `TF_CONFIG`, None for a single worker.

    The order of MultiWorkerMirroredStrategy's workers: the chief (if any) first, then the
    workers by index; for `load_splits(shard=...)`.
    """
    if tf_config is None:
        from keras_vit.training.strategy import read_tf_config

        tf_config = read_tf_config()
    cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    if chiefs + workers <= 1 or task.get("type") not in ("chief", "worker"):
        return None
    index = int(task.get("index", 0)) + (chiefs if task["type"] == "worker" else 0)
    return chiefs + workers, index


def _to_model_uint8(image, image_size, channels):
    """uint8 `[H, W, C]` at the model's size and channels (what a cache holds)."""
    if image.shape[-1] == channels and tuple(image.shape[-3:-1]) == tuple(image_size):
        return image
    if image.shape[-1] == channels:
        return resize_uint8(image, image_size)
    return tf.cast(prepare_images(image, image_size, channels), tf.uint8)


def shuffle_buffer_size(image_shape, budget_bytes=SHUFFLE_BUFFER_BYTES):
    """Images of `image_shape` (uint8) that a shuffle buffer of `budget_bytes` holds, 64..10,000."""
    return int(min(max(budget_bytes // max(int(np.prod(image_shape)), 1), 64), SHUFFLE_BUFFER_MAX))


def make_pipeline(
    dataset,
    image_size,
    channels,
    batch_size,
    training=False,
    num_classes=None,
    augmenter=None,
    seed=0,
    drop_remainder=False,
    *,
    cache_memory_bytes=0,
    cache_file=None,
    num_examples=None,
    repeat=None,
    deterministic=None,
    shuffle_buffer_bytes=SHUFFLE_BUFFER_BYTES,
):
    """Turns an unbatched `(uint8 image, label)` split into model-ready batches.

    Output: `(float32 [B, H, W, C] raw 0..255 pixels, labels)`; labels are int32 ids,
    or float32 one-hot `[B, num_classes]` when `num_classes` is given (needed for
    label smoothing and MixUp/CutMix). `augmenter` (see `training.augment`) maps a
    batch `(images, one_hot_labels)` while training.

    Images are decoded (and resized) to uint8 at the model's size and cast to float32
    per batch. They are decoded once and kept when there is a cache: in memory when the
    split's `num_examples * H * W * C` bytes fit `cache_memory_bytes` (0: never), else in
    tf.data cache files at `cache_file` (a path prefix; None: none). `num_examples`
    defaults to the split's known size.

    `training` shuffles (seeded, new each epoch). A pass over image files holds exactly the
    split's number of images, so its length is known: the next images of a fresh pass stand
    in for any skipped as undecodable (in an evaluation, such an image counts twice; the
    pre-training check has left out the files it can tell are broken). `repeat` (default: only for a sharded train split) repeats
    forever: pass `steps_per_epoch` to `fit`. Shards differ in size by an image, so every
    worker needs an endless stream to take part in every step; a sharded split also turns
    tf.distribute's auto-sharding off (`shard_options()`). `deterministic=False` lets
    parallel decoding deliver out of order (a seed then no longer fixes the order); None:
    tf.data's default (in order).
    """
    image_size = int_pair(image_size, "image_size", "(height, width)")
    source = source_of(dataset)
    element_shape = (*image_size, channels)
    element_bytes = int(np.prod(element_shape))
    if num_examples is None:
        num_examples = source.num_examples if source is not None else None
    if num_examples is None:
        cardinality = int(dataset.cardinality())
        num_examples = cardinality if cardinality >= 0 else None
    # A cache pays where reading an example costs work: a decode, a resize, a channel change.
    costly = source is None or source.decodes or tuple(source.image_shape or ()) != element_shape
    in_memory = num_examples is not None and 0 < num_examples * element_bytes <= (cache_memory_bytes or 0)
    cache = None
    if costly and in_memory:
        cache = ""
    elif costly and cache_file:
        cache = _cache_path(cache_file, source, element_shape)
    sharded = source is not None and source.num_shards > 1
    if repeat is None:
        repeat = training and sharded

    if source is not None:
        # A cached split is read once in its fixed order; shuffling happens after the cache.
        shuffled_early = training and cache is None
        ds = source.dataset(shuffle_seed=seed if shuffled_early else None, deterministic=deterministic,
                            # Every split: Keras warns "Your input ran out of data" when a dataset of
                            # unknown length (ignore_errors makes it so) ends, validation included.
                            exact_count=True)
        shuffled = shuffled_early and source.shuffles_fully
    else:
        ds, shuffled = dataset, False
    if ds.element_spec[0].shape[-1] != channels or tuple(ds.element_spec[0].shape[-3:-1]) != image_size:
        ds = ds.map(
            lambda image, label: (_to_model_uint8(image, image_size, channels), label),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic,
        )
    if cache is not None:
        ds = ds.cache(cache)
    if training and not shuffled:
        buffer = shuffle_buffer_size(element_shape, shuffle_buffer_bytes)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_model(images, labels):
        images = prepare_images(images, image_size, channels)
        labels = tf.cast(labels, tf.int32)
        return images, (labels if num_classes is None else tf.one_hot(labels, num_classes))

    ds = ds.map(to_model, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if sharded:
        ds = ds.with_options(shard_options())  # this worker reads its own files already
    if training and augmenter is not None:
        if num_classes is None:
            raise ValueError("augmentation needs one-hot labels: pass num_classes")
        # Sequential on purpose: the Keras augmentation layers draw from stateful seed
        # generators, and parallel calls would hand out their states in a racy order,
        # breaking determinism under a seed.
        ds = ds.map(augmenter)
    return ds.prefetch(tf.data.AUTOTUNE)


def _cache_path(prefix, source, element_shape):
    """A cache file prefix per split, image shape and worker, so that no run reads another split's cache."""
    key = source.fingerprint if source is not None and source.fingerprint else "dataset"
    # Workers of one machine given the same prefix must not write the same validation cache.
    from keras_vit.training.strategy import read_tf_config

    task = read_tf_config().get("task", {})
    worker = f"-{task.get('type', 'worker')}{task.get('index', 0)}" if task else ""
    digest = hashlib.sha1(f"{key}-{element_shape}".encode()).hexdigest()[:16] + worker
    path = f"{prefix}-{digest}"
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    # A run killed while writing leaves a lock file that would make the next run fail.
    for name in os.listdir(directory or "."):
        if name.startswith(os.path.basename(path)) and name.endswith(".lockfile"):
            os.remove(os.path.join(directory or ".", name))
    return path
