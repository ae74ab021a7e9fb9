"""Folders of image files: listing, a pre-training check of every file, and decoding.

Before training, `training.image_scan` opens each file's header with PIL (no pixel decode)
and reads its last bytes, in threads (processes for large folders), to find the files
TensorFlow's decoder would fail on mid-epoch: non-images, truncated JPEG/PNG/GIF/BMP
files and formats it cannot decode (or decodes wrongly: palette and 1-bit BMPs).
`list_image_folder` lists a folder of class sub-folders, drops those files with one
warning line on stderr naming them, and decides the channel count from every image
(3 if any is in color).

What `tf.io.decode_image` does with the odd files that remain, and how
`keras_vit.images.decode_image` handles each (checked in tests/test_image_folder_faults.py):

    CMYK (and YCCK) JPEG    decoded to RGB by TensorFlow
    16-bit PNG              reduced to 8 bits by TensorFlow (value >> 8)
    RGBA / LA PNG           alpha dropped (as PIL's convert("RGB") does)
    palette PNG / GIF       expanded to RGB by TensorFlow
    gray among RGB          gray repeated to 3 channels
    1 channel wanted        GIF, BMP and CMYK JPEG refuse channels=1: decoded natively,
                            then reduced to their luminance here
"""

import collections
import os
import sys

import numpy as np
import tensorflow as tf

from keras_vit.files import fits_one_line
from keras_vit.images import IMAGE_EXTENSIONS, decode_image_file
from keras_vit.training.image_scan import scan_images

# The environment variable of the limit on classes (training.data.max_classes).
MAX_CLASSES_VARIABLE = "KERAS_VIT_MAX_CLASSES"
# What tf.io.decode_image reads, by content (a PNG named .jpg decodes fine).
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP") + (("WEBP",) if hasattr(tf.io, "decode_webp") else ())
# Files named in a warning line before "and N more".
_NAMED_IN_WARNING = 5


def verify_decodes(paths, channels):
    """Indices of `paths` that `tf.io.decode_image` fails on, by decoding every one (slow, exact).

    tf.data skips the failing files (`ignore_errors`); the indices that come through are the good ones.
    """
    index = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), np.asarray(paths, dtype=object)))
    decoded = index.map(
        lambda i, path: (i, tf.shape(decode_image_file(path, channels, None))[0]),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False,
    ).ignore_errors()
    good = {int(i) for i, _ in decoded.as_numpy_iterator()}
    return [i for i in range(len(paths)) if i not in good]


def _describe(files, root, reasons=None):
    names = []
    for i, path in enumerate(files[:_NAMED_IN_WARNING]):
        name = os.path.relpath(path, root)
        names.append(f"{name} ({reasons[i]})" if reasons else name)
    extra = len(files) - len(names)
    return ", ".join(names) + (f" and {extra:,} more" if extra else "")


def warn(message):
    """One warning line on stderr, in the command line's words."""
    print(f"keras-vit: warning: {message}", file=sys.stderr, flush=True)


def list_image_folder(path, verify=False, max_classes=None):
    """Lists and checks a folder of class sub-folders.

    Returns `(class_names, files, labels, channels, size)`: sorted class names, the image
    paths (object array) and int64 labels of the files that can be decoded, 3 channels if
    any image is in color (else 1), and the most common `(height, width)`. Files TensorFlow
    cannot decode, and images over the pixel limit (`keras_vit.files.max_image_pixels`), are
    left out with one warning line naming them, files without an image extension with
    another; `verify` also decodes every image (slow) to find corrupt data that headers do
    not show. More than `max_classes` class folders, or a folder name that a labels file
    cannot hold (a line break), is a ValueError.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"image folder not found: {path}")
    class_names = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    if not class_names:
        raise ValueError(f"{path} has no class sub-folders; expected one sub-folder of images per class")
    if max_classes is not None and len(class_names) > max_classes:
        raise ValueError(
            f"{path} has {len(class_names):,} class sub-folders, more than the limit of {max_classes:,} classes "
            f"(${MAX_CLASSES_VARIABLE} raises it); expected one sub-folder of images per class"
        )
    for name in class_names:
        if not fits_one_line(name):
            # Class names are written one per line beside every exported model.
            raise ValueError(
                f"class folder {os.path.join(path, name)!r} has a name with a line break (or of spaces only), which "
                "a labels file (one class per line) cannot hold: rename the folder"
            )
    files, labels, ignored = [], [], []
    for label, class_name in enumerate(class_names):
        for root, dirs, names in os.walk(os.path.join(path, class_name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):  # .DS_Store and other hidden files
                    continue
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(root, name))
                    labels.append(label)
                else:
                    ignored.append(os.path.join(root, name))
    if ignored:
        kinds = collections.Counter(os.path.splitext(f)[1].lower() or "no extension" for f in ignored)
        warn(
            f"ignored {len(ignored):,} file{'s' if len(ignored) > 1 else ''} in {path} without an image extension "
            f"({', '.join(f'{k} {n:,}' for k, n in kinds.most_common())}; images are {', '.join(IMAGE_EXTENSIONS)}): "
            f"{_describe(ignored, path)}"
        )
    if not files:
        raise ValueError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")

    checks = scan_images(files, DECODABLE_FORMATS)
    problems = {i: check.problem for i, check in enumerate(checks) if check.problem}
    if verify:
        decodable = [i for i in range(len(files)) if i not in problems]
        for i in verify_decodes([files[i] for i in decodable], 3):
            problems[decodable[i]] = "corrupt image data"
    if problems:
        bad = sorted(problems)
        too_large = any("pixels per image" in problems[i] for i in bad)
        warn(
            f"skipped {len(bad):,} of {len(files):,} image files in {path} that cannot be decoded"
            f"{' or are too large' if too_large else ''}: "
            + _describe([files[i] for i in bad], path, [problems[i] for i in bad])
        )
    keep = np.array([i not in problems for i in range(len(files))], dtype=bool)
    labels = np.array(labels, dtype="int64")
    counts = np.bincount(labels[keep], minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise ValueError(
            f"class folder{'s' if len(empty) > 1 else ''} {', '.join(os.path.join(path, e) for e in empty)} "
            f"hold{'' if len(empty) > 1 else 's'} no {'decodable ' if problems else ''}images "
            f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder (class ids follow the sorted folder names)"
        )
    good = [checks[i] for i in np.flatnonzero(keep)]
    channels = 3 if any(check.color for check in good) else 1
    sizes = collections.Counter(check.size for check in good if check.size)
    size = sizes.most_common(1)[0][0] if sizes else None
    return class_names, np.array(files, dtype=object)[keep], labels[keep], channels, size
