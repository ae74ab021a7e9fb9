"""The whole ViT against a NumPy forward pass from the equations; saving, presets, errors,
training, attention maps and rollout, mixed precision."""

import json

import keras
import numpy as np
import pytest

from keras_vit import PRESETS, ViT, attention_maps, attention_model, attention_rollout
from numpy_reference import batch_norm_inference, conv2d_same, gelu, layer_norm, softmax

# ---------------------------------------------------------------------------
# Independent NumPy ViT (float64), written from the paper's equations.
# ---------------------------------------------------------------------------

SCALINGS = {"unit": (1 / 255, 0.0), "symmetric": (2 / 255, -1.0), "none": (1.0, 0.0)}


def patchify(images_nhwc, patch_height, patch_width):
    # The reference channels-first patchify: reshape, permute(0, 2, 4, 3, 5, 1), flatten.
    x = images_nhwc.transpose(0, 3, 1, 2)
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height // patch_height, patch_height, width // patch_width, patch_width)
    x = x.transpose(0, 2, 4, 3, 5, 1)
    return x.reshape(batch, x.shape[1] * x.shape[2], -1)


def reference_vit(config, w, images):
    """Returns (output, tokens before the final LayerNorm, per-layer attention [L, B, h, T, T])."""
    image_size = config["image_size"]
    patch_size = config["patch_size"]
    patch_height, patch_width = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    dim, num_heads = config["hidden_dim"], config["num_heads"]
    head_dim = dim // num_heads
    use_class_token = config.get("use_class_token", True)

    scale, offset = SCALINGS[config.get("input_scaling", "unit")]
    x = images.astype("float64") * scale + offset
    if config.get("mean") is not None:
        x = (x - np.asarray(config["mean"])) / np.asarray(config["std"])
    for i, _ in enumerate(config.get("stem_channels") or ()):
        # The hybrid stem: 3x3 stride-2 convolution, BatchNorm (moving statistics), ReLU.
        x = conv2d_same(x, w[f"stem/conv_{i}/kernel"], 2)
        x = batch_norm_inference(
            x, *(w[f"stem/batch_norm_{i}/{n}"] for n in ("gamma", "beta", "moving_mean", "moving_variance")), 1e-5
        )
        x = np.maximum(x, 0.0)
    stem_stride = 2 ** len(config.get("stem_channels") or ())
    patch_height, patch_width = patch_height // stem_stride, patch_width // stem_stride
    x = patchify(x, patch_height, patch_width) @ w["patch_encoder/projection/kernel"]
    x = x + w["patch_encoder/projection/bias"]
    batch = x.shape[0]
    if use_class_token:
        class_token = np.broadcast_to(w["patch_encoder/class_token"], (batch, 1, dim))
        x = np.concatenate([class_token, x], axis=1)
    x = x + w["patch_encoder/position_embedding"]
    num_tokens = x.shape[1]
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    token_height, token_width = patch_height * stem_stride, patch_width * stem_stride
    assert num_tokens == int(use_class_token) + (image_size[0] // token_height) * (image_size[1] // token_width)

    attentions = []
    for i in range(config["num_layers"]):
        p = f"encoder_block_{i}/"
        h = layer_norm(x, w[p + "attention_norm/gamma"], w[p + "attention_norm/beta"])
        qkv = h @ w[p + "qkv/kernel"] + w[p + "qkv/bias"]

        def heads(t):
            return t.reshape(batch, num_tokens, num_heads, head_dim).transpose(0, 2, 1, 3)

        q, k, v = heads(qkv[..., :dim]), heads(qkv[..., dim : 2 * dim]), heads(qkv[..., 2 * dim :])
        attention = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim))
        attentions.append(attention)
        attended = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, num_tokens, dim)
        x = x + attended @ w[p + "attention_output/kernel"] + w[p + "attention_output/bias"]
        h = layer_norm(x, w[p + "mlp_norm/gamma"], w[p + "mlp_norm/beta"])
        h = gelu(h @ w[p + "mlp_dense_1/kernel"] + w[p + "mlp_dense_1/bias"])
        x = x + h @ w[p + "mlp_dense_2/kernel"] + w[p + "mlp_dense_2/bias"]
    tokens = x

    x = layer_norm(x, w["encoder_norm/gamma"], w["encoder_norm/beta"], 1e-6)
    if config.get("pooling", "token") == "token":
        x = x[:, 0]
    else:
        x = x[:, int(use_class_token) :].mean(axis=1)
    if config.get("representation_size"):
        x = np.tanh(x @ w["pre_logits/kernel"] + w["pre_logits/bias"])
    if config.get("include_top", True):
        x = x @ w["head/kernel"] + w["head/bias"]
    return x, tokens, np.stack(attentions)


