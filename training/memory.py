"""Will a training configuration fit in memory? An estimate, checked before training starts.

TensorFlow on a CPU allocates until the operating system kills the process, and a
ViT's attention scores grow with the square of its tokens (a 224-pixel image in 2x2
patches is 12,545 tokens: 630 MB of scores per head and layer for one image). So
`keras-vit train` estimates the memory of one training step from the model's
configuration and refuses one that cannot fit, with a setting that would.
"""

import math
import os

from keras_vit.layers.patches import int_pair, patch_grid

# Bytes an activation element costs in training: the float32 forward value kept for the
# backward pass, and a share for its gradient and the framework's temporaries. Calibrated
# against the peak memory of float32 `fit` steps at 224 pixels (`bench/training_memory.py`,
# BENCHMARKS.md "Training memory"): measured 0.58-1.07x this estimate.
BYTES_PER_ACTIVATION = 4 * 1.5
# Share of the available memory a step may plan for: the model, optimizer, input pipeline and
# the runtime need the rest.
USABLE_SHARE = 0.7


class OutOfMemoryError(RuntimeError):
    """A training configuration that does not fit in memory; its message says what would."""


def activations_per_image(model_args):
    """Activation elements of one image's forward pass through a `ViT(**model_args)`.

    Per encoder block and token: LayerNorms, queries/keys/values, attention output and
    projection, residuals (about 10 x hidden_dim) and the MLP's two hidden tensors (2 x mlp_dim);
    per head, the attention scores and their softmax (2 x tokens). The stem keeps its
    convolution, normalization and ReLU outputs.
    """
    height, width = int_pair(model_args.get("image_size", 224), "image_size", "(height, width)")
    channels = int(model_args.get("channels", 3))
    hidden, mlp = int(model_args.get("hidden_dim", 768)), int(model_args.get("mlp_dim", 3072))
    heads, layers = int(model_args.get("num_heads", 12)), int(model_args.get("num_layers", 12))
    tokens = num_tokens(model_args)
    per_block = tokens * (10 * hidden + 2 * mlp) + heads * 2 * tokens * tokens
    stem = 0
    for index, stem_channels in enumerate(model_args.get("stem_channels") or ()):
        stem += 3 * stem_channels * (height // 2 ** (index + 1)) * (width // 2 ** (index + 1))
    return layers * per_block + stem + 2 * height * width * channels + 2 * tokens * hidden


def num_tokens(model_args):
    """Tokens per image of a `ViT(**model_args)`: the patch grid, and the class token."""
    image_size = int_pair(model_args.get("image_size", 224), "image_size", "(height, width)")
    rows, cols = patch_grid(image_size, model_args.get("patch_size", 16))
    return rows * cols + int(bool(model_args.get("use_class_token", True)))


def training_step_bytes(model_args, batch_size):
    """Estimated peak bytes of one training step's activations at `batch_size` images."""
    return int(activations_per_image(model_args) * batch_size * BYTES_PER_ACTIVATION)


def available_memory_bytes():
    """Memory a training run may use: the first GPU's total, else the host's available RAM.

    None where it cannot be read (not Linux, no `nvidia-smi`).
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return _gpu_memory_bytes()
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_memory_bytes():
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        return int(float(out.split()[0]) * 2**20)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _gigabytes(count):
    return f"{count / 2**30:.1f} GB"


def check_training_memory(model_args, batch_size, available=None):
    """Raises `OutOfMemoryError` when a training step would not fit in `available` bytes.

    `batch_size` is the batch of one device. The message gives the estimate and the
    largest batch size (or else a patch size) that would fit. Returns the estimate.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if available is None:
        available = available_memory_bytes()
    needed = training_step_bytes(model_args, batch_size)
    if available is None or needed <= USABLE_SHARE * available:
        return needed
    budget = USABLE_SHARE * available
    per_image = training_step_bytes(model_args, 1)
    fitting_batch = 2 ** int(math.floor(math.log2(budget / per_image))) if per_image <= budget else 0
    tokens = num_tokens(model_args)
    advice = (
        f"use --batch-size {fitting_batch} or less"
        if fitting_batch >= 8
        else f"use a larger --patch-size (fewer than {tokens:,} tokens per image) or --image-size"
    )
    raise OutOfMemoryError(
        f"a training step would need about {_gigabytes(needed)} for batch {batch_size} at {tokens:,} tokens per image, "
        f"more than the {_gigabytes(available)} this machine has available: {advice}"
    )


def out_of_memory_message(batch_size):
    """The one line for an out-of-memory error that the estimate did not foresee."""
    return (
        f"out of memory during training at batch {batch_size} per device: "
        f"use --batch-size {max(batch_size // 2, 1)}, or a larger --patch-size"
    )
