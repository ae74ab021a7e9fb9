"""Official ViT `.npz` checkpoints: loading, parity with independent implementations,
saving, position-embedding resampling, bad files and fine-tuning from the command line.

No checkpoint can be downloaded here, so the tests write checkpoints with the official
names and shapes (google-research/vision_transformer, `vit_jax/models_vit.py`) filled
with random values. Budget: about a minute on 2 CPU cores.
"""

import importlib.abc
import importlib.machinery
import os
import sys
from unittest import mock

import numpy as np
import pytest
from scipy.special import erf

import keras_vit
from keras_vit.checkpoint import (
    POS_EMBEDDING,
    checkpoint_config,
    load_checkpoint,
    model_params,
    read_checkpoint,
    save_checkpoint,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = dict(image_size=32, patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64)


def random_checkpoint(
    image_size=32,
    patch_size=8,
    channels=3,
    hidden_dim=32,
    num_layers=2,
    num_heads=2,
    mlp_dim=64,
    num_classes=5,
    representation_size=None,
    class_token=True,
    seed=0,
):
    """Official-layout parameters with random values of a realistic scale."""
    rng = np.random.default_rng(seed)
    head_dim = hidden_dim // num_heads
    grid = image_size // patch_size

    def normal(*shape, std=None):
        fan_in = shape[0] if len(shape) > 1 else 1
        std = fan_in**-0.5 if std is None else std
        return (rng.standard_normal(shape) * std).astype("float32")

    p = {
        "embedding/kernel": normal(patch_size, patch_size, channels, hidden_dim, std=0.05),
        "embedding/bias": normal(hidden_dim, std=0.1),
        POS_EMBEDDING: normal(1, grid * grid + int(class_token), hidden_dim, std=0.5),
        "Transformer/encoder_norm/scale": 1 + normal(hidden_dim, std=0.1),
        "Transformer/encoder_norm/bias": normal(hidden_dim, std=0.1),
    }
    if class_token:
        p["cls"] = normal(1, 1, hidden_dim, std=0.5)
    for i in range(num_layers):
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            p[b + f"{ln}/scale"] = 1 + normal(hidden_dim, std=0.1)
            p[b + f"{ln}/bias"] = normal(hidden_dim, std=0.1)
        for part in ("query", "key", "value"):
            p[a + f"{part}/kernel"] = normal(hidden_dim, num_heads, head_dim)
            p[a + f"{part}/bias"] = normal(num_heads, head_dim, std=0.1)
        p[a + "out/kernel"] = normal(num_heads, head_dim, hidden_dim, std=hidden_dim**-0.5)
        p[a + "out/bias"] = normal(hidden_dim, std=0.1)
        p[b + "MlpBlock_3/Dense_0/kernel"] = normal(hidden_dim, mlp_dim)
        p[b + "MlpBlock_3/Dense_0/bias"] = normal(mlp_dim, std=0.1)
        p[b + "MlpBlock_3/Dense_1/kernel"] = normal(mlp_dim, hidden_dim)
        p[b + "MlpBlock_3/Dense_1/bias"] = normal(hidden_dim, std=0.1)
    width = hidden_dim
    if representation_size:
        p["pre_logits/kernel"] = normal(hidden_dim, representation_size)
        p["pre_logits/bias"] = normal(representation_size, std=0.1)
        width = representation_size
    if num_classes:
        p["head/kernel"] = normal(width, num_classes)
        p["head/bias"] = normal(num_classes, std=0.1)
    return p


def write_npz(path, params):
    np.savez(path, **params)
    return str(path)


def images(n=2, size=32, channels=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, channels)).astype("float32")


