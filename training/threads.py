"""TensorFlow's intra-op threads for a training run, chosen from the size of its step.

TensorFlow splits a large op (a matrix product, an element-wise op over many values) across
its intra-op pool, one thread per core. A small model's step is some 900 small ops; handing
part of each to a second thread costs more in waking and joining it than the half it saves.
The bundled digits job (138k parameters, 17 tokens, batch 64) steps in 27 ms with one
intra-op thread against 32 ms with TensorFlow's two on a 2-core AVX2 EPYC, while the
10,000-100,000-image tier's model (batch 128) is faster with two (BENCHMARKS.md, "Digits").
TensorFlow's inter-op pool (independent ops side by side) is left as it is.

The pool is fixed once TensorFlow starts, which is before the data are read into a
`tf.data` pipeline; so the choice is made from what a dataset says of itself without
TensorFlow: the bundled digits and `.npz` arrays (their headers). Other datasets (folders,
tfds) keep TensorFlow's default, as does a run where `TF_NUM_INTRAOP_THREADS` is set.
"""

import os

from keras_vit.layers.patches import int_pair
from keras_vit.training.memory import num_tokens

# Steps below this many multiply-adds train faster on one intra-op thread: the digits job's is
# 0.45 G; the 10,000-100,000-image tier's (MNIST, CIFAR-10 at batch 128) 5.6 G, faster on two.
SMALL_STEP_MULTIPLY_ADDS = 1.5e9
ENVIRONMENT_VARIABLE = "TF_NUM_INTRAOP_THREADS"
# The bundled digits: 1,437 training images of 8x8x1 (sklearn's 1,797 less the 20% test split).
DIGITS_TRAIN = (1437, (8, 8, 1))


def step_multiply_adds(model_args, batch_size):
    """Multiply-adds of one training step of a `ViT(**model_args)` at `batch_size` images:
    the forward pass's matrix products and convolutions, times 3 for the backward pass.

    Per block: q/k/v and output projections (4 x hidden²), the MLP (2 x hidden x mlp_dim) per
    token, and attention's scores and weighted values (2 x tokens x hidden) per token (the last
    block of a class-token model only for its class token, q/k/v aside); the stem's 3x3
    convolutions (each halves the image); the patch embedding.
    """
    height, width = int_pair(model_args.get("image_size", 224), "image_size", "(height, width)")
    channels = int(model_args.get("channels", 3))
    hidden, mlp = int(model_args.get("hidden_dim", 768)), int(model_args.get("mlp_dim", 3072))
    layers = int(model_args.get("num_layers", 12))
    tokens = num_tokens(model_args)
    per_block = tokens * (4 * hidden * hidden + 2 * hidden * mlp + 2 * tokens * hidden)
    blocks = layers * per_block
    if model_args.get("pooling", "token") == "token" and model_args.get("use_class_token", True) and layers:
        # The last block computes the class token's query, projection and MLP alone (keras_vit.model).
        blocks -= (tokens - 1) * (hidden * hidden + 2 * hidden * mlp + 2 * tokens * hidden)
    stem, inputs = 0, channels
    for index, stem_channels in enumerate(model_args.get("stem_channels") or ()):
        pixels = (height // 2 ** (index + 1)) * (width // 2 ** (index + 1))
        stem += pixels * 9 * inputs * stem_channels
        inputs = stem_channels
    patch_pixels = height * width // 4 ** len(model_args.get("stem_channels") or ())
    embedding = patch_pixels * inputs * hidden
    return 3 * batch_size * (blocks + stem + embedding)


def choose_intra_op_threads(model_args, batch_size):
    """1 for a step below `SMALL_STEP_MULTIPLY_ADDS`, else None (TensorFlow's default)."""
    return 1 if step_multiply_adds(model_args, batch_size) < SMALL_STEP_MULTIPLY_ADDS else None


def array_dataset_shape(spec, validation_fraction=0.1):
    """`(training images, (height, width, channels))` of a `digits` or `npz:` dataset, read without
    TensorFlow (an npz from its arrays' headers; the count less the validation share); None for
    other datasets and for files that cannot be read (loading them reports why)."""
    if spec == "digits":
        count, shape = DIGITS_TRAIN
    elif spec.startswith("npz:"):
        from keras_vit.training.data import npz_array_headers

        try:
            headers = npz_array_headers(spec[len("npz:"):])
        except Exception:  # noqa: BLE001 - any unreadable file: read_npz names the problem later
            return None
        images = headers.get("x_train")
        if images is None or len(images[0]) not in (3, 4):
            return None
        count, shape = images[0][0], tuple(images[0][1:]) + ((1,) if len(images[0]) == 3 else ())
    else:
        return None
    return max(int(count * (1 - validation_fraction)), 1), shape


def configure_intra_op_threads(model_args, batch_size):
    """Sets TensorFlow's intra-op threads for this step size, where TensorFlow has not started
    and the environment does not set them. Returns the number set, or None where nothing was."""
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return None
    threads = choose_intra_op_threads(model_args, batch_size)
    if threads is None:
        return None
    import tensorflow as tf
    from tensorflow.python.eager import context

    if context.context()._context_handle is not None:  # started: the pool can no longer change
        return None
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    return threads
