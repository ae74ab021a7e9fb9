"""The image contract: what a keras-vit model takes, and how image files become that.

Every model, exported file and input pipeline in keras-vit takes raw pixel values:
float32 (or uint8) `[batch, height, width, channels]` in 0..255, at the model's size and
channel count; the model scales them itself (`ViT(input_scaling=...)`). Training,
evaluation, export calibration, the SavedModel's `serving_bytes` and `keras-vit predict`
all decode and resize with the functions here, so a file gives the same pixels everywhere.
JPEGs are decoded with TensorFlow's default, libjpeg's fast integer DCT, as TFDS and the
official ViT input pipelines decode them; PIL's accurate DCT differs by a few levels per pixel.

    >>> import numpy as np
    >>> rgb = np.full((1, 4, 4, 3), 200, dtype="uint8")
    >>> prepare_images(rgb, (2, 2), 1).shape
    TensorShape([1, 2, 2, 1])
"""

import os
import re

import numpy as np
import tensorflow as tf

# Files that `decode_image` reads (by content: a PNG named .jpg decodes fine); WebP where
# this TensorFlow decodes it.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif") + ((".webp",) if hasattr(tf.io, "decode_webp") else ())


def model_image_shape(model):
    """`(height, width, channels)` of a Keras model's `[batch, H, W, C]` image input."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"the model must take [batch, H, W, C] images of a static size, got {shape}")
    return shape


def decode_image(data, channels, image_size=None):
    """Encoded image bytes (PNG, JPEG, BMP, GIF) to uint8 `[H, W, channels]`.

    `channels` 0 keeps the file's; 1 from a color file takes its luminance, 3 from a gray
    file repeats it; an alpha channel is dropped. `image_size` `(height, width)`: bilinear
    resize, rounded back to uint8 (`resize_uint8`).
    """
    if channels == 1:
        # GIF, BMP and CMYK JPEG refuse channels=1: decode what the file holds, then reduce.
        image = tf.io.decode_image(data, channels=0, expand_animations=False)
        image = tf.cond(
            tf.shape(image)[-1] >= 3,
            lambda: _luminance(image[..., :3]),
            lambda: image[..., :1],  # gray, or gray + alpha
        )
        image.set_shape([None, None, 1])
    else:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    if image_size is not None:
        image = resize_uint8(image, image_size)
    return image


def decode_image_file(path, channels, image_size=None):
    """Reads one image file into uint8 `[H, W, C]`, resized to `image_size` if given (see `decode_image`)."""
    return decode_image(tf.io.read_file(path), channels, image_size)


def _luminance(rgb):
    gray = tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32))
    return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), tf.uint8)


def resize_uint8(image, image_size):
    """Bilinear resize of uint8 `[H, W, C]` (or `[B, H, W, C]`), rounded; images of that size pass unchanged."""
    image_size = tuple(int(s) for s in image_size)

    def resize():
        resized = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    static = tuple(image.shape[-3:-1])
    if None not in static:
        return image if static == image_size else resize()
    same = tf.reduce_all(tf.equal(tf.shape(image)[-3:-1], image_size))
    result = tf.cond(same, lambda: image, resize)
    result.set_shape(image.shape[:-3].concatenate([*image_size, image.shape[-1]]))
    return result


def prepare_images(images, image_size, channels):
    """Raw images to float32 0..255 of `image_size` and `channels`, as the model takes them.

    Works on `[H, W, C]` or `[B, H, W, C]`; 1 -> 3 channels repeats the gray level,
    3 -> 1 takes the luminance. A resize (bilinear) or luminance is rounded to whole
    pixel values, so that the result is what the input pipeline's uint8 cache holds.
    """
    images = tf.cast(images, tf.float32)
    have = images.shape[-1]
    fractional = False  # whether a step can leave fractions of a pixel value
    if have != channels:
        if have == 1 and channels == 3:
            images = tf.image.grayscale_to_rgb(images)
        elif have == 3 and channels == 1:
            images, fractional = tf.image.rgb_to_grayscale(images), True
        else:
            raise ValueError(f"cannot convert images with {have} channels to {channels} channels")
    if tuple(images.shape[-3:-1]) != tuple(image_size):
        images, fractional = tf.image.resize(images, image_size, method="bilinear"), True
    if fractional:
        images = tf.clip_by_value(tf.round(images), 0.0, 255.0)
    return images


def list_image_files(paths):
    """Image files named by `paths` (files, or folders searched recursively, sorted), in order.

    Raises FileNotFoundError for a path that does not exist and ValueError when a folder
    holds no image files (`IMAGE_EXTENSIONS`).
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
            if not found:
                raise ValueError(f"{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"image not found: {path}")
    return files


class UnreadableImageError(ValueError):
    """A file that is not an image TensorFlow can decode (corrupt, truncated, another format);
    `reason` is the decoder's own words."""

    def __init__(self, path, reason):
        super().__init__(f"{path} is not a readable PNG, JPEG, BMP or GIF image ({reason})")
        self.path, self.reason = path, reason


class ImageTooLargeError(UnreadableImageError):
    """An image whose header declares more pixels than the limit (`keras_vit.files.max_image_pixels`):
    refused before decoding, which would allocate them all."""

    def __init__(self, path, reason):
        ValueError.__init__(self, f"{path} is {reason}")
        self.path, self.reason = path, reason


def check_image_pixels(path, max_pixels=None):
    """Raises ImageTooLargeError when the header of the image file `path` declares more pixels than
    `max_pixels` (default: $KERAS_VIT_MAX_IMAGE_PIXELS, else PIL's limit of 89,478,485)."""
    from keras_vit.files import image_header_pixels, too_many_pixels

    header = image_header_pixels(path)
    reason = too_many_pixels(*header, max_pixels=max_pixels) if header else None
    if reason:
        raise ImageTooLargeError(path, reason)


def load_image_file(path, image_size, channels, resize=False, resize_hint="resize it first, or ask for resize=True",
                    max_pixels=None):
    """Reads one image file into uint8 `[H, W, channels]` at `image_size` `(height, width)`.

    An image of another size is a ValueError that names it and ends with `resize_hint`,
    unless `resize`: then it is resized as the input pipeline does. Raises
    FileNotFoundError for a missing file, UnreadableImageError (a ValueError) for one
    that cannot be decoded and ImageTooLargeError (one of those) for one whose header
    declares more than `max_pixels` (see `check_image_pixels`), before decoding it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    check_image_pixels(path, max_pixels)
    try:
        image = decode_image_file(path, channels)
    except tf.errors.OpError as error:
        raise UnreadableImageError(path, _decode_error(error)) from None
    if tuple(image.shape[:2]) != tuple(image_size):
        if not resize:
            raise ValueError(
                f"{path} is {image.shape[1]}x{image.shape[0]} pixels but the model takes "
                f"{image_size[1]}x{image_size[0]}; {resize_hint}"
            )
        image = resize_uint8(image, image_size)
    return image.numpy()


def _decode_error(error):
    """TensorFlow's decode error without its op decorations: `Unknown image file format. ...`."""
    message = (error.message or "").strip().splitlines()[0] if error.message else ""
    message = re.sub(r"^\{\{[^}]*\}\}\s*", "", message)  # {{function_node __wrapped__DecodeImage_...}}
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message)  # [Op:DecodeImage] name:
    return message or "cannot be decoded"


def load_image_files(paths, image_size, channels, resize=False, resize_hint="resize it first, or ask for resize=True",
                     max_pixels=None):
    """Reads image files into uint8 `[N, H, W, channels]` at `image_size` (see `load_image_file`)."""
    images = [load_image_file(path, image_size, channels, resize, resize_hint, max_pixels) for path in paths]
    if not images:
        raise ValueError("no images given")
    return np.stack(images)