# --- NumPy reference written from the Flax model's equations (vit_jax/models_vit.py) ---


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _gelu(x, approximate):
    if approximate:  # jax.nn.gelu's default, which flax.linen.gelu is
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def flax_reference(params, pixels, approximate_gelu=False):
    """Logits of the official model for pixels already scaled to [-1, 1], in float64."""
    p = {k: v.astype("float64") for k, v in params.items()}
    x = pixels.astype("float64")
    kernel = p["embedding/kernel"]
    ph, pw, c, d = kernel.shape
    n, h, w, _ = x.shape
    # nn.Conv with kernel = strides = patch size, VALID padding.
    x = x.reshape(n, h // ph, ph, w // pw, pw, c)
    x = np.einsum("nrhcwk,hwkd->nrcd", x, kernel) + p["embedding/bias"]
    x = x.reshape(n, -1, d)
    if "cls" in p:
        x = np.concatenate([np.tile(p["cls"], (n, 1, 1)), x], axis=1)
    x = x + p[POS_EMBEDDING]
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in p:
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        y = _layer_norm(x, p[b + "LayerNorm_0/scale"], p[b + "LayerNorm_0/bias"])
        q, k, v = (
            np.einsum("ntd,dhk->nthk", y, p[a + f"{s}/kernel"]) + p[a + f"{s}/bias"]
            for s in ("query", "key", "value")
        )
        logits = np.einsum("nqhk,nthk->nhqt", q / np.sqrt(q.shape[-1]), k)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        y = np.einsum("nhqt,nthk->nqhk", weights, v)
        x = x + np.einsum("nqhk,hkd->nqd", y, p[a + "out/kernel"]) + p[a + "out/bias"]
        y = _layer_norm(x, p[b + "LayerNorm_2/scale"], p[b + "LayerNorm_2/bias"])
        y = y @ p[b + "MlpBlock_3/Dense_0/kernel"] + p[b + "MlpBlock_3/Dense_0/bias"]
        y = _gelu(y, approximate_gelu)
        x = x + y @ p[b + "MlpBlock_3/Dense_1/kernel"] + p[b + "MlpBlock_3/Dense_1/bias"]
        i += 1
    x = _layer_norm(x, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"])
    x = x[:, 0] if "cls" in p else x.mean(axis=1)
    if "pre_logits/kernel" in p:
        x = np.tanh(x @ p["pre_logits/kernel"] + p["pre_logits/bias"])
    return x @ p["head/kernel"] + p["head/bias"]


# --- Loading ---


def test_config_inferred_from_shapes(tmp_path):
    path = write_npz(tmp_path / "ckpt.npz", random_checkpoint(representation_size=24, num_classes=7))
    model = load_checkpoint(path)
    assert model.image_size == (32, 32)
    assert model.patch_size == (8, 8)
    assert (model.hidden_dim, model.num_layers, model.num_heads, model.mlp_dim) == (32, 2, 2, 64)
    assert (model.representation_size, model.num_classes) == (24, 7)
    assert model.pooling == "token" and model.use_class_token
    assert model.input_scaling == "symmetric"
    gap = checkpoint_config(random_checkpoint(class_token=False, image_size=48, patch_size=16))
    assert gap["pooling"] == "gap" and not gap["use_class_token"]
    assert gap["image_size"] == (48, 48) and gap["patch_size"] == (16, 16)


@pytest.mark.parametrize(
    "options",
    [{}, {"representation_size": 24}, {"class_token": False, "num_classes": 3}],
    ids=["token", "pre_logits", "gap"],
)
def test_logits_match_numpy_flax_reference(tmp_path, options):
    params = random_checkpoint(**options)
    path = write_npz(tmp_path / "ckpt.npz", params)
    model = keras_vit.ViT.from_checkpoint(path)
    x = images()
    expected = flax_reference(params, x / 127.5 - 1.0)
    got = model.predict(x, verbose=0)
    assert np.abs(expected).max() > 0.5  # the comparison is not between near-zeros
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_tanh_gelu_of_flax_is_within_a_small_distance(tmp_path):
    # The Flax model uses jax.nn.gelu's tanh approximation; keras_vit (like timm and
    # keras-hub) uses the exact GELU. The gap is small but not zero: pin its size.
    params = random_checkpoint()
    model = load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))
    x = images(4)
    approximate = flax_reference(params, x / 127.5 - 1.0, approximate_gelu=True)
    gap = np.abs(model.predict(x, verbose=0) - approximate).max()
    assert 0 < gap < 5e-3


def _import_timm():
    """Imports timm, whose PyPI build imports torchvision at module level.

    PyPI's torchvision is a CUDA build that cannot load beside the CPU build of torch
    used here; timm's ViT never calls it (the import brings FrozenBatchNorm2d and data
    transforms), so where the real torchvision does not import, a placeholder stands
    in for it while timm imports.
    """
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

        class _Placeholder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                if name == "torchvision" or name.startswith("torchvision."):
                    return importlib.machinery.ModuleSpec(name, self, is_package=True)
                return None

            def create_module(self, spec):
                module = mock.MagicMock(name=spec.name)
                module.__path__, module.__spec__ = [], spec
                return module

            def exec_module(self, module):
                pass

        finder = _Placeholder()
        sys.meta_path.insert(0, finder)
        try:
            timm = pytest.importorskip("timm", reason="timm is not installed (pip install --no-deps timm)")
        finally:
            sys.meta_path.remove(finder)
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
    else:
        timm = pytest.importorskip("timm", reason="timm is not installed")
    from timm.models import vision_transformer

    return vision_transformer


