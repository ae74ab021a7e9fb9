"""The default model and recipe of `keras-vit train`, chosen from the dataset.

A ViT's cost grows with the square of its token count, and how much it can learn
grows with its training images. So when no preset is given (`preset="auto"`):

- the image size decides the token grid: at most about 16x16 tokens. Small images
  (under 64 pixels) get a convolutional stem and a 4x4 grid, the configuration
  every small-image recipe here converged on (digits, MNIST, CIFAR-10); larger ones
  get the paper's linear patch embedding with patches of 8, 16 or 32 pixels
  (224-pixel photos: 16, a 14x14 grid);
- the number of training images decides the width, depth, batch size and the
  augmentation (`SIZE_TIERS`: MixUp for few images, random shifts for more), and the
  training length: the epochs that show the model a number of images, within a time
  budget for the 10,000 to 100,000 images whose runs are long on a CPU.

Everything chosen here is a default: any option set by the user wins.
"""

import math
import os

from keras_vit.layers.patches import int_pair, patch_grid

# Up to `max_images` training images (None: any number): encoder size, batch size, MixUp, and the
# training length when --epochs is not set: epochs that show the model about `images_seen` images
# (within [MIN_EPOCHS, MAX_EPOCHS]), ended early by `time_budget_minutes` of training (None: none),
# with the learning-rate schedule spread over whichever comes first.
# - The first tier is `vit_digits` (98.3% mean on digits); its 300,000 images are the 100 epochs
#   that took the 1,295 digits' 5-seed mean from 97.94% (60 epochs) to 98.00%.
# - The second is the MNIST recipe's encoder. 300,000 images (5 epochs) stopped MNIST at 99.12%
#   and CIFAR-10 at 66.7% with validation still climbing 4-5 points an epoch; on two CPU cores 28
#   minutes run 30-35 epochs of either, and a GPU runs the 50-60 epochs of 2.7M images in minutes
#   (BENCHMARKS.md, "The default model follows the data").
# - `stem_width`: the first convolution's channels of the small-image stem (doubling after). On
#   CIFAR-10 in 28 minutes at batch 64 (64, 128) reached 78.21% in 29 epochs where (32, 64) stopped at
#   76.98-77.06% in 32-36 (train accuracy 82-91%); the 1,295 digits keep the tuned (32,).
# - `batch_size` and `learning_rate`: on two CPU cores a batch of 128 trains the second tier's
#   model on about 1.3x as many images per second as 64 (a step of it is bound by dispatch, not
#   arithmetic; 256: no faster), and 28 minutes ran 59 CIFAR-10 epochs instead of 29, at the
#   learning rate scaled by sqrt(2): 80.19% against 78.21%; MNIST 99.61%.
#   The digits keep 64 (batch 128: 5-seed mean 97.89% against 98.00%); the larger tiers' rate
#   is the digits' (not measured at their scale).
# - Larger sets keep 5 epochs without a budget: an epoch of 100,000 images or more on a CPU is
#   already hours of a ViT-Ti, which a budget would cut to a fraction of one epoch.
SIZE_TIERS = (
    {"max_images": 10_000, "hidden_dim": 64, "num_layers": 4, "num_heads": 4, "mlp_dim": 128,
     "batch_size": 64, "learning_rate": 2e-3, "mixup": 0.2, "images_seen": 300_000, "time_budget_minutes": None,
     "stem_width": 32},
    {"max_images": 100_000, "hidden_dim": 128, "num_layers": 4, "num_heads": 4, "mlp_dim": 256,
     "batch_size": 128, "learning_rate": 2.8e-3, "mixup": 0.0, "images_seen": 2_700_000, "time_budget_minutes": 28.0,
     "stem_width": 64},
    {"max_images": 1_000_000, "hidden_dim": 192, "num_layers": 12, "num_heads": 3, "mlp_dim": 768,
     "batch_size": 128, "learning_rate": 2e-3, "mixup": 0.0, "images_seen": 300_000, "time_budget_minutes": None,
     "stem_width": 64},  # ViT-Ti
    {"max_images": None, "hidden_dim": 384, "num_layers": 12, "num_heads": 6, "mlp_dim": 1536,
     "batch_size": 128, "learning_rate": 2e-3, "mixup": 0.0, "images_seen": 300_000, "time_budget_minutes": None,
     "stem_width": 64},  # ViT-S
)
MIN_EPOCHS, MAX_EPOCHS = 5, 100

# Images smaller than this get a convolutional stem and a 4x4 token grid.
SMALL_IMAGE = 64
SMALL_GRID = 4
# Larger images: the smallest of these patch sizes that keeps the grid at most MAX_GRID per side.
PATCH_SIZES = (8, 16, 32)
MAX_GRID = 16


