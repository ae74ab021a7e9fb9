"""The default model follows the data; configurations that cannot fit are refused before training."""

import dataclasses

import numpy as np
import pytest

from keras_vit import ViT
from keras_vit.presets import get_preset
from keras_vit.training.memory import OutOfMemoryError, activations_per_image, check_training_memory, training_step_bytes
from keras_vit.training.config import TrainConfig
from keras_vit.training.model_choice import MAX_GRID, choose_model, choose_recipe, describe_choice

GB = 2**30


def _grid(model):
    height, width = model["image_size"]
    return height // model["patch_size"], width // model["patch_size"]


def test_digits_get_the_digits_preset():
    """8x8 digits (1,295 training images): the tuned `vit_digits` configuration, unchanged."""
    model = choose_model((8, 8, 1), 1295)
    preset = get_preset("vit_digits")
    for key in ("patch_size", "stem_channels", "hidden_dim", "num_layers", "num_heads", "mlp_dim", "dropout_rate"):
        assert model[key] == preset[key], key
    assert model["image_size"] == (8, 8)
    assert choose_recipe(1295, (8, 8)) == {"epochs": 100, "time_budget_minutes": 0.0, "warmup_epochs": 3.0, "batch_size": 64, "mixup": 0.2,
                                           "crop_padding": 0, "optimizer": "adamw", "learning_rate": 2e-3,
                                           "weight_decay": 0.1, "label_smoothing": 0.1, "flip": False}


def test_a_checkpoint_gets_the_papers_fine_tuning_recipe():
    """SGD with momentum, no weight decay or label smoothing, flips, a tenth of warm-up; about
    FINE_TUNE_IMAGES_SEEN images, 2 to 20 epochs."""
    recipe = choose_recipe(10_000, (160, 160), fine_tune=True)
    assert recipe == {"epochs": 8, "time_budget_minutes": 0.0, "warmup_epochs": 0.8, "optimizer": "sgd", "learning_rate": 0.01,
                      "weight_decay": 0.0, "label_smoothing": 0.0, "flip": True, "mixup": 0.0, "crop_padding": 0,
                      "batch_size": 64}
    assert choose_recipe(500, (160, 160), fine_tune=True)["epochs"] == 20
    assert choose_recipe(1_000_000, (224, 224), fine_tune=True)["epochs"] == 2


def test_mnist_gets_a_hybrid_with_a_4x4_grid():
    """28x28 gray images, 54,000 of them: resized to 32, a (32, 64) stem, 8x8-pixel tokens."""
    model = choose_model((28, 28, 1), 54_000)
    assert model["image_size"] == (32, 32) and model["patch_size"] == 8
    assert model["stem_channels"] == (64, 128)
    assert (model["hidden_dim"], model["num_layers"]) == (128, 4)
    recipe = choose_recipe(54_000, model["image_size"])
    assert (recipe["epochs"], recipe["batch_size"], recipe["mixup"], recipe["crop_padding"]) == (50, 128, 0.0, 2)
    assert recipe["time_budget_minutes"] == 28.0 and recipe["learning_rate"] == 2.8e-3


def test_photos_get_16_pixel_patches_and_fit_in_memory():
    """224-pixel photos: the paper's 16x16 patches (a 14x14 grid), no stem, and a batch of 64
    fits in 3 GB, where the old default (2x2-pixel tokens: 12,545 per image) needed terabytes."""
    model = choose_model((224, 224, 3), 3_000)
    assert model["patch_size"] == 16 and _grid(model) == (14, 14) and model["stem_channels"] is None
    assert training_step_bytes(model, 64) < 3 * GB
    old_default = dict(model, patch_size=2)
    assert training_step_bytes(old_default, 64) > 1000 * GB


