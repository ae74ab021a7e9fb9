"""The fast execution paths give the plain path's numbers.

TensorFlow only rewrites graphs (grappler, oneDNN fusion of MatMul + bias + GELU) inside
`tf.function`, and XLA only with `jit_compile`, so eager tests of the layers do not run
the kernels that the benchmarks time. Here a small ViT with random weights runs through
every path and each is compared with the eager call and with a float64 NumPy forward
pass written from the ViT equations. Budget: ~20 s. No timings (they live in bench/).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

from keras_vit import ViT

CONFIG = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=96,
              num_classes=7)


def _layer_norm(x, gamma, beta, epsilon=1e-6):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + epsilon) * gamma + beta


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_vit(images, model):
    """Float64 ViT forward pass from the equations, reading `model`'s weights by layer name."""
    w = {v.path: keras.ops.convert_to_numpy(v).astype("float64") for v in model.weights}
    x = images.astype("float64") / 255.0
    batch, size, _, channels = x.shape
    p, dim, heads = CONFIG["patch_size"], CONFIG["hidden_dim"], CONFIG["num_heads"]
    grid = size // p
    # Patches row by row, each flattened (row, column, channel).
    patches = x.reshape(batch, grid, p, grid, p, channels).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(batch, grid * grid, p * p * channels)
    tokens = patches @ w["patch_encoder/projection/kernel"] + w["patch_encoder/projection/bias"]
    cls = np.broadcast_to(w["patch_encoder/class_token"], (batch, 1, dim))
    x = np.concatenate([cls, tokens], axis=1) + w["patch_encoder/position_embedding"]
    t, hd = x.shape[1], dim // heads
    for i in range(CONFIG["num_layers"]):
        b = lambda name: w[f"encoder_block_{i}/{name}"]  # noqa: E731
        h = _layer_norm(x, b("attention_norm/gamma"), b("attention_norm/beta"))
        qkv = h @ b("qkv/kernel") + b("qkv/bias")
        q, k, v = (qkv[..., j * dim:(j + 1) * dim].reshape(batch, t, heads, hd).transpose(0, 2, 1, 3)
                   for j in range(3))
        a = _softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)) @ v
        x = x + a.transpose(0, 2, 1, 3).reshape(batch, t, dim) @ b("attention_output/kernel") \
            + b("attention_output/bias")
        h = _layer_norm(x, b("mlp_norm/gamma"), b("mlp_norm/beta"))
        h = h @ b("mlp_dense_1/kernel") + b("mlp_dense_1/bias")
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = x + h @ b("mlp_dense_2/kernel") + b("mlp_dense_2/bias")
    x = _layer_norm(x, w["encoder_norm/gamma"], w["encoder_norm/beta"])[:, 0]
    return x @ w["head/kernel"] + w["head/bias"]


@pytest.fixture(scope="module")
def model_and_images():
    keras.utils.set_random_seed(3)
    model = ViT(**CONFIG)
    rng = np.random.default_rng(0)
    # Random weights everywhere (the head starts at zero), scaled so that logits are O(1)
    # and every block contributes.
    model.set_weights([rng.normal(scale=0.2, size=v.shape).astype("float32") for v in model.weights])
    images = rng.uniform(0, 255, size=(5, 32, 32, 3)).astype("float32")
    return model, images


def test_plain_path_matches_numpy(model_and_images):
    model, images = model_and_images
    eager = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.abs(eager).max() > 0.5  # not a trivially small output
    np.testing.assert_allclose(eager, numpy_vit(images, model), atol=1e-4, rtol=0)


@pytest.mark.parametrize("path", ["graph", "xla", "predict", "predict_batch_1"])
def test_fast_paths_match_plain_path(model_and_images, path):
    model, images = model_and_images
    plain = keras.ops.convert_to_numpy(model(images, training=False))
    if path == "graph":  # grappler + oneDNN fused MatMul/bias/GELU
        fast = tf.function(lambda x: model(x, training=False))(tf.constant(images)).numpy()
    elif path == "xla":
        fast = tf.function(lambda x: model(x, training=False), jit_compile=True)(
            tf.constant(images)).numpy()
    elif path == "predict":
        fast = model.predict(images, batch_size=5, verbose=0)
    else:
        fast = model.predict(images, batch_size=1, verbose=0)
    assert np.abs(fast - plain).max() < 1e-4
    np.testing.assert_allclose(fast, numpy_vit(images, model), atol=1e-4, rtol=0)


def _one_fit_step(jit_compile, images, labels):
    keras.utils.set_random_seed(5)
    model = ViT(**CONFIG)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(scale=0.2, size=v.shape).astype("float32") for v in model.weights])
    before = [np.array(v) for v in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    model.fit(images, labels, batch_size=len(images), epochs=1, verbose=0, shuffle=False)
    return before, model.get_weights()


def test_xla_training_step_matches_graph_step(model_and_images):
    _, images = model_and_images
    labels = np.arange(len(images)) % CONFIG["num_classes"]
    before, graph = _one_fit_step(False, images, labels)
    _, xla = _one_fit_step(True, images, labels)
    moved = [np.abs(g - b).max() for g, b in zip(graph, before)]
    assert min(moved) > 0  # every weight got a gradient (the step did something)
    for g, x in zip(graph, xla):
        np.testing.assert_allclose(x, g, atol=1e-5, rtol=0)


def test_benchmark_models_are_the_same_size():
    """The harness compares like with like: keras-hub's ViT has our parameter count."""
    from bench.models import CONFIGS, build_model

    for name in ("cifar", "vit_ti16"):
        ours = build_model("ours", CONFIGS[name])
        peer = build_model("keras_hub", CONFIGS[name])
        assert ours.count_params() == peer.count_params(), name
        assert ours.output_shape == peer.output_shape == (None, CONFIGS[name]["num_classes"])


def test_flop_count_matches_published_vit_b16():
    # ViT-B/16 at 224: 17.6 G multiply-adds (DeiT/timm tables count MACs).
    from bench.models import forward_flops

    flops = forward_flops(dict(image_size=224, patch_size=16, num_layers=12, num_heads=12,
                               hidden_dim=768, mlp_dim=3072, num_classes=1000))
    assert abs(flops / 2 / 17.58e9 - 1) < 0.01
