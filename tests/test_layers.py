"""TransformerBlock against a NumPy forward pass, DropPath statistics, TokenPooling, config round trips."""

import json

import keras
import numpy as np
import pytest

from keras_vit.layers import ConvStem, DropPath, PatchEncoder, Patches, TokenPooling, TransformerBlock
from numpy_reference import batch_norm_inference, conv2d_same, gelu, layer_norm, softmax


def reference_block(x, w, num_heads):
    """Pre-norm ViT encoder block in float64 from the equations; returns (output, attention [B,h,T,T])."""
    batch, num_tokens, dim = x.shape
    head_dim = dim // num_heads
    h = layer_norm(x, w["attention_norm/gamma"], w["attention_norm/beta"])
    qkv = h @ w["qkv/kernel"] + w["qkv/bias"]
    # The fused kernel's columns are [query | key | value], each split into heads.
    q, k, v = (
        qkv[..., i * dim : (i + 1) * dim].reshape(batch, num_tokens, num_heads, head_dim).transpose(0, 2, 1, 3)
        for i in range(3)
    )
    attention = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim))
    attended = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, num_tokens, dim)
    x = x + attended @ w["attention_output/kernel"] + w["attention_output/bias"]
    h = layer_norm(x, w["mlp_norm/gamma"], w["mlp_norm/beta"])
    h = h @ w["mlp_dense_1/kernel"] + w["mlp_dense_1/bias"]
    h = gelu(h)
    x = x + h @ w["mlp_dense_2/kernel"] + w["mlp_dense_2/bias"]
    return x, attention


