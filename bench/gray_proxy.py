"""A 28x28 grayscale 10-class dataset harder than MNIST, built from CIFAR-10.

    python bench/gray_proxy.py ../shared/data/cifar10_jpeg.npz runs/data/cifar10_gray28.npz
    keras-vit train --dataset npz:runs/data/cifar10_gray28.npz

The default recipe is measured on MNIST-shaped data other than digits: the images of CIFAR-10 in
MNIST's layout (uint8 [N, 28, 28], no channel axis), with CIFAR-10's split and labels. Gray: the
ITU-R BT.601 luma of each pixel (0.299 R + 0.587 G + 0.114 B), the weights of
`tf.image.rgb_to_grayscale`; 28x28: area-averaged from 32x32 (`tf.image.resize` with antialiasing),
so that every source pixel counts. The output is written once, atomically; an existing file is
never replaced.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SIZE = 28


def to_gray28(images, batch_size=5000):
    """uint8 [N, 28, 28] luma of uint8 RGB images [N, H, W, 3], resized with antialiasing."""
    import tensorflow as tf

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images [N, H, W, 3], got an array of shape {images.shape}")
    out = np.empty((len(images), SIZE, SIZE), np.uint8)
    for start in range(0, len(images), batch_size):
        batch = tf.image.rgb_to_grayscale(tf.constant(images[start:start + batch_size], tf.float32))
        batch = tf.image.resize(batch, (SIZE, SIZE), method="area", antialias=True)
        out[start:start + batch_size] = np.clip(np.round(batch.numpy()[..., 0]), 0, 255).astype(np.uint8)
    return out


def build(source, target):
    """Writes the proxy of the npz dataset `source` to `target` (which must not exist)."""
    from keras_vit.training.data import read_npz

    if os.path.exists(target):
        raise FileExistsError(f"{target} exists; this script writes a new file only (remove it or choose another path)")
    x_train, y_train, x_test, y_test = read_npz(source)
    arrays = {"x_train": to_gray28(x_train), "y_train": np.asarray(y_train, np.int64),
              "x_test": to_gray28(x_test), "y_test": np.asarray(y_test, np.int64)}
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".npz.partial")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a dataset from other users
        # link() fails if the target appeared meanwhile, where rename() would replace it.
        os.link(temporary, target)
    finally:
        os.unlink(temporary)
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="an npz dataset of RGB images (CIFAR-10: ../shared/data/cifar10_jpeg.npz)")
    parser.add_argument("target", help="the npz file to write (refused if it exists)")
    args = parser.parse_args(argv)
    try:
        arrays = build(args.source, args.target)
    except (OSError, ValueError) as error:
        sys.exit(f"gray_proxy: {error}")
    print(f"wrote {args.target}: {len(arrays['x_train']):,} + {len(arrays['x_test']):,} images of {SIZE}x{SIZE}, "
          f"{len(np.unique(arrays['y_train']))} classes")


if __name__ == "__main__":
    main()