def randomize(model, seed=0, scale=0.5):
    """Random normal weights everywhere (the zero-initialized head and class token too);
    BatchNorm moving variances positive."""
    rng = np.random.default_rng(seed)
    values = [rng.normal(scale=scale, size=w.shape).astype("float32") for w in model.weights]
    values = [np.abs(v) + 0.5 if "moving_variance" in w.path else v for w, v in zip(model.weights, values)]
    model.set_weights(values)
    return {w.path: keras.ops.convert_to_numpy(w).astype("float64") for w in model.weights}


def random_images(config, batch=3, seed=1):
    image_size = config["image_size"]
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(batch, height, width, config.get("channels", 3))).astype("float32")


CONFIGS = {
    "token_symmetric_mean_std_prelogits": dict(
        image_size=8, patch_size=2, channels=3, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=12,
        num_classes=5, pooling="token", input_scaling="symmetric",
        mean=[0.1, -0.2, 0.3], std=[0.5, 0.8, 1.2], representation_size=6,
    ),
    "gap_no_class_token_nonsquare_rect_patch": dict(
        image_size=(12, 8), patch_size=(4, 2), channels=1, num_layers=2, num_heads=4, hidden_dim=8,
        mlp_dim=16, num_classes=3, pooling="gap", use_class_token=False, input_scaling="unit",
    ),
    "gap_with_class_token_scalar_norm": dict(
        image_size=(6, 10), patch_size=(3, 5), channels=2, num_layers=3, num_heads=1, hidden_dim=4,
        mlp_dim=8, num_classes=4, pooling="gap", input_scaling="none", mean=[100.0], std=[50.0],
    ),
    # Hybrid ViT: a two-convolution stem (stride 4), then 2x1 patches of its feature map.
    "hybrid_stem_symmetric_mean_std": dict(
        image_size=(16, 8), patch_size=(8, 4), channels=3, stem_channels=(4, 6), num_layers=2, num_heads=2,
        hidden_dim=8, mlp_dim=12, num_classes=3, pooling="token", input_scaling="symmetric",
        mean=[0.1, -0.2, 0.3], std=[0.5, 0.8, 1.2],
    ),
    "token_nonsquare_rect_patch": dict(
        image_size=(8, 12), patch_size=(4, 3), channels=3, num_layers=2, num_heads=2, hidden_dim=8,
        mlp_dim=16, num_classes=2, pooling="token",
    ),
}


# ---------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_vit_logits_and_attention_match_numpy_forward_pass(name):
    # One model per configuration (building dominates the run time), several checks on it.
    config = CONFIGS[name]
    model = ViT(**config)
    weights = randomize(model)
    images = random_images(config)
    expected, expected_tokens, expected_attention = reference_vit(config, weights, images)

    logits = keras.ops.convert_to_numpy(model(images))
    assert logits.shape == (3, config["num_classes"])
    assert logits.dtype == np.float32
    # The weights are O(1), so the logits are far from zero: a real comparison.
    assert np.abs(expected).max() > 0.5
    assert np.abs(logits - expected).max() < 1e-4

    tokens = keras.ops.convert_to_numpy(model.tokens(images))
    np.testing.assert_allclose(tokens, expected_tokens, atol=1e-4, rtol=1e-5)

    # Attention maps of every block: [L, B, h, T, T], rows sum to 1, equal to NumPy.
    maps = attention_maps(model, images, batch_size=2)
    num_tokens = expected_attention.shape[-1]
    assert maps.shape == (config["num_layers"], 3, config["num_heads"], num_tokens, num_tokens)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(maps, expected_attention, atol=1e-5)
    per_layer = attention_model(model)(images)
    assert len(per_layer) == config["num_layers"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_layer[-1]), expected_attention[-1], atol=1e-5)
    has_class_token = config.get("use_class_token", True)
    rollout_map, _ = attention_rollout(maps, model.patch_grid, has_class_token=has_class_token)
    expected_map, _ = reference_rollout(expected_attention, "mean", has_class_token)
    np.testing.assert_allclose(rollout_map, expected_map.reshape(3, *model.patch_grid), rtol=1e-4, atol=1e-5)