@pytest.mark.parametrize(
    "options, image_size",
    [({}, 32), ({"class_token": False, "num_classes": 3}, 32), ({}, 48)],
    ids=["token", "gap", "resized-to-48"],
)
def test_logits_match_timm(tmp_path, options, image_size):
    """timm's VisionTransformer with its own `.npz` loader gives the same logits."""
    vision_transformer = _import_timm()
    import torch

    params = random_checkpoint(**options)
    path = write_npz(tmp_path / "ckpt.npz", params)
    class_token = "cls" in params
    reference = vision_transformer.VisionTransformer(
        img_size=image_size,
        patch_size=8,
        num_classes=params["head/bias"].shape[0],
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        class_token=class_token,
        global_pool="token" if class_token else "avg",
        fc_norm=False,  # the official "gap" models normalize the tokens, then average
    ).eval()
    vision_transformer._load_weights(reference, path)  # resamples positions bilinearly
    x = images(size=image_size)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x / 127.5 - 1.0).permute(0, 3, 1, 2).float()).numpy()
    model = load_checkpoint(path, image_size=image_size)
    got = model.predict(x, verbose=0)
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_features_match_keras_hub_backbone(tmp_path):
    """keras-hub's ViTBackbone with the checkpoint transplanted gives the same tokens."""
    keras_hub = pytest.importorskip("keras_hub")
    params = random_checkpoint()
    path = write_npz(tmp_path / "ckpt.npz", params)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    # keras-hub keeps the Flax layouts: a Conv2D patch kernel and per-head EinsumDense kernels.
    embedding = backbone.get_layer("vit_patching_and_embedding")
    embedding.patch_embedding.kernel.assign(params["embedding/kernel"])
    embedding.patch_embedding.bias.assign(params["embedding/bias"])
    embedding.class_token.assign(params["cls"])
    embedding.position_embedding.embeddings.assign(params[POS_EMBEDDING][0])
    encoder = backbone.get_layer("vit_encoder")
    for i, block in enumerate(encoder.encoder_layers):
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        block.layer_norm_1.gamma.assign(params[b + "LayerNorm_0/scale"])
        block.layer_norm_1.beta.assign(params[b + "LayerNorm_0/bias"])
        for part, dense in [
            ("query", block.mha._query_dense),
            ("key", block.mha._key_dense),
            ("value", block.mha._value_dense),
            ("out", block.mha._output_dense),
        ]:
            dense.kernel.assign(params[a + f"{part}/kernel"])
            dense.bias.assign(params[a + f"{part}/bias"])
        block.layer_norm_2.gamma.assign(params[b + "LayerNorm_2/scale"])
        block.layer_norm_2.beta.assign(params[b + "LayerNorm_2/bias"])
        for j, dense in enumerate((block.mlp.dense_1, block.mlp.dense_2)):
            dense.kernel.assign(params[b + f"MlpBlock_3/Dense_{j}/kernel"])
            dense.bias.assign(params[b + f"MlpBlock_3/Dense_{j}/bias"])
    encoder.layer_norm.gamma.assign(params["Transformer/encoder_norm/scale"])
    encoder.layer_norm.beta.assign(params["Transformer/encoder_norm/bias"])

    x = images()
    expected = backbone.predict(x / 127.5 - 1.0, verbose=0)  # [B, T, D], normalized
    model = load_checkpoint(path, include_top=False)
    tokens = model.get_layer("encoder_norm")(model.tokens(x)).numpy()
    np.testing.assert_allclose(tokens, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected[:, 0], atol=1e-4, rtol=0)


def test_non_square_grid_needs_the_image_size(tmp_path):
    params = random_checkpoint()
    params[POS_EMBEDDING] = params[POS_EMBEDDING][:, :9]  # class token + a 2x4 grid
    path = write_npz(tmp_path / "wide.npz", params)
    with pytest.raises(ValueError, match=r"Cannot infer the image size.*\(1, 9, 32\) is not a square grid"):
        load_checkpoint(path)
    model = load_checkpoint(path, image_size=(16, 32))
    x = np.random.default_rng(2).integers(0, 256, size=(2, 16, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), flax_reference(params, x / 127.5 - 1.0), atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="Cannot resample the position embedding of shape"):
        load_checkpoint(path, image_size=32)