def _round_up(value, multiple):
    return int(math.ceil(value / multiple) * multiple)


def choose_image_layout(height, width, channels, stem_width=32):
    """Image size, patch size and stem for images of `height x width x channels`; a small
    image's stem starts at `stem_width` channels and doubles.

    Returns a dict of `ViT` arguments: `image_size` (the size images are resized to:
    the nearest that the patches divide), `patch_size` and `stem_channels`.
    """
    side = max(height, width)
    if side < SMALL_IMAGE:
        # A 4x4 grid of tokens, each `patch` pixels wide; the stem halves the image until one
        # token covers 1x1 (8-pixel images) or 2x2 stem pixels: the stem supplies the locality
        # that a ViT would otherwise have to learn from more data than small images come with.
        # Channels doubling from `stem_width` (the size tier's): on MNIST in 5 epochs, a (16, 32)
        # stem at batch 128 reached 98.92%, (32, 64) at batch 64 99.06%; on CIFAR-10 in 28 minutes
        # (64, 128) beat (32, 64) by 1.2 points (BENCHMARKS.md, "The default model follows the data").
        size = 8 if side <= 8 else _round_up(side, 16)
        patch = size // SMALL_GRID
        stem_layers = max(int(math.log2(patch)) - 1, 1)
        stem = tuple(stem_width * 2**index for index in range(stem_layers))
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
    model = choose_image_layout(height, width, channels, tier["stem_width"])
    model.update({key: tier[key] for key in ("hidden_dim", "num_layers", "num_heads", "mlp_dim")})
    model.update({"channels": channels, "dropout_rate": 0.0})
    return model