def randomize(layer, seed=0, scale=0.5):
    """Random normal weights (zero-initialized ones included; BatchNorm variances positive);
    returns them by relative path, float64."""
    rng = np.random.default_rng(seed)
    values = [rng.normal(scale=scale, size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights([np.abs(v) + 0.5 if "moving_variance" in w.path else v for w, v in zip(layer.weights, values)])
    prefix = layer.name + "/"
    return {
        w.path[len(prefix) :] if w.path.startswith(prefix) else w.path: keras.ops.convert_to_numpy(w).astype("float64")
        for w in layer.weights
    }


@pytest.mark.parametrize("num_heads, hidden_dim, num_tokens", [(1, 8, 5), (2, 8, 5), (4, 16, 7)])
def test_transformer_block_matches_numpy(num_heads, hidden_dim, num_tokens):
    block = TransformerBlock(num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=2 * hidden_dim + 3, name="block")
    x = np.random.default_rng(1).normal(size=(3, num_tokens, hidden_dim)).astype("float32")
    block.build(x.shape)
    weights = randomize(block)
    expected, expected_attention = reference_block(x.astype("float64"), weights, num_heads)

    output, attention = block(x, return_attention_scores=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(output), expected, atol=1e-4, rtol=1e-4)
    attention = keras.ops.convert_to_numpy(attention)
    assert attention.shape == (3, num_heads, num_tokens, num_tokens)
    np.testing.assert_allclose(attention, expected_attention, atol=1e-5)
    np.testing.assert_allclose(attention.sum(axis=-1), 1.0, atol=1e-5)
    # Without attention scores it returns the same tokens alone.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), expected, atol=1e-4, rtol=1e-4)


def test_transformer_block_dropout_only_in_training():
    block = TransformerBlock(num_heads=2, hidden_dim=8, mlp_dim=16, dropout_rate=0.5, attention_dropout_rate=0.5)
    x = np.random.default_rng(2).normal(size=(4, 5, 8)).astype("float32")
    inference = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_array_equal(inference, keras.ops.convert_to_numpy(block(x)))
    assert not np.allclose(keras.ops.convert_to_numpy(block(x, training=True)), inference)


def test_drop_path_is_identity_at_inference():
    x = np.random.default_rng(3).normal(size=(64, 5, 4)).astype("float32")
    layer = DropPath(0.5, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(DropPath(0.0)(x, training=True)), x)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_drop_path_drops_whole_samples_and_preserves_the_mean(rate):
    num_samples = 20000
    x = np.random.default_rng(4).normal(size=(num_samples, 3, 2)).astype("float32")
    out = keras.ops.convert_to_numpy(DropPath(rate, seed=2)(x, training=True))
    keep = 1.0 - rate

    kept = np.all(out != 0, axis=(1, 2))
    dropped = np.all(out == 0, axis=(1, 2))
    # Per sample: either the whole sample is dropped or the whole sample is scaled by 1/keep.
    assert np.all(kept | dropped)
    np.testing.assert_allclose(out[kept], x[kept] / keep, rtol=1e-6)
    # The kept fraction is Binomial(n, keep) / n: std <= 0.0036 here, so 0.02 is > 5 sigma.
    assert abs(kept.mean() - keep) < 0.02
    # E[out] = x: on all-ones inputs the sample mean of the output is ~1 (std <= 0.015 here).
    ones = np.ones((num_samples, 4), dtype="float32")
    mean = keras.ops.convert_to_numpy(DropPath(rate, seed=3)(ones, training=True)).mean()
    assert abs(mean - 1.0) < 0.06


def test_token_pooling_matches_numpy():
    tokens = np.random.default_rng(5).normal(size=(2, 7, 4)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(TokenPooling("token")(tokens)), tokens[:, 0])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(TokenPooling("gap")(tokens)), tokens[:, 1:].mean(axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(TokenPooling("gap", num_prefix_tokens=0)(tokens)), tokens.mean(axis=1), rtol=1e-6
    )


# --- Bad arguments: each raises with a message naming what was wrong. ---


@pytest.mark.parametrize("image_shape", [(2, 8, 12, 3), (1, 7, 5, 2)])
def test_conv_stem_matches_numpy(image_shape):
    stem = ConvStem((4, 6))
    x = np.random.default_rng(3).normal(size=image_shape).astype("float32")
    stem.build(x.shape)
    w = randomize(stem)
    expected = x.astype("float64")
    for i in range(2):
        expected = conv2d_same(expected, w[f"conv_{i}/kernel"], 2)
        names = ("gamma", "beta", "moving_mean", "moving_variance")
        expected = np.maximum(batch_norm_inference(expected, *(w[f"batch_norm_{i}/{n}"] for n in names), 1e-5), 0)
    # Odd sizes round up ("same" padding): 7x5 -> 4x3 -> 2x2.
    assert expected.shape == (image_shape[0], -(-image_shape[1] // 4), -(-image_shape[2] // 4), 6)
    assert expected.max() > 0.5 and (expected == 0).any()
    output = keras.ops.convert_to_numpy(stem(x))
    assert output.shape == expected.shape == tuple(stem.compute_output_shape(x.shape))
    np.testing.assert_allclose(output, expected, atol=1e-4, rtol=1e-4)
    # In training, BatchNorm normalizes with the batch's statistics instead (mean and biased
    # variance over batch, height and width).
    expected_training = x.astype("float64")
    for i in range(2):
        expected_training = conv2d_same(expected_training, w[f"conv_{i}/kernel"], 2)
        mean, variance = expected_training.mean(axis=(0, 1, 2)), expected_training.var(axis=(0, 1, 2))
        gamma, beta = w[f"batch_norm_{i}/gamma"], w[f"batch_norm_{i}/beta"]
        expected_training = np.maximum(batch_norm_inference(expected_training, gamma, beta, mean, variance, 1e-5), 0)
    assert np.abs(expected_training - expected).max() > 1e-2
    output_training = keras.ops.convert_to_numpy(stem(x, training=True))
    np.testing.assert_allclose(output_training, expected_training, atol=1e-4, rtol=1e-4)


def test_conv_stem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="filters must be a non-empty list of positive ints"):
        ConvStem(())
    with pytest.raises(ValueError, match="ConvStem expects images of shape"):
        ConvStem((4,))(np.zeros((2, 8, 8), "float32"))


def test_hidden_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"hidden_dim \(8\) must be divisible by num_heads \(3\)"):
        TransformerBlock(num_heads=3, hidden_dim=8, mlp_dim=16)


@pytest.mark.parametrize("name", ["dropout_rate", "attention_dropout_rate", "drop_path_rate"])
@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_transformer_block_rates_out_of_range(name, rate):
    with pytest.raises(ValueError, match=rf"{name} must be in \[0, 1\), got {rate}"):
        TransformerBlock(num_heads=2, hidden_dim=8, mlp_dim=16, **{name: rate})


@pytest.mark.parametrize("rate", [1.0, -0.5])
def test_drop_path_rate_out_of_range(rate):
    with pytest.raises(ValueError, match=rf"DropPath rate must be in \[0, 1\), got {rate}"):
        DropPath(rate)


def test_non_positive_block_sizes():
    with pytest.raises(ValueError, match=r"must be positive, got 0, 8, 16"):
        TransformerBlock(num_heads=0, hidden_dim=8, mlp_dim=16)


def test_transformer_block_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"TransformerBlock expects \[batch, tokens, 8\], got \(2, 5, 6\)"):
        TransformerBlock(num_heads=2, hidden_dim=8, mlp_dim=16)(np.zeros((2, 5, 6), dtype="float32"))


def test_bad_pooling():
    with pytest.raises(ValueError, match=r"pooling must be one of \('token', 'gap'\), got 'max'"):
        TokenPooling("max")
    with pytest.raises(ValueError, match=r"pooling='token' needs a class token"):
        TokenPooling("token", num_prefix_tokens=0)


def test_patch_encoder_rejects_wrong_inputs():
    with pytest.raises(ValueError, match=r"PatchEncoder was made for 6 patches, got 5"):
        PatchEncoder(num_patches=6, hidden_dim=4)(np.zeros((1, 5, 12), dtype="float32"))
    with pytest.raises(ValueError, match=r"PatchEncoder expects \[batch, num_patches, patch_dim\]"):
        PatchEncoder(num_patches=6, hidden_dim=4)(np.zeros((6, 12), dtype="float32"))
    with pytest.raises(ValueError, match=r"patch_grid \(2, 2\) does not hold num_patches=6"):
        PatchEncoder(num_patches=6, hidden_dim=4, patch_grid=(2, 2))
    with pytest.raises(ValueError, match=r"num_patches and hidden_dim must be positive, got 6 and 0"):
        PatchEncoder(num_patches=6, hidden_dim=0)


# --- get_config / from_config round trips ---

ROUND_TRIP_CASES = [
    (lambda: Patches((4, 2), name="p"), (2, 8, 6, 3)),
    (lambda: PatchEncoder(num_patches=6, hidden_dim=4, patch_grid=(3, 2), name="pe"), (2, 6, 12)),
    (lambda: PatchEncoder(num_patches=6, hidden_dim=4, use_class_token=False, name="pe"), (2, 6, 12)),
    (
        lambda: TransformerBlock(
            num_heads=2,
            hidden_dim=8,
            mlp_dim=12,
            dropout_rate=0.1,
            attention_dropout_rate=0.2,
            drop_path_rate=0.3,
            layer_norm_epsilon=1e-5,
            name="tb",
        ),
        (2, 5, 8),
    ),
    (lambda: DropPath(0.25, seed=7, name="dp"), (4, 5, 8)),
    (lambda: TokenPooling("gap", num_prefix_tokens=0, name="pool"), (2, 5, 8)),
    (lambda: TokenPooling("token", name="pool"), (2, 5, 8)),
    (lambda: ConvStem((4, 6), kernel_size=3, batch_norm_momentum=0.8, name="stem"), (2, 8, 12, 3)),
]


def json_round_trip(config):
    # .keras files store the config as JSON: tuples come back as lists.
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("make_layer, input_shape", ROUND_TRIP_CASES)
def test_layer_config_round_trip(make_layer, input_shape):
    layer = make_layer()
    x = np.random.default_rng(6).normal(size=input_shape).astype("float32")
    expected = keras.ops.convert_to_numpy(layer(x))
    if layer.weights:
        randomize(layer, seed=8)
        expected = keras.ops.convert_to_numpy(layer(x))

    config = json_round_trip(layer.get_config())
    clone = type(layer).from_config(config)
    assert json_round_trip(clone.get_config()) == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), expected)

    # Registered under the keras_vit package, so Keras can find the class by name.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"keras_vit>{type(layer).__name__}"
    revived = keras.saving.deserialize_keras_object(json_round_trip(serialized))
    assert type(revived) is type(layer)
    assert json_round_trip(revived.get_config()) == config