# --- Adapting: new head, new image size ---


def test_new_num_classes_gets_a_zero_head_and_keeps_the_encoder(tmp_path):
    params = random_checkpoint(num_classes=5)
    path = write_npz(tmp_path / "ckpt.npz", params)
    model = load_checkpoint(path, num_classes=10)
    assert model.output_shape == (None, 10)
    assert np.all(model.get_layer("head").kernel.numpy() == 0)
    loaded = model_params(model)
    for name, value in params.items():
        if not name.startswith("head/"):
            np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_representation_size_none_drops_pre_logits(tmp_path):
    path = write_npz(tmp_path / "ckpt.npz", random_checkpoint(representation_size=24))
    model = load_checkpoint(path, representation_size=None)
    assert model.representation_size is None
    assert "pre_logits" not in [layer.name for layer in model.layers]
    assert np.all(model.get_layer("head").kernel.numpy() == 0)


def test_resampled_positions_follow_the_image_size(tmp_path):
    params = random_checkpoint()
    model = load_checkpoint(write_npz(tmp_path / "ckpt.npz", params), image_size=64)
    assert model.patch_grid == (8, 8)
    positions = model.get_layer("patch_encoder").position_embedding.numpy()
    assert positions.shape == (1, 65, 32)
    np.testing.assert_array_equal(positions[0, 0], params[POS_EMBEDDING][0, 0])  # class kept
    assert model.predict(images(size=64), verbose=0).shape == (2, 5)


def test_position_resampling_14_to_24_and_back_is_near_identity(tmp_path):
    # A smooth embedding: sines over the 14x14 grid, with other frequencies along
    # rows and columns so that a transposed grid would show.
    freq = np.linspace(0.05, 0.3, 32)

    def smooth(rows, cols):
        return np.sin(rows[..., None] * freq + cols[..., None] * freq[::-1])

    params = random_checkpoint(image_size=224, patch_size=16, hidden_dim=32, num_layers=1)
    cells = np.meshgrid(np.arange(14), np.arange(14), indexing="ij")
    params[POS_EMBEDDING][0, 1:] = smooth(*cells).reshape(196, 32)
    path = write_npz(tmp_path / "ckpt.npz", params)
    # Cell centres of the 24x24 grid in the 14x14 grid's coordinates (half-pixel centres).
    centres = (np.arange(24) + 0.5) * 14 / 24 - 0.5
    expected_large = smooth(*np.meshgrid(centres, centres, indexing="ij"))
    for method, tolerance in (("bicubic", 5e-3), ("bilinear", 0.05)):
        large = load_checkpoint(path, image_size=384, interpolation=method)
        grid = large.get_layer("patch_encoder").position_embedding.numpy()[0, 1:].reshape(24, 24, 32)
        # Inside the grid (borders are clamped) the resampled grid is the sampled function.
        inner = np.abs(grid - expected_large)[2:-2, 2:-2].max()
        assert inner < tolerance / 2, (method, inner)
        large_path = save_checkpoint(large, tmp_path / f"{method}.npz")
        back = load_checkpoint(large_path, image_size=224, interpolation=method)
        restored = back.get_layer("patch_encoder").position_embedding.numpy()
        assert restored.shape == params[POS_EMBEDDING].shape
        np.testing.assert_array_equal(restored[0, 0], params[POS_EMBEDDING][0, 0])
        error = np.abs(restored - params[POS_EMBEDDING])
        assert error.max() < tolerance and error.mean() < tolerance / 5, (method, error.max())


# --- Saving ---


@pytest.mark.parametrize("options", [{}, {"representation_size": 24}, {"class_token": False}])
def test_save_and_load_back_is_exact(tmp_path, options):
    params = random_checkpoint(**options)
    model = load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))
    out = save_checkpoint(model, tmp_path / "saved.npz")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz", "saved.npz"]  # no temp file left
    saved = read_checkpoint(out)
    assert sorted(saved) == sorted(params)
    for name, value in params.items():
        np.testing.assert_array_equal(saved[name], value, err_msg=name)
    again = load_checkpoint(out)
    x = images()
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_save_a_model_built_from_a_preset(tmp_path):
    model = keras_vit.ViT.from_preset(
        "vit_ti16", input_scaling="symmetric", num_layers=1, image_size=32, num_classes=4
    )
    path = save_checkpoint(model, tmp_path / "ti.npz")
    loaded = load_checkpoint(path)
    assert (loaded.hidden_dim, loaded.num_heads, loaded.num_layers) == (192, 3, 1)
    x = images()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.warns(UserWarning, match="does not record it"):
        save_checkpoint(keras_vit.ViT(**TINY, num_classes=3), tmp_path / "unit.npz")


