"""The default model and recipe of `keras-vit train`, chosen from the dataset.

A ViT's cost grows with the square of its token count, and how much it can learn
grows with its training images. So when no preset is given (`preset="auto"`):

- the image size decides the token grid: at most about 16x16 tokens. Small images
  (under 64 pixels) get a convolutional stem and a 4x4 grid, the configuration
  every small-image recipe here converged on (digits, MNIST, CIFAR-10); larger ones
  get the paper's linear patch embedding with patches of 8, 16 or 32 pixels
  (224-pixel photos: 16, a 14x14 grid);
- the number of training images decides the width, depth, batch size and the
  augmentation (`SIZE_TIERS`: MixUp for few images, random shifts for more), and how many
  epochs make about `IMAGES_SEEN` training images.

Everything chosen here is a default: any option set by the user wins.
"""

import math

from keras_vit.layers.patches import int_pair, patch_grid

# Training images seen by an automatic number of epochs, clipped to [MIN_EPOCHS, MAX_EPOCHS]:
# 5 epochs of MNIST's 54,000 images reach 99%; the 1,295 digits get the 100 epochs that took
# their 5-seed mean from 97.94% (60 epochs) to 98.00% (BENCHMARKS.md, "The default model").
IMAGES_SEEN = 300_000
MIN_EPOCHS, MAX_EPOCHS = 5, 100

# Up to `max_images` training images (None: any number): encoder size, batch size, MixUp.
# The first tier is `vit_digits` (98.3% mean on digits); the second the MNIST recipe's encoder.
SIZE_TIERS = (
    {"max_images": 10_000, "hidden_dim": 64, "num_layers": 4, "num_heads": 4, "mlp_dim": 128,
     "batch_size": 64, "mixup": 0.2},
    {"max_images": 100_000, "hidden_dim": 128, "num_layers": 4, "num_heads": 4, "mlp_dim": 256,
     "batch_size": 64, "mixup": 0.0},
    {"max_images": 1_000_000, "hidden_dim": 192, "num_layers": 12, "num_heads": 3, "mlp_dim": 768,
     "batch_size": 128, "mixup": 0.0},  # ViT-Ti
    {"max_images": None, "hidden_dim": 384, "num_layers": 12, "num_heads": 6, "mlp_dim": 1536,
     "batch_size": 128, "mixup": 0.0},  # ViT-S
)

# Images smaller than this get a convolutional stem and a 4x4 token grid.
SMALL_IMAGE = 64
SMALL_GRID = 4
# Larger images: the smallest of these patch sizes that keeps the grid at most MAX_GRID per side.
PATCH_SIZES = (8, 16, 32)
MAX_GRID = 16


def _round_up(value, multiple):
    return int(math.ceil(value / multiple) * multiple)


def choose_image_layout(height, width, channels):
    """Image size, patch size and stem for images of `height x width x channels`.

    Returns a dict of `ViT` arguments: `image_size` (the size images are resized to:
    the nearest that the patches divide), `patch_size` and `stem_channels`.
    """
    side = max(height, width)
    if side < SMALL_IMAGE:
        # A 4x4 grid of tokens, each `patch` pixels wide; the stem halves the image until one
        # token covers 1x1 (8-pixel images) or 2x2 stem pixels: the stem supplies the locality
        # that a ViT would otherwise have to learn from more data than small images come with.
        # 32 channels, doubling: on MNIST in 5 epochs, a (16, 32) stem at batch 128 reached 98.92%,
        # (32, 64) at batch 64 99.06% (BENCHMARKS.md, "The default model").
        size = 8 if side <= 8 else _round_up(side, 16)
        patch = size // SMALL_GRID
        stem_layers = max(int(math.log2(patch)) - 1, 1)
        stem = tuple(32 * 2**index for index in range(stem_layers))
        return {"image_size": (size, size), "patch_size": patch, "stem_channels": stem}
    patch = next((p for p in PATCH_SIZES if math.ceil(side / p) <= MAX_GRID), PATCH_SIZES[-1])
    # Larger than MAX_GRID patches of the largest size: resize down, keeping the aspect ratio.
    scale = min(1.0, MAX_GRID * patch / side)
    size = tuple(max(int(round(dim * scale / patch)), 1) * patch for dim in (height, width))
    return {"image_size": size, "patch_size": patch, "stem_channels": None}