def choose_epochs(num_train):
    """Epochs that show the model about its tier's `images_seen` images, within [MIN_EPOCHS, MAX_EPOCHS]."""
    images_seen = size_tier(num_train)["images_seen"]
    return int(min(max(images_seen // max(int(num_train), 1), MIN_EPOCHS), MAX_EPOCHS))


# The recipe of a run from scratch (the digits job's, kept for every size; the batch and the
# learning rate are the size tier's): on small data a ViT over-fits, hence weight decay 0.1 and
# label smoothing.
SCRATCH_RECIPE = {"optimizer": "adamw", "weight_decay": 0.1, "label_smoothing": 0.1}
# Fine-tuning a checkpoint: the ViT paper's recipe (Appendix B.1.1; vit_jax/configs/common.py):
# SGD with momentum 0.9, no weight decay, clipping at norm 1 (the default clipnorm), warm-up then
# cosine, no MixUp or label smoothing, flips. 0.01 is the paper's VTAB rate and the AugReg B/16
# ImageNet fine-tune's (configs/finetune_vit_b16.yaml says why it is kept at batch 64).
FINE_TUNE_RECIPE = {"optimizer": "sgd", "learning_rate": 0.01, "weight_decay": 0.0, "label_smoothing": 0.0,
                    "flip": True, "mixup": 0.0, "crop_padding": 0, "batch_size": 64}
# Images a fine-tuning run sees: a third of the paper's 500 steps of 512 for its small datasets
# (Pets, Flowers), within [2, 20] epochs, so that a CPU run of 10,000 photos takes minutes, not hours.
FINE_TUNE_IMAGES_SEEN = 85_000
FINE_TUNE_EPOCHS = (2, 20)


def choose_recipe(num_train, image_size=None, fine_tune=False, channels=None):
    """Training defaults for `num_train` images of `image_size` (height, width) and `channels`:
    epochs, time budget (minutes, 0: none), warm-up, batch size, MixUp, random-crop padding,
    optimizer, learning rate, weight decay, label smoothing and flips; `fine_tune`: the paper's
    fine-tuning recipe for a checkpoint."""
    if fine_tune:
        low, high = FINE_TUNE_EPOCHS
        epochs = int(min(max(FINE_TUNE_IMAGES_SEEN // max(int(num_train), 1), low), high))
        return {"epochs": epochs, "time_budget_minutes": 0.0, "warmup_epochs": 0.1 * epochs, **FINE_TUNE_RECIPE}
    tier = size_tier(num_train)
    epochs = choose_epochs(num_train)
    side = min(image_size) if image_size else 0
    return {
        "epochs": epochs,
        "time_budget_minutes": tier["time_budget_minutes"] or 0.0,
        # A tenth of the run, at most the 3 epochs of the digits recipe.
        "warmup_epochs": min(3.0, 0.1 * epochs),
        "batch_size": tier["batch_size"],
        "learning_rate": tier["learning_rate"],
        "mixup": tier["mixup"],
        # Shifts where MixUp is off: of up to 1/16 of a gray image (on MNIST in 5 epochs the
        # training accuracy ran 0.7 points above validation without them; 2-pixel shifts took
        # the test accuracy from 99.06% / 98.93% to 99.10% / 99.16%, seeds 0 / 1), 1/8 of a
        # colour one (CIFAR-10: 4 pixels with the (64, 128) stem, 78.21%).
        "crop_padding": 0 if tier["mixup"] else side // (8 if channels == 3 else 16),
        **SCRATCH_RECIPE,
        # Mirror images for colour images, the photos of objects and scenes whose mirror image is
        # the same class; not for gray ones, where characters and digits are the common case and a
        # mirrored digit is another symbol (digits scored with their mirror images: 94.44%
        # against 98.61%, BENCHMARKS.md, "Digits").
        "flip": channels == 3,
    }


# Pre-trained weights the automatic choice fine-tunes, in order of preference, when their file
# is in the Keras cache (`keras_vit.pretrained`): on a CPU the cheapest first, on a GPU the
# most accurate that fine-tunes at batch 64 on one 16-24 GB GPU.
PRETRAINED_PREFERENCE = {
    "cpu": ("vit_ti16.augreg_in21k_ft_in1k", "vit_ti16.augreg_in21k", "vit_s16.augreg_in21k_ft_in1k",
            "vit_s16.augreg_in21k", "vit_b32.augreg_in21k_ft_in1k", "vit_b16.augreg_in21k_ft_in1k"),
    "gpu": ("vit_b16.augreg_in21k_ft_in1k", "vit_s16.augreg_in21k_ft_in1k", "vit_b16.augreg_in21k",
            "vit_s16.augreg_in21k", "vit_ti16.augreg_in21k_ft_in1k", "vit_l16.augreg_in21k_ft_in1k"),
}
# The weights a message suggests downloading.
SUGGESTED_PRETRAINED = {"cpu": "vit_ti16.augreg_in21k_ft_in1k", "gpu": "vit_b16.augreg_in21k_ft_in1k"}
# The resolution a checkpoint is fine-tuned at when the user sets none: the checkpoints' own 224 on
# a GPU; on a CPU the size of BENCHMARKS.md's fine-tuning throughput table ("Fine-tuning
# throughput") that keeps most of the accuracy at a fraction of the cost.
PRETRAINED_IMAGE_SIZE = {"cpu": 160, "gpu": 224}


def cached_pretrained(device, cache_dir=None):
    """The first of `PRETRAINED_PREFERENCE[device]` whose file is in the Keras cache, or None."""
    from keras_vit.pretrained import cached_path

    return next((name for name in PRETRAINED_PREFERENCE[device] if os.path.isfile(cached_path(name, cache_dir))), None)


def wants_pretrained(image_shape):
    """Whether the automatic choice fine-tunes pre-trained weights for images of `image_shape`:
    photos of SMALL_IMAGE pixels and more (smaller ones train the hybrid ViT from scratch)."""
    return max(int(image_shape[0]), int(image_shape[1])) >= SMALL_IMAGE


def describe_fine_tune(name, path, num_train, image_shape, image_size, recipe, why):
    """One line: the pre-trained weights fine-tuned, and why."""
    height, width, channels = image_shape
    return (
        f"model: {name} fine-tuned ({why}) for {num_train:,} training images of {height}x{width}x{channels} "
        f"resized to {image_size[0]}x{image_size[1]}: {recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''} "
        f"of batch {recipe['batch_size']}, {recipe['optimizer'].upper()} at {recipe['learning_rate']:g}, new head "
        f"(--pretrained none trains from scratch{'' if name == path else f'; weights at {path}'})"
    )


def how_to_get_pretrained(device, cache_dir=None):
    """The words a from-scratch photo run adds: which weights to fetch, and how."""
    from keras_vit.pretrained import cached_path, get_weights

    name = SUGGESTED_PRETRAINED[device]
    entry = get_weights(name)
    return (
        f"from scratch: no pre-trained weights in the cache; --pretrained {name} downloads {entry['title']} "
        f"({entry['parameters'] / 1e6:.1f}M parameters, {entry['imagenet_top1']:.2f}% ImageNet top-1) and fine-tunes "
        f"it, far better on photos (offline: put the file at {cached_path(name, cache_dir)})"
    )


def _length(recipe):
    """"5 epochs of batch 64", or "up to 60 epochs of batch 64 within 28 minutes" under a time budget."""
    epochs = f"{recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''} of batch {recipe['batch_size']}"
    budget = recipe.get("time_budget_minutes")
    return f"up to {epochs} within {budget:g} minutes (--time-budget)" if budget else epochs


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
        f"{_length(recipe)} "
        "(--preset, --patch-size and the other options choose otherwise)"
    )
