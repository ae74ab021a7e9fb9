"""Fine-tuning as the ViT paper does (configs/finetune_vit_b16.yaml), end to end on a tiny checkpoint.

An official-layout checkpoint trained at 160x160 (a 10x10 grid) is fine-tuned at 224x224 on a
folder of JPEG photos with `keras-vit train`, then exported to a float32 .tflite.
"""

import csv
import json
import os

import numpy as np

from keras_vit.checkpoint import POS_EMBEDDING, model_params
from keras_vit.layers.patch_encoder import resample_position_embedding
from test_checkpoint import random_checkpoint, write_npz


def softmax(logits):
    """Class probabilities of `[N, K]` logits, from the definition."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO_ROOT, "configs", "finetune_vit_b16.yaml")
CLASSES = ("red", "green", "blue")


def write_photo_folder(root, per_class=14, size=224, seed=0):
    """`root/CLASS/NNN.jpg`: noisy photos tinted by their class, with a random bright square."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for i in range(per_class):
            image = rng.normal(90, 30, size=(size, size, 3))
            image[..., label] += 80  # the class: which channel dominates
            top, left = rng.integers(0, size - 64, size=2)
            image[top:top + 64, left:left + 64] += 60  # content that moves about, as in photos
            Image.fromarray(np.clip(image, 0, 255).astype("uint8")).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def _history(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_fine_tune_a_checkpoint_at_224_then_export_to_tflite(tmp_path):
    """~15 s on 2 cores: three short epochs of a hidden-32, 2-layer ViT at 224, then a .tflite."""
    import keras

    from keras_vit.export.runtime import TFLiteRunner
    from keras_vit.training.artifacts import load_keras_model
    from keras_vit.training.cli import main

    params = random_checkpoint(image_size=160, patch_size=16, hidden_dim=32, num_layers=2, num_heads=2,
                               mlp_dim=64, num_classes=5)  # a 5-class "upstream" head, replaced
    checkpoint = write_npz(tmp_path / "ckpt.npz", params)
    photos = write_photo_folder(tmp_path / "photos")
    output = tmp_path / "run"
    status = main([
        "train", "--config", RECIPE,
        "--dataset", f"folder:{photos}", "--init-from", checkpoint, "--output", str(output),
        # Small: 42 photos (30 to train on, 3 to validate, 9 to test), 4 steps of 8 an epoch, at the
        # recipe's learning rate; its warm-up (2 epochs) would take most of the 3 epochs.
        "--epochs", "3", "--batch-size", "8", "--warmup-epochs", "0.2",
        # float32 whatever the CPU (auto may pick bfloat16): the same numbers on every machine.
        "--precision", "float32",
    ])
    assert status == 0

    with open(output / "config.json") as file:
        record = json.load(file)
    assert (record["optimizer"], record["momentum"], record["weight_decay"]) == ("sgd", 0.9, 0.0)
    assert record["model"]["image_size"] == 224 and record["class_names"] == sorted(CLASSES)
    history = _history(output / "history.csv")
    assert len(history) == 3
    losses = [float(row["loss"]) for row in history]
    assert losses[-1] < losses[0] * 0.8, losses  # 1.05 -> 0.52 when written

    model = load_keras_model(str(output))
    assert model.image_size == (224, 224) and model.patch_grid == (14, 14)
    assert (model.hidden_dim, model.num_layers, model.num_classes) == (32, 2, 3)
    assert model.input_scaling == "symmetric"  # the checkpoint's [-1, 1] inputs
    tuned = model_params(model)
    # The encoder is the checkpoint's, moved a little by 12 clipped SGD steps.
    for name in ("Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel",
                 "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel", "embedding/kernel"):
        change = np.abs(tuned[name] - params[name]).max()
        assert change < 0.02 * np.abs(params[name]).max(), (name, change)  # 0.0004-0.0025 when written
    # The 10x10 position grid resampled to 14x14 (bilinear), then fine-tuned a little.
    positions = tuned[POS_EMBEDDING]
    assert positions.shape == (1, 1 + 14 * 14, 32)
    resampled = resample_position_embedding(params[POS_EMBEDDING], (10, 10), (14, 14), True, "bilinear")
    assert np.abs(positions - resampled).max() < 0.01 * np.abs(resampled).max()  # 0.0007 when written
    # A new 3-class head, which started at zero (the checkpoint's has 5 classes) and has learned.
    assert tuned["head/kernel"].shape == (32, 3) and np.abs(tuned["head/kernel"]).max() > 0

    tflite = tmp_path / "model.tflite"
    assert main(["export", str(output), "--format", "tflite", "--mode", "float32", "--output", str(tflite)]) == 0
    images = np.stack([
        np.asarray(keras.utils.load_img(photos / name / "000.jpg"), dtype="float32") for name in CLASSES
    ])
    assert images.shape == (3, 224, 224, 3)
    expected = model.predict(images, verbose=0)
    assert np.ptp(expected, axis=1).max() > 1e-3  # real logits, not a flat (untrained) head
    # The file outputs class probabilities (MediaPipe-ready) ...
    probabilities = TFLiteRunner(tflite.read_bytes()).predict(images)
    np.testing.assert_allclose(probabilities, softmax(expected), atol=1e-5)
    # ... or, with --logits, the logits themselves.
    assert main(["export", str(output), "--mode", "float32", "--logits", "--output", str(tflite)]) == 0
    logits = TFLiteRunner(tflite.read_bytes()).predict(images)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_representation_size_0_drops_the_checkpoints_pre_logits(tmp_path):
    """ImageNet-21k files carry a tanh pre-logits layer; the paper drops it to fine-tune."""
    from keras_vit.training.config import TrainConfig
    from keras_vit.training.fit import build_model

    params = random_checkpoint(image_size=32, patch_size=8, representation_size=16, num_classes=5)
    checkpoint = write_npz(tmp_path / "ckpt.npz", params)
    for option, has_pre_logits in (({}, True), ({"representation_size": 0}, False)):
        config = TrainConfig(init_from=checkpoint, model=option)
        model = build_model(config, {"num_classes": 3, "image_size": 32})
        names = [layer.name for layer in model.layers]
        assert ("pre_logits" in names) == has_pre_logits, names
        # The encoder is the checkpoint's either way.
        np.testing.assert_array_equal(model_params(model)["embedding/kernel"], params["embedding/kernel"])