def test_vit_features_without_top_and_integer_images():
    config = dict(CONFIGS["token_symmetric_mean_std_prelogits"], include_top=False)
    model = ViT(**config)
    weights = randomize(model, seed=3)
    images = np.random.default_rng(4).integers(0, 256, size=(2, 8, 8, 3), dtype="uint8")
    expected, _, _ = reference_vit(config, weights, images)
    features = keras.ops.convert_to_numpy(model(images))
    assert features.shape == (2, config["representation_size"])
    assert np.abs(features - expected).max() < 1e-4


def test_classifier_activation_softmax():
    config = dict(CONFIGS["token_nonsquare_rect_patch"], classifier_activation="softmax")
    model = ViT(**config)
    weights = randomize(model, seed=5)
    images = random_images(config)
    logits, _, _ = reference_vit(config, weights, images)
    probabilities = keras.ops.convert_to_numpy(model(images))
    np.testing.assert_allclose(probabilities, softmax(logits), atol=1e-5)


# ---------------------------------------------------------------------------
# Saving and configs
# ---------------------------------------------------------------------------


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    config = CONFIGS["token_symmetric_mean_std_prelogits"]
    model = ViT(**config, dropout_rate=0.1, drop_path_rate=0.2, name="my_vit")
    randomize(model, seed=6)
    images = random_images(config)
    expected = keras.ops.convert_to_numpy(model(images))

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is ViT
    assert loaded.name == "my_vit"
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), expected)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]


@pytest.mark.parametrize("name", ["gap_no_class_token_nonsquare_rect_patch", "gap_with_class_token_scalar_norm"])
def test_vit_config_round_trip(name):
    model = ViT(**CONFIGS[name])
    randomize(model, seed=7)
    config = json.loads(json.dumps(model.get_config()))
    clone = ViT.from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == config
    clone.set_weights(model.get_weights())
    images = random_images(CONFIGS[name], batch=2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(images)), keras.ops.convert_to_numpy(model(images)))


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------

PRESET_MILLIONS = {"vit_ti16": 5.72, "vit_s16": 22.05, "vit_b16": 86.57, "vit_b32": 88.22, "vit_l16": 304.33}


@pytest.fixture(scope="module")
def preset_parameter_counts():
    # Built without initializing the weights (deferred variables): the graph, layers and
    # weight shapes are real, but 300M random numbers for ViT-L would take ~20 s here.
    counts = {}
    for name in PRESET_MILLIONS:
        with keras.StatelessScope(initialize_variables=False):
            model = ViT.from_preset(name)
        assert model.built and (model.image_size, model.num_classes) == ((224, 224), 1000)
        counts[name] = model.count_params()
        del model
    # Forget the never-initialized variables now: Keras initializes every pending one
    # when the next stateless scope (any symbolic call) closes.
    keras.backend.clear_session()
    return counts


@pytest.mark.parametrize("name", sorted(PRESET_MILLIONS))
def test_preset_parameter_counts(preset_parameter_counts, name):
    assert round(preset_parameter_counts[name] / 1e6, 2) == PRESET_MILLIONS[name]