@pytest.mark.parametrize("size", [8, 12, 16, 28, 32, 40, 48, 60, 64, 96, 100, 128, 224, 250, 256, 300, 384, 512, 600, 1000])
def test_any_image_size_gives_a_buildable_model_with_a_small_grid(size):
    model = choose_model((size, size + size // 4, 3), 20_000)
    rows, cols = _grid(model)
    assert 1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID
    # The patches divide the image, and the stem's stride divides the patch: the ViT builds.
    vit = ViT(num_classes=3, **model)
    assert vit.output_shape == (None, 3)


def test_width_and_epochs_grow_and_shrink_with_the_data():
    widths = [choose_model((32, 32, 3), n)["hidden_dim"] for n in (1_000, 50_000, 500_000, 5_000_000)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert [choose_recipe(n)["epochs"] for n in (500, 60_000, 10_000_000)] == [100, 45, 5]


def test_only_the_middle_tier_has_a_time_budget():
    """10,000-100,000 images train for up to 2.7M images seen within 28 minutes; fewer images run
    their epochs in full (the main job's time), more keep 5 epochs, where a budget would cut one."""
    budgets = {n: choose_recipe(n)["time_budget_minutes"] for n in (1_295, 10_000, 10_001, 45_000, 100_000, 100_001)}
    assert budgets == {1_295: 0.0, 10_000: 0.0, 10_001: 28.0, 45_000: 28.0, 100_000: 28.0, 100_001: 0.0}
    assert [choose_recipe(n)["epochs"] for n in (10_001, 45_000, 100_000)] == [100, 60, 27]


def test_the_automatic_budget_goes_with_the_automatic_epochs():
    """A user's --epochs runs in full; a user's --time-budget wins; several workers get none."""
    config = TrainConfig(dataset="npz:x.npz")
    assert config.resolve(45_000, (32, 32)).time_budget_minutes == 28.0
    assert config.resolve(45_000, (32, 32), allow_time_budget=False).time_budget_minutes == 0.0
    assert dataclasses.replace(config, epochs=80).resolve(45_000, (32, 32)).time_budget_minutes == 0.0
    both = dataclasses.replace(config, epochs=80, time_budget_minutes=10.0).resolve(45_000, (32, 32))
    assert (both.epochs, both.time_budget_minutes) == (80, 10.0)
    assert dataclasses.replace(config, time_budget_minutes=0.0).resolve(45_000, (32, 32)).time_budget_minutes == 0.0


def test_the_choice_line_names_the_budget():
    model = choose_model((32, 32, 3), 45_000)
    line = describe_choice(model, 45_000, (32, 32, 3), choose_recipe(45_000, (32, 32)))
    assert "; up to 60 epochs of batch 128 within 28 minutes (--time-budget) (" in line
    line = describe_choice(model, 1_295, (32, 32, 3), choose_recipe(1_295, (32, 32)))
    assert "; 100 epochs of batch 64" in line


def test_activation_count_matches_a_hand_count():
    """A 1-layer ViT, 4x4 image, 2x2 patches: 5 tokens, hidden 8, MLP 16, 2 heads, no stem."""
    model = dict(image_size=4, patch_size=2, channels=3, hidden_dim=8, mlp_dim=16, num_heads=2, num_layers=1)
    tokens = 5
    block = tokens * (10 * 8 + 2 * 16) + 2 * 2 * tokens**2
    assert activations_per_image(model) == block + 2 * 4 * 4 * 3 + 2 * tokens * 8


def test_a_configuration_too_big_is_refused_with_a_batch_that_fits():
    model = choose_model((224, 224, 3), 3_000)
    available = 4 * GB
    with pytest.raises(OutOfMemoryError, match=r"about [\d.]+ GB for batch 4096 at 197 tokens.*--batch-size (\d+)") as error:
        check_training_memory(model, 4096, available=available)
    suggested = int(str(error.value).split("--batch-size ")[1].split()[0])
    check_training_memory(model, suggested, available=available)  # the advice fits
    with pytest.raises(OutOfMemoryError):
        check_training_memory(model, suggested * 2, available=available)


def test_too_many_tokens_for_any_batch_asks_for_a_larger_patch():
    model = dict(choose_model((224, 224, 3), 3_000), patch_size=2)
    with pytest.raises(OutOfMemoryError, match="12,545 tokens.*larger --patch-size"):
        check_training_memory(model, 64, available=24 * GB)


def test_estimate_is_checked_against_the_machine(monkeypatch):
    import keras_vit.training.memory as memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 1 * GB)
    with pytest.raises(OutOfMemoryError, match="1.0 GB this machine has available"):
        check_training_memory(choose_model((224, 224, 3), 3_000), 256)
    assert np.isfinite(check_training_memory(choose_model((8, 8, 1), 1_000), 64))


def test_command_line_refuses_a_model_that_cannot_fit_in_one_line(tmp_path, capsys):
    """The old default on 224-pixel photos (2x2-pixel tokens) is refused before training."""
    from PIL import Image

    from keras_vit.training.cli import main

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for index in range(5):
            pixels = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{index}.jpg")
    status = main(["train", "--dataset", f"folder:{tmp_path / 'photos'}", "--patch-size", "2",
                   "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "GB for batch 64 at 12,545 tokens per image" in err and "--patch-size" in err


def test_out_of_memory_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    import keras
    import tensorflow as tf

    from keras_vit.training.cli import main

    def fit(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [64,4,12545,12545]")

    monkeypatch.setattr(keras.Model, "fit", fit)
    status = main(["train", "--epochs", "1", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "out of memory during training at batch 64 per device: use --batch-size 32" in err


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: choose_model((0, 32, 3), 100), r"image_shape must be \(height, width, channels\) of positive sizes"),
        (lambda: choose_model((32, 32), 100), r"image_shape must be \(height, width, channels\)"),
        (lambda: choose_model((32, 32, 3), 0), "at least 1 training image, got 0"),
        (lambda: check_training_memory(choose_model((32, 32, 3), 100), 0, available=GB), "batch_size must be at least 1"),
        (lambda: training_step_bytes(dict(image_size=30, patch_size=4), 8), "not divisible by patch"),
    ],
)
def test_bad_input_is_refused_with_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_colour_images_are_flipped_and_gray_ones_not():
    """Mirror images are the same class for photos, another symbol for digits; --no-flip wins."""
    assert choose_recipe(45_000, (32, 32), channels=3)["flip"] is True
    assert choose_recipe(54_000, (32, 32), channels=1)["flip"] is False
    assert choose_recipe(1_295, (8, 8), channels=1)["flip"] is False
    assert choose_recipe(3_000, (160, 160), fine_tune=True, channels=1)["flip"] is True
    config = TrainConfig(dataset="npz:x.npz")
    assert config.resolve(45_000, (32, 32), channels=3).flip is True
    assert dataclasses.replace(config, flip=False).resolve(45_000, (32, 32), channels=3).flip is False