def size_tier(num_train):
    """The `SIZE_TIERS` entry for `num_train` training images."""
    for tier in SIZE_TIERS:
        if tier["max_images"] is None or num_train <= tier["max_images"]:
            return tier
    return SIZE_TIERS[-1]


def choose_model(image_shape, num_train):
    """ViT arguments (without `num_classes`) for a dataset of `num_train` images of `image_shape`.

    `image_shape` is `(height, width, channels)`.
    """
    if len(image_shape) != 3 or min(int(d) for d in image_shape) < 1:
        raise ValueError(f"image_shape must be (height, width, channels) of positive sizes, got {tuple(image_shape)}")
    if int(num_train) < 1:
        raise ValueError(f"a model is chosen for at least 1 training image, got {num_train}")
    height, width, channels = (int(d) for d in image_shape)
    tier = size_tier(num_train)
    model = choose_image_layout(height, width, channels)
    model.update({key: tier[key] for key in ("hidden_dim", "num_layers", "num_heads", "mlp_dim")})
    model.update({"channels": channels, "dropout_rate": 0.0})
    return model


def choose_epochs(num_train):
    """Epochs that show the model about `IMAGES_SEEN` images, within [MIN_EPOCHS, MAX_EPOCHS]."""
    return int(min(max(IMAGES_SEEN // max(int(num_train), 1), MIN_EPOCHS), MAX_EPOCHS))


def choose_recipe(num_train, image_size=None):
    """Training defaults for `num_train` images of `image_size` (height, width): epochs,
    warm-up, batch size, MixUp and random-crop padding."""
    tier = size_tier(num_train)
    epochs = choose_epochs(num_train)
    side = min(image_size) if image_size else 0
    return {
        "epochs": epochs,
        # A tenth of the run, at most the 3 epochs of the digits recipe.
        "warmup_epochs": min(3.0, 0.1 * epochs),
        "batch_size": tier["batch_size"],
        "mixup": tier["mixup"],
        # Shifts of up to 1/16 of the image where MixUp is off: on MNIST in 5 epochs the
        # training accuracy ran 0.7 points above validation without them; 2-pixel shifts
        # took the test accuracy from 99.06% / 98.93% to 99.10% / 99.16% (seeds 0 / 1).
        "crop_padding": 0 if tier["mixup"] else side // 16,
    }


def describe_choice(model, num_train, image_shape, recipe):
    """One line: the model chosen for the data, and why."""
    height, width, channels = image_shape
    image_size = int_pair(model["image_size"], "image_size", "(height, width)")
    patch_size = int_pair(model["patch_size"], "patch_size", "(patch_height, patch_width)")
    grid_h, grid_w = patch_grid(image_size, patch_size)
    size = "x".join(map(str, image_size))
    if model.get("stem_channels"):
        stem = f"a {len(model['stem_channels'])}-convolution stem {tuple(model['stem_channels'])} (small images), "
    else:
        stem = ""
    resized = "" if image_size == (height, width) else f" resized to {size}"
    return (
        f"model: auto for {num_train:,} training images of {height}x{width}x{channels}{resized}: "
        f"{stem}{grid_h}x{grid_w} tokens of {patch_size[0]}x{patch_size[1]} pixels, "
        f"hidden {model['hidden_dim']} x {model['num_layers']} layers; "
        f"{recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''} of batch {recipe['batch_size']} "
        "(--preset, --patch-size and the other options choose otherwise)"
    )
