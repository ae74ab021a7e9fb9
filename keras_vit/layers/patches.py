"""Split images into flattened patches, and put them back together."""

import numbers

import keras
from keras import ops


def int_pair(value, name, pair_name):
    """Returns `(a, b)` from a positive int or a pair of positive ints, validating it.

    Python and NumPy integers are accepted; floats are rejected rather than silently
    truncated by `int()`, and strings rather than unpacked digit by digit.
    """

    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(value):
        pair = (value, value)
    elif isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        pair = None
    else:
        pair = tuple(value)
        if len(pair) != 2 or not all(is_int(v) for v in pair):
            pair = None
    if pair is None:
        raise TypeError(f"{name} must be an int or a pair of ints {pair_name}, got {value!r}")
    pair = tuple(int(v) for v in pair)
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{name} must be positive, got {pair}")
    return pair


def normalize_patch_size(patch_size):
    """Returns `(patch_height, patch_width)` from an int or a pair, validating it."""
    return int_pair(patch_size, "patch_size", "(patch_height, patch_width)")


def patch_grid(image_size, patch_size):
    """Returns the patch grid `(rows, cols)` of an image, or raises if it does not divide.

    Args:
        image_size: `(height, width)` of the image.
        patch_size: int or `(patch_height, patch_width)`.
    """
    patch_height, patch_width = normalize_patch_size(patch_size)
    height, width = image_size
    if height % patch_height:
        raise ValueError(
            f"Image height {height} is not divisible by patch height {patch_height}; "
            f"use an image size that is a multiple of the patch size."
        )
    if width % patch_width:
        raise ValueError(
            f"Image width {width} is not divisible by patch width {patch_width}; "
            f"use an image size that is a multiple of the patch size."
        )
    return height // patch_height, width // patch_width


@keras.saving.register_keras_serializable(package="keras_vit")
class Patches(keras.layers.Layer):
    """Splits images into non-overlapping patches, each flattened to a vector.

    Patches are ordered row by row over the image; inside a patch the values are
    ordered row by row, channels last, which is the layout of the official ViT's
    patch-embedding convolution kernel `[pH, pW, C, D]` flattened to `[pH*pW*C, D]`.

    Shapes: `[B, H, W, C]` -> `[B, (H/pH)*(W/pW), pH*pW*C]`.

    Example:
    >>> images = keras.random.uniform((2, 224, 224, 3))
    >>> tuple(Patches(16)(images).shape)
    (2, 196, 768)
    """

    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = normalize_patch_size(patch_size)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"Patches expects images of shape [batch, height, width, channels], "
                f"got shape {tuple(input_shape)}"
            )
        height, width = input_shape[1], input_shape[2]
        if height is not None and width is not None:
            patch_grid((height, width), self.patch_size)
        self.built = True

    def call(self, images):
        patch_height, patch_width = self.patch_size
        rows, cols, channels = self._static_grid(images.shape)
        # Two 4-D steps instead of one 6-D transpose: TFLite and its delegates
        # handle 4-D transposes natively, and the result is the same permutation.
        x = ops.reshape(images, (-1, patch_height, cols, patch_width * channels))
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, rows * cols, patch_height * patch_width * channels))

    def _static_grid(self, shape):
        """`(rows, cols, channels)` of images of `shape`, which must be static."""
        if len(shape) != 4 or any(size is None for size in shape[1:]):
            raise ValueError(
                f"Patches needs images [batch, height, width, channels] with static height, "
                f"width and channels, got shape {tuple(shape)}"
            )
        rows, cols = patch_grid((shape[1], shape[2]), self.patch_size)
        return rows, cols, shape[3]

    def compute_output_shape(self, input_shape):
        patch_height, patch_width = self.patch_size
        rows, cols, channels = self._static_grid(input_shape)
        return (input_shape[0], rows * cols, patch_height * patch_width * channels)

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size})
        return config


def unpatchify(patches, image_size, patch_size, channels=None):
    """Inverse of `Patches`: `[B, N, pH*pW*C]` -> `[B, H, W, C]`.

    Args:
        patches: tensor or array of flattened patches.
        image_size: `(height, width)` of the original image.
        patch_size: int or `(patch_height, patch_width)`.
        channels: number of channels; inferred from the patch length when omitted.
    """
    patch_height, patch_width = normalize_patch_size(patch_size)
    rows, cols = patch_grid(image_size, (patch_height, patch_width))
    patches = ops.convert_to_tensor(patches)
    if len(patches.shape) != 3:
        raise ValueError(f"unpatchify expects [batch, num_patches, patch_dim], got {patches.shape}")
    num_patches, patch_dim = patches.shape[1], patches.shape[2]
    if channels is None:
        channels = patch_dim // (patch_height * patch_width)
    if num_patches != rows * cols or patch_dim != patch_height * patch_width * channels:
        raise ValueError(
            f"Patches of shape {tuple(patches.shape)} do not fit image size {tuple(image_size)} "
            f"with patch size {(patch_height, patch_width)} and {channels} channels; expected "
            f"[batch, {rows * cols}, {patch_height * patch_width * channels}]"
        )
    x = ops.reshape(patches, (-1, cols, patch_height, patch_width * channels))
    x = ops.transpose(x, (0, 2, 1, 3))
    return ops.reshape(x, (-1, rows * patch_height, cols * patch_width, channels))