def test_preset_parameter_count_matches_closed_form(preset_parameter_counts):
    # Independent count for ViT-Ti/16 at 224: embedding + blocks + final norm + head.
    dim, mlp, layers, patch_dim, tokens = 192, 768, 12, 16 * 16 * 3, 197
    block = (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (dim * mlp + mlp) + (mlp * dim + dim) + 4 * dim
    expected = (patch_dim * dim + dim) + dim + tokens * dim + layers * block + 2 * dim + (dim * 1000 + 1000)
    assert preset_parameter_counts["vit_ti16"] == expected == 5_717_416


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'vit_xl99'; known presets: ") as error:
        ViT.from_preset("vit_xl99")
    for name in PRESETS:
        assert name in str(error.value)


def test_from_preset_overrides():
    model = ViT.from_preset("vit_ti16", image_size=32, patch_size=(4, 8), num_classes=10, num_layers=2)
    assert (model.hidden_dim, model.num_heads, model.mlp_dim) == (192, 3, 768)  # from the preset
    assert (model.image_size, model.patch_size, model.num_layers) == ((32, 32), (4, 8), 2)  # overridden
    assert model.patch_grid == (8, 4) and model.num_patches == 32
    assert len(model.blocks) == 2
    assert tuple(model(np.zeros((1, 32, 32, 3))).shape) == (1, 10)
    assert PRESETS["vit_ti16"]["image_size"] == 224  # the preset itself is untouched


# ---------------------------------------------------------------------------
# Bad arguments and inputs
# ---------------------------------------------------------------------------

SMALL = dict(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8, num_classes=3)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(patch_size="4"), TypeError, r"patch_size must be an int or a pair of ints"),
        (dict(patch_size=4.0), TypeError, r"patch_size must be an int or a pair of ints"),
        (dict(patch_size=(4, 4, 4)), TypeError, r"patch_size must be an int or a pair of ints"),
        (dict(patch_size=0), ValueError, r"patch_size must be positive"),
        (dict(image_size=(8.5, 8)), TypeError, r"image_size must be an int or a pair of ints"),
        (dict(image_size="8"), TypeError, r"image_size must be an int or a pair of ints"),
        (dict(image_size=0), ValueError, r"image_size must be positive"),
        (dict(image_size=10), ValueError, r"Image height 10 is not divisible by patch height 4"),
        (dict(image_size=(8, 6)), ValueError, r"Image width 6 is not divisible by patch width 4"),
        (dict(hidden_dim=10, num_heads=3), ValueError, r"hidden_dim \(10\) must be divisible by num_heads \(3\)"),
        (dict(pooling="max"), ValueError, r"pooling must be one of \('token', 'gap'\), got 'max'"),
        (dict(use_class_token=False), ValueError, r"pooling='token' needs a class token"),
        (dict(mean=[0.5, 0.5, 0.5]), ValueError, r"mean and std must be given together"),
        (dict(std=[0.5, 0.5, 0.5]), ValueError, r"mean and std must be given together"),
        (dict(mean=[0.5, 0.5], std=[0.2, 0.2]), ValueError, r"mean and std need 1 or 3 values each, got 2 and 2"),
        (dict(mean=[0.5], std=[0.0]), ValueError, r"std must be positive"),
        (dict(input_scaling="imagenet"), ValueError, r"input_scaling must be one of \['none', 'symmetric', 'unit'\]"),
        (dict(dropout_rate=1.0), ValueError, r"dropout_rate must be in \[0, 1\), got 1.0"),
        (dict(dropout_rate=-0.1), ValueError, r"dropout_rate must be in \[0, 1\), got -0.1"),
        (dict(attention_dropout_rate=1.5), ValueError, r"attention_dropout_rate must be in \[0, 1\), got 1.5"),
        (dict(drop_path_rate=1.0), ValueError, r"drop_path_rate must be in \[0, 1\), got 1.0"),
        (dict(drop_path_rate=-0.2), ValueError, r"drop_path_rate must be in \[0, 1\), got -0.2"),
        (dict(num_layers=0), ValueError, r"num_layers must be positive, got 0"),
        (dict(num_classes=0), ValueError, r"num_classes must be positive, got 0"),
        (dict(channels=0), ValueError, r"channels must be positive, got 0"),
        (dict(stem_channels=(4, 4, 4)), ValueError, r"patch_size \(4, 4\) must be divisible by the stem's stride 8"),
        (dict(stem_channels=(4, 0)), ValueError, r"filters must be a non-empty list of positive ints"),
        (dict(stem_channels=("4",)), ValueError, r"filters must be a non-empty list of positive ints, got \('4',\)"),
        (dict(stem_channels=(4.5,)), ValueError, r"filters must be a non-empty list of positive ints"),
    ],
)
def test_bad_arguments_raise_clear_errors(overrides, error, message):
    with pytest.raises(error, match=message):
        ViT(**dict(SMALL, **overrides))


@pytest.mark.parametrize("channels, shape", [(3, (2, 8, 8, 1)), (3, (2, 8, 8, 4)), (1, (2, 8, 8, 3)), (3, (2, 12, 8, 3))])
def test_wrong_image_shape_into_the_model_names_the_expected_shape(channels, shape):
    model = ViT(**dict(SMALL, channels=channels))
    with pytest.raises(ValueError, match=rf"expected shape=\(None, 8, 8, {channels}\)"):
        model(np.zeros(shape, dtype="float32"))