def test_save_needs_a_vit_and_an_existing_folder(tmp_path):
    import keras

    with pytest.raises(TypeError, match="Expected a keras_vit.ViT, got Sequential"):
        save_checkpoint(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "x.npz")
    model = keras_vit.ViT(**TINY, num_classes=3, input_scaling="symmetric")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(model, tmp_path / "missing" / "x.npz")
    hybrid = keras_vit.ViT(**dict(TINY, stem_channels=(4,)), num_classes=3, input_scaling="symmetric")
    with pytest.raises(ValueError, match=r"a hybrid ViT \(stem_channels=\[4\]\) cannot be written in it"):
        save_checkpoint(hybrid, tmp_path / "hybrid.npz")
    assert not (tmp_path / "hybrid.npz").exists()


# --- Bad files and mismatches ---


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz does not exist"):
        load_checkpoint(tmp_path / "nothing.npz")


def test_not_an_npz_file(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("these are not weights\n")
    with pytest.raises(ValueError, match="is not an .npz checkpoint"):
        load_checkpoint(text)
    array = tmp_path / "array.npy"
    np.save(array, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"single .npy array of shape \(3, 4\)"):
        load_checkpoint(array)


def test_npz_of_unrelated_arrays(tmp_path):
    path = write_npz(tmp_path / "data.npz", {"x_train": np.zeros((2, 4)), "y_train": np.zeros(2)})
    with pytest.raises(ValueError, match="not a ViT checkpoint: it has no 'embedding/kernel'.*x_train"):
        load_checkpoint(path)


def test_pickled_object_array_is_refused(tmp_path):
    params = random_checkpoint()
    params["head/bias"] = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **params)
    with pytest.raises(ValueError, match="'head/bias' cannot be read safely"):
        load_checkpoint(path)


def test_missing_parameter_is_named(tmp_path):
    params = random_checkpoint()
    del params["Transformer/encoderblock_1/MlpBlock_3/Dense_1/bias"]
    with pytest.raises(
        ValueError,
        match=r"missing parameter 'Transformer/encoderblock_1/MlpBlock_3/Dense_1/bias' "
        r"\(expected shape \(32,\)\)",
    ):
        load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))


def test_wrong_shape_names_the_parameter_and_both_shapes(tmp_path):
    params = random_checkpoint()
    params["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel"] = np.zeros(
        (32, 2, 8), "float32"
    )
    with pytest.raises(
        ValueError,
        match=r"'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel' "
        r"has shape \(32, 2, 8\); the model needs \(32, 2, 16\)",
    ):
        load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))
    params = random_checkpoint()
    params["embedding/kernel"] = params["embedding/kernel"].reshape(64, 3, 32)
    with pytest.raises(ValueError, match=r"'embedding/kernel' has shape \(64, 3, 32\); expected \[patch_height"):
        load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))


def test_unknown_parameters_and_architectures(tmp_path):
    params = random_checkpoint()
    params["MAPHead_0/probe"] = np.zeros((1, 1, 32), "float32")
    with pytest.raises(ValueError, match="1 parameter.*does not use: 'MAPHead_0/probe'"):
        load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))
    params = random_checkpoint()
    params["conv_root/kernel"] = np.zeros((7, 7, 3, 64), "float32")
    with pytest.raises(ValueError, match="Hybrid ResNet"):
        load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))
    params = random_checkpoint()
    del params["Transformer/encoderblock_0/LayerNorm_0/scale"]
    params = {k.replace("encoderblock_0", "encoderblock_2"): v for k, v in params.items()}
    with pytest.raises(ValueError, match="missing encoderblock_0"):
        load_checkpoint(write_npz(tmp_path / "ckpt.npz", params))


