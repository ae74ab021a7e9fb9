"""Explanations: do the maps point at what decides the class, and do the pictures get written?

Budget: about 1 minute on 2 CPU cores (one tiny ViT trained once, ~15 s).

The synthetic task: 16x16 gray images cut into a 4x4 grid of 4x4 patches, every
patch independently bright or dark (plus noise); the class is the brightness of
one known patch (row 1, column 2). The other patches look just like it, so a model
that is accurate must pick that patch out by position.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit import ViT
from keras_vit.attention import attention_maps
from keras_vit.explain import (
    METHODS,
    Explainer,
    SaliencyExplainer,
    layer_attention_maps,
    layer_head_maps,
    parse_methods,
    render_layer_heads,
    rollout_maps,
    spatial_model,
    upsample,
)
from keras_vit.explain.overlay import PANEL_INCHES
from keras_vit.training.artifacts import load_keras_model
from keras_vit.training.cli import main

IMAGE, PATCH = 16, 4
GRID = IMAGE // PATCH
DECISIVE = (1, 2)  # (row, col) of the patch that decides the class
AREA_SHARE = 1 / GRID**2
# A map "points at" the decisive patch when the patch holds at least this many
# times its area share of the map's mass (1/16 -> at least 19% of the mass).
MASS_FACTOR = 3.0
# ... for at least this share of the test images.
MOST = 0.8


def make_task(count, rng):
    bright = rng.integers(0, 2, (count, GRID, GRID))
    labels = bright[:, DECISIVE[0], DECISIVE[1]].copy()
    levels = np.where(bright == 1, 200.0, 55.0)
    images = np.kron(levels, np.ones((PATCH, PATCH)))[..., None] + rng.normal(0, 20, (count, IMAGE, IMAGE, 1))
    return np.clip(images, 0, 255).astype("float32"), labels.astype("int64")


def decisive_mask():
    mask = np.zeros((IMAGE, IMAGE), dtype="float64")
    row, col = DECISIVE
    mask[row * PATCH : (row + 1) * PATCH, col * PATCH : (col + 1) * PATCH] = 1.0
    return mask


def mass_ratio(maps):
    """Share of each map's mass inside the decisive patch, over the patch's area share: [B]."""
    maps = np.asarray(maps, dtype="float64")
    inside = (maps * decisive_mask()).sum(axis=(1, 2))
    return inside / maps.sum(axis=(1, 2)) / AREA_SHARE


def tiny_vit(seed=0):
    keras.utils.set_random_seed(seed)
    return ViT(
        image_size=IMAGE, channels=1, patch_size=PATCH, num_layers=2, num_heads=2,
        hidden_dim=32, mlp_dim=64, num_classes=2,
    )


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    return make_task(2000, rng), make_task(64, rng)


@pytest.fixture(scope="module")
def trained(task):
    (x_train, y_train), _ = task
    model = tiny_vit()
    model.compile(
        keras.optimizers.Adam(2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("explain") / "model.keras")
    trained.save(path)
    return path


def write_png(path, image):
    from PIL import Image

    Image.fromarray(np.asarray(image, dtype="uint8")[..., 0], mode="L").save(path)


# --- the maps mean something -------------------------------------------------------------


def test_tiny_vit_learns_the_task(trained, task):
    _, (x_test, y_test) = task
    accuracy = (trained.predict(x_test, verbose=0).argmax(-1) == y_test).mean()
    assert accuracy >= 0.95, f"chance is 0.5, got {accuracy}"


def test_rollout_points_at_the_decisive_patch(trained, task):
    _, (x_test, _) = task
    maps, matrix = rollout_maps(trained, x_test)
    ratio = mass_ratio(maps)
    assert (ratio >= MASS_FACTOR).mean() >= MOST, np.round(ratio, 2)
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-5)


def test_saliency_points_at_the_decisive_patch(trained, task):
    _, (x_test, y_test) = task
    # Through Explainer: 64 images go in chunks of 16, which must stay in order.
    explanation = Explainer(trained).explain(x_test, ["saliency", "rollout"], class_ids=y_test)
    ratio = mass_ratio(explanation.maps["saliency"])
    assert (ratio >= MASS_FACTOR).mean() >= MOST, np.round(ratio, 2)
    np.testing.assert_allclose(explanation.maps["rollout"], rollout_maps(trained, x_test)[0], atol=1e-5)


def test_untrained_rollout_does_not_point_at_the_patch(task):
    # The control: the same measure on a model that never saw the task stays
    # near the area share, so the trained model's ratio is learned, not built in.
    _, (x_test, _) = task
    maps, _ = rollout_maps(tiny_vit(seed=1), x_test)
    assert np.median(mass_ratio(maps)) < 1.5


# --- the maps are computed right -----------------------------------------------------------


def reference_rollout(attention, fusion):
    """Abnar & Zuidema 2020 from the equations, one image at a time."""
    attention = np.asarray(attention, dtype="float64")  # [L, B, h, T, T]
    num_layers, batch, _, tokens, _ = attention.shape
    maps = []
    for b in range(batch):
        joint = np.eye(tokens)
        for layer in range(num_layers):
            fused = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](attention[layer, b], axis=0)
            mixed = 0.5 * fused + 0.5 * np.eye(tokens)
            mixed = mixed / mixed.sum(axis=1, keepdims=True)
            joint = mixed @ joint
        maps.append(joint[0, 1:].reshape(GRID, GRID))
    return np.stack(maps)


def nearest_up(grid_maps):
    return np.stack([np.kron(m, np.ones((PATCH, PATCH))) for m in grid_maps])


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_matches_reference(trained, task, fusion):
    _, (x_test, _) = task
    images = x_test[:5]
    attention = attention_maps(trained, images)
    maps, matrix = rollout_maps(trained, images, head_fusion=fusion, interpolation="nearest", attention=attention)
    np.testing.assert_allclose(maps, nearest_up(reference_rollout(attention, fusion)), atol=1e-5)
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-5)
    assert maps.shape == (5, IMAGE, IMAGE) and np.isfinite(maps).all()


def test_layer_and_head_maps_are_the_class_token_rows(trained, task):
    _, (x_test, _) = task
    images = x_test[:3]
    attention = np.asarray(attention_maps(trained, images))  # [L, B, h, T, T]
    heads = layer_head_maps(trained, images, interpolation="nearest")
    assert heads.shape == (3, 2, 2, IMAGE, IMAGE)
    for layer in range(2):
        for head in range(2):
            expected = nearest_up(attention[layer, :, head, 0, 1:].reshape(-1, GRID, GRID))
            np.testing.assert_allclose(heads[:, layer, head], expected, atol=1e-6)
    last_max = layer_attention_maps(trained, images, head_fusion="max", interpolation="nearest", attention=attention)
    np.testing.assert_allclose(last_max, heads[:, -1].max(axis=1), atol=1e-6)
    one_head = layer_attention_maps(trained, images, layer=0, head=1, interpolation="nearest", attention=attention)
    np.testing.assert_allclose(one_head, heads[:, 0, 1], atol=1e-6)
    with pytest.raises(ValueError, match="layer must be in \\[-2, 2\\)"):
        layer_attention_maps(trained, images, layer=2, attention=attention)


def test_bilinear_upsampling_keeps_range_and_nearest_keeps_mass():
    grid = np.random.default_rng(0).uniform(size=(2, GRID, GRID)).astype("float32")
    bilinear = upsample(grid, (IMAGE, IMAGE))
    assert bilinear.min() >= grid.min() - 1e-6 and bilinear.max() <= grid.max() + 1e-6
    np.testing.assert_allclose(upsample(grid, (IMAGE, IMAGE), "nearest"), nearest_up(grid))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        upsample(grid, (IMAGE, IMAGE), "cubic")


def manual_logits_and_tokens(model, images, block, class_ids):
    """The ViT run layer by layer, watching the tokens entering `block`: (scores, tokens, grads)."""
    with tf.GradientTape() as tape:
        x = model.get_layer("patch_encoder")(model.get_layer("patches")(model.get_layer("rescaling")(images)))
        for layer in model.blocks[:block]:
            x = layer(x)
        tape.watch(x)
        tokens = x
        for layer in model.blocks[block:]:
            x = layer(x)
        logits = model.get_layer("head")(model.get_layer("pooling")(model.get_layer("encoder_norm")(x)))
        scores = tf.gather(logits, class_ids, axis=1, batch_dims=1)
    return logits, tokens, tape.gradient(scores, tokens)


def normalize(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / (high - low + keras.config.epsilon())


def test_spatial_model_keeps_the_logits(trained, task):
    _, (x_test, _) = task
    for block in (0, 1, 2):
        np.testing.assert_allclose(
            spatial_model(trained, block).predict(x_test[:8], verbose=0),
            trained.predict(x_test[:8], verbose=0),
            atol=1e-5,
        )
    with pytest.raises(ValueError, match="block must be an int in \\[0, 2\\]"):
        spatial_model(trained, 3)


def test_gradcam_and_saliency_match_reference(trained, task):
    _, (x_test, y_test) = task
    images, class_ids = tf.constant(x_test[:4]), y_test[:4]
    explainer = SaliencyExplainer(trained)
    assert explainer.block == 1  # class-token pooling: the last block's input tokens

    _, tokens, grads = manual_logits_and_tokens(trained, images, 1, class_ids)
    grid = tokens.numpy()[:, 1:].reshape(-1, GRID, GRID, 32)
    weights = grads.numpy()[:, 1:].reshape(-1, GRID, GRID, 32).mean(axis=(1, 2), keepdims=True)
    cam = normalize(np.maximum((grid * weights).sum(-1), 0.0))
    np.testing.assert_allclose(explainer.gradcam(x_test[:4], class_ids), upsample(cam, (IMAGE, IMAGE)), atol=1e-4)

    with tf.GradientTape() as tape:
        tape.watch(images)
        scores = tf.gather(trained(images), class_ids, axis=1, batch_dims=1)
    saliency = normalize(np.abs(tape.gradient(scores, images).numpy()).max(-1))
    np.testing.assert_allclose(explainer.saliency(x_test[:4], class_ids), saliency, atol=1e-4)


def test_all_methods_on_a_saved_and_loaded_model(saved, trained, task):
    _, (x_test, _) = task
    model = load_keras_model(saved)
    explanation = Explainer(model, smooth_samples=4).explain(x_test[:3], "all")
    assert list(explanation.maps) == list(METHODS)
    for method, maps in explanation.maps.items():
        assert maps.shape == (3, IMAGE, IMAGE), method
        assert maps.dtype == np.float32 and np.isfinite(maps).all(), method
    np.testing.assert_allclose(explanation.probabilities.sum(-1), 1.0, atol=1e-5)
    assert explanation.titles["attention"] == "attention, block 1 (mean)"
    assert explanation.titles["gradcam"] == "Grad-CAM, block 1 input"
    np.testing.assert_array_equal(explanation.class_ids, explanation.probabilities.argmax(-1))
    original, _ = rollout_maps(trained, x_test[:3])
    np.testing.assert_allclose(explanation.maps["rollout"], original, atol=1e-5)
    # The tf-keras-vis methods work on a clone: the loaded model itself is untouched.
    np.testing.assert_allclose(model.predict(x_test[:3], verbose=0), trained.predict(x_test[:3], verbose=0), atol=1e-5)


def test_smoothgrad_is_seeded_and_leaves_the_callers_generator_alone(trained, task):
    _, (x_test, _) = task
    explainer = Explainer(trained, smooth_samples=3)
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = explainer.explain(x_test[:2], "smoothgrad").maps["smoothgrad"]
    assert np.random.rand() == expected_next  # the caller's draws are what they would have been
    second = explainer.explain(x_test[:2], "smoothgrad").maps["smoothgrad"]
    np.testing.assert_array_equal(first, second)  # the same noise each time


def test_explainer_rejects_bad_input(trained):
    with pytest.raises(ValueError, match=r"images must be \[batch, 16, 16, 1\] for this model, got shape \(2, 8, 8, 1\)"):
        Explainer(trained).explain(np.zeros((2, 8, 8, 1)), "rollout")
    with pytest.raises(ValueError, match=r"class_ids must be one class id or one per image \(3\), got \[0, 1\]"):
        Explainer(trained).explain(np.zeros((3, 16, 16, 1)), "saliency", class_ids=[0, 1])
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 2\)"):
        Explainer(trained).explain(np.zeros((1, 16, 16, 1)), "saliency", class_ids=5)
    with pytest.raises(TypeError, match="need a keras_vit.ViT model, got Sequential"):
        Explainer(keras.Sequential([keras.layers.Dense(2)]))


def test_parse_methods():
    assert parse_methods("all") == list(METHODS)
    assert parse_methods("gradcam++, rollout,gradcam++") == ["gradcam++", "rollout"]
    with pytest.raises(ValueError, match="unknown explanation method 'lime'; choose from rollout, attention"):
        parse_methods("rollout,lime")


# --- pictures and the command line -----------------------------------------------------------


def png_size(path):
    with open(path, "rb") as file:
        header = file.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def panel_pixels(count):
    return round(PANEL_INCHES * 100 * count)


def test_cli_writes_png_of_expected_size(saved, task, tmp_path, capsys):
    from PIL import Image

    _, (x_test, _) = task
    files = []
    for index in range(2):
        files.append(str(tmp_path / f"image{index}.png"))
        write_png(files[-1], x_test[index])
    output = str(tmp_path / "out" / "explained.png")
    code = main(["explain", saved, *files, "--method", "rollout,saliency", "--output", output])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"wrote {output} (" in out and "2 images x 2 methods" in out
    expected = (panel_pixels(3), round((PANEL_INCHES * 2 + 0.1) * 100))
    assert png_size(output) == expected
    with Image.open(output) as image:
        image.verify()
    assert [name for name in os.listdir(tmp_path / "out")] == ["explained.png"]  # no temporary left


def test_cli_explains_dataset_images(saved, task, tmp_path, capsys):
    (x_train, y_train), (x_test, y_test) = task
    npz = str(tmp_path / "task.npz")
    np.savez(npz, x_train=x_train[:50].astype("uint8"), y_train=y_train[:50],
             x_test=x_test[:10].astype("uint8"), y_test=y_test[:10])
    output = str(tmp_path / "dataset.png")
    code = main(["explain", saved, "--dataset", f"npz:{npz}", "--count", "3", "--method", "gradcam", "--output", output])
    assert code == 0, capsys.readouterr().err
    assert png_size(output) == (panel_pixels(2), round((PANEL_INCHES * 3 + 0.1) * 100))
    assert capsys.readouterr().out.count("image ") == 3


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_errors_are_one_line(saved, task, tmp_path, capsys):
    _, (x_test, _) = task
    big = str(tmp_path / "big.png")
    write_png(big, np.zeros((20, 24, 1)))
    output = str(tmp_path / "never.png")

    assert main(["explain", saved, big, "--method", "rollout", "--output", output]) == 2
    err = one_line_error(capsys)
    assert "big.png is 24x20 pixels but the model takes 16x16; pass --resize" in err

    missing = str(tmp_path / "missing.png")
    assert main(["explain", saved, missing, "--output", output]) == 2
    assert f"image not found: {missing}" in one_line_error(capsys)

    assert main(["explain", saved, big, "--method", "lime", "--output", output]) == 2
    assert "unknown explanation method 'lime'" in one_line_error(capsys)

    assert main(["explain", saved, "--output", output]) == 2
    assert "nothing to explain" in one_line_error(capsys)
    assert not os.path.exists(output)

    # --resize accepts the same file.
    assert main(["explain", saved, big, "--method", "attention", "--resize", "--output", output]) == 0
    assert png_size(output) == (panel_pixels(2), round((PANEL_INCHES + 0.1) * 100))


def test_layer_heads_picture(trained, task, tmp_path):
    _, (x_test, _) = task
    path = str(tmp_path / "heads.png")
    render_layer_heads(path, x_test[0], layer_head_maps(trained, x_test[:1])[0])
    assert png_size(path) == (panel_pixels(2), panel_pixels(2))