def test_images_without_channel_axis_are_rejected():
    model = ViT(**dict(SMALL, channels=1))
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=3"):
        model(np.zeros((2, 8, 8), dtype="float32"))


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def test_fit_lowers_the_loss():
    # Random images around four random templates, labelled by template: learnable in a
    # few steps. (Brightness-coded labels would not do: LayerNorm removes a patch's scale.)
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 4, size=64)
    templates = rng.uniform(0, 255, size=(4, 8, 8, 3))
    images = (0.5 * templates[labels] + 0.5 * rng.uniform(0, 255, size=(64, 8, 8, 3))).astype("float32")
    model = ViT(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=4)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=False)
    before = float(loss(labels, model(images)))
    # The head starts at zero: every logit is 0, the loss is ln(4).
    assert abs(before - np.log(4)) < 1e-5
    history = model.fit(images, labels, batch_size=16, epochs=8, verbose=0)
    after = float(loss(labels, model(images)))
    assert after < 0.5 * before, history.history["loss"]


# ---------------------------------------------------------------------------
# Attention maps and rollout
# ---------------------------------------------------------------------------


def reference_rollout(attention, head_fusion, has_class_token):
    """Abnar & Zuidema (2020), one image at a time: fuse heads, 0.5 A + 0.5 I, renormalize, multiply."""
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    num_layers, batch, _, num_tokens, _ = attention.shape
    maps, rollouts = [], []
    for b in range(batch):
        rollout = np.eye(num_tokens)
        for layer in range(num_layers):
            a = 0.5 * fuse(attention[layer, b], axis=0) + 0.5 * np.eye(num_tokens)
            a = a / a.sum(axis=1, keepdims=True)
            rollout = a @ rollout  # the later layer on the left
        rollouts.append(rollout)
        maps.append(rollout[0, 1:] if has_class_token else rollout.mean(axis=0))
    return np.stack(maps), np.stack(rollouts)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("has_class_token", [True, False])
def test_attention_rollout_matches_numpy(head_fusion, has_class_token):
    rng = np.random.default_rng(10)
    rows, cols = 2, 3
    num_tokens = rows * cols + int(has_class_token)
    attention = softmax(rng.normal(scale=2.0, size=(3, 2, 4, num_tokens, num_tokens)))
    expected_maps, expected_rollout = reference_rollout(attention, head_fusion, has_class_token)

    maps, rollout = attention_rollout(attention, (rows, cols), head_fusion, has_class_token)
    assert maps.shape == (2, rows, cols) and rollout.shape == (2, num_tokens, num_tokens)
    np.testing.assert_allclose(rollout, expected_rollout, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps, expected_maps.reshape(2, rows, cols), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rollout.sum(axis=-1), 1.0, atol=1e-5)
    # A list of per-layer arrays works the same.
    list_maps, _ = attention_rollout(list(attention), (rows, cols), head_fusion, has_class_token)
    np.testing.assert_array_equal(list_maps, maps)


def test_attention_rollout_rejects_bad_arguments():
    attention = np.full((2, 1, 2, 5, 5), 0.2)
    with pytest.raises(ValueError, match=r"head_fusion must be one of \('mean', 'max', 'min'\), got 'median'"):
        attention_rollout(attention, (2, 2), head_fusion="median")
    with pytest.raises(ValueError, match=r"attention has 5 tokens, patch grid \(3, 3\) needs 10"):
        attention_rollout(attention, (3, 3))
    with pytest.raises(ValueError, match=r"attention must be \[layers, batch, heads, T, T\]"):
        attention_rollout(attention[0], (2, 2))


# ---------------------------------------------------------------------------
# Mixed precision
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy, compute_dtype, tolerance", [("mixed_float16", "float16", 0.01), ("mixed_bfloat16", "bfloat16", 0.05)])
def test_mixed_precision_matches_float32(policy, compute_dtype, tolerance):
    config = CONFIGS["token_nonsquare_rect_patch"]
    reference = ViT(**config)
    randomize(reference, seed=12)
    images = random_images(config, batch=8)
    expected = keras.ops.convert_to_numpy(reference(images))

    keras.config.set_dtype_policy(policy)  # conftest resets it to float32
    model = ViT(**config)
    model.set_weights(reference.get_weights())
    assert model.get_layer("encoder_block_0").compute_dtype == compute_dtype
    assert all(w.dtype == "float32" for w in model.weights)  # variables stay float32
    logits = model(images)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    logits = keras.ops.convert_to_numpy(logits)
    # Tolerance relative to the largest logit: float16 keeps 11 significant bits and
    # bfloat16 8 (about 0.05% and 0.4% per rounding); measured errors through two blocks
    # are about 0.15% and 1.4%, so 1% and 5% leave room without hiding a real bug.
    scale = np.abs(expected).max()
    assert scale > 1.0
    assert np.abs(logits - expected).max() < tolerance * scale, np.abs(logits - expected).max() / scale