def test_overrides_that_contradict_the_checkpoint(tmp_path):
    path = write_npz(tmp_path / "ckpt.npz", random_checkpoint(representation_size=24))
    with pytest.raises(ValueError, match=r"hidden_dim=64 does not match the checkpoint, which has hidden_dim=32"):
        load_checkpoint(path, hidden_dim=64)
    with pytest.raises(ValueError, match=r"patch_size=16 does not match.*patch_size=\(8, 8\)"):
        load_checkpoint(path, patch_size=16)
    with pytest.raises(ValueError, match="representation_size=12 does not match"):
        load_checkpoint(path, representation_size=12)
    with pytest.raises(ValueError, match="use_class_token=False does not match"):
        load_checkpoint(path, use_class_token=False)
    with pytest.raises(ValueError, match=r"stem_channels=\(32,\) does not match the checkpoint, whose patch embedding is linear"):
        load_checkpoint(path, stem_channels=(32,))
    with pytest.raises(ValueError, match="not divisible by patch height 8"):
        load_checkpoint(path, image_size=36)
    with pytest.raises(ValueError, match="interpolation must be 'bilinear' or 'bicubic', got 'nearest'"):
        load_checkpoint(path, image_size=48, interpolation="nearest")
    # Compatible overrides pass through to the model.
    model = load_checkpoint(path, patch_size=8, dropout_rate=0.1, classifier_activation="softmax")
    assert model.dropout_rate == 0.1
    np.testing.assert_allclose(model.predict(images(), verbose=0).sum(axis=1), 1.0, atol=1e-5)


def test_checkpoint_under_a_training_state_prefix(tmp_path):
    params = random_checkpoint()
    state = {f"opt/target/{k}": v for k, v in params.items()}
    state["opt/state/step"] = np.array([3.0])
    model = load_checkpoint(write_npz(tmp_path / "state.npz", state))
    x = images()
    np.testing.assert_allclose(
        model.predict(x, verbose=0), flax_reference(params, x / 127.5 - 1.0), atol=1e-4
    )


def test_checkpoint_without_head_is_a_feature_extractor(tmp_path):
    params = random_checkpoint(num_classes=0)
    path = write_npz(tmp_path / "features.npz", params)
    model = load_checkpoint(path)
    assert not model.include_top and model.output_shape == (None, 32)
    assert load_checkpoint(path, num_classes=3).output_shape == (None, 3)
    with pytest.raises(ValueError, match="no head; pass num_classes"):
        load_checkpoint(path, include_top=True)


# --- Fine-tuning from the command line ---


def _train_options():
    from keras_vit.training.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return {option for action in commands.choices["train"]._actions for option in action.option_strings}


def test_fine_tune_from_checkpoint_with_a_new_head(tmp_path, mnist_path):
    """`keras-vit train --init-from` fine-tunes a 5-class 21x21 checkpoint on 28x28 MNIST."""
    from keras_vit.training.cli import main

    assert "--init-from" in _train_options()
    params = random_checkpoint(image_size=21, patch_size=7, channels=1, num_classes=5)
    checkpoint = write_npz(tmp_path / "gray.npz", params)
    output = tmp_path / "run"
    # Two short epochs on 2,048 images: a minute of CPU at most.
    # The command line's own entry point, in this process (a subprocess would pay
    # for importing TensorFlow again).
    status = main(
        [
            "train",
            "--dataset", f"npz:{mnist_path}",
            "--init-from", checkpoint,
            # Fine-tune at 28x28 rather than the checkpoint's 21x21 (positions resampled).
            "--image-size", "28",
            "--output", str(output),
            "--epochs", "2", "--limit-train", "2048", "--limit-test", "512",
            "--warmup-epochs", "0", "--learning-rate", "0.003",
            # A random checkpoint holds no features to keep: AdamW learns it in 2 epochs, where the
            # fine-tuning default (the paper's SGD) relies on pre-trained ones.
            "--optimizer", "adamw",
        ]
    )
    assert status == 0
    import json

    import keras

    with open(output / "metrics.json") as file:
        metrics = json.load(file)
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1
    model = keras.models.load_model(output / "model.keras")
    # The checkpoint's encoder (not the preset's) with a new 10-class head and the
    # position grid resampled from 3x3 to 4x4.
    assert (model.hidden_dim, model.num_layers, model.num_classes) == (32, 2, 10)
    assert model.input_scaling == "symmetric" and model.patch_grid == (4, 4)
    tuned = model_params(model)
    name = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/value/kernel"
    assert np.corrcoef(tuned[name].ravel(), params[name].ravel())[0, 1] > 0.9
