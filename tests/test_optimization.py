"""`make_optimizer`: momentum SGD against NumPy, and the head kept out of weight decay for fine-tuning."""

import math

import keras
import numpy as np
import pytest

from keras_vit import ViT
from keras_vit.training.choices import OPTIMIZERS
from keras_vit.training.optimization import head_variables, make_optimizer

TINY = dict(image_size=8, channels=1, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)


def _tiny_vit():
    model = ViT(**TINY)
    # A non-zero head (a ViT's head starts at zero), so that its decay would show.
    head = model.get_layer("head")
    head.kernel.assign(np.random.default_rng(3).standard_normal(head.kernel.shape).astype("float32"))
    return model


def _decayed(optimizer, model):
    return {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}


def test_sgd_steps_match_numpy_momentum_sgd():
    """Three steps of clipped, decoupled-decay momentum SGD on a cosine schedule, as NumPy computes them."""
    model = _tiny_vit()
    lr, momentum, weight_decay, clipnorm, total = 0.1, 0.9, 0.05, 1.0, 4
    optimizer = make_optimizer(model, lr, total_steps=total, warmup_steps=0, weight_decay=weight_decay,
                               clipnorm=clipnorm, optimizer="sgd", momentum=momentum)
    assert isinstance(optimizer, keras.optimizers.SGD) and not optimizer.nesterov
    variables = model.trainable_variables
    decays = [optimizer._use_weight_decay(v) for v in variables]
    assert any(decays) and not all(decays)
    weights = [v.numpy().astype("float64") for v in variables]
    velocity = [np.zeros_like(w) for w in weights]
    rng = np.random.default_rng(0)
    for step in range(3):
        # Gradients of global norm ~10: clipping to 1 matters.
        grads = [rng.standard_normal(w.shape).astype("float32") for w in weights]
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))

        rate = 0.5 * lr * (1 + math.cos(math.pi * step / total))  # cosine from the peak (no warm-up)
        norm = math.sqrt(sum(float(np.sum(g.astype("float64") ** 2)) for g in grads))
        scale = min(1.0, clipnorm / norm)
        for i, g in enumerate(grads):
            if decays[i]:
                weights[i] = weights[i] - rate * weight_decay * weights[i]
            velocity[i] = momentum * velocity[i] - rate * scale * g
            weights[i] = weights[i] + velocity[i]
    assert norm > 5 * clipnorm
    for variable, expected in zip(variables, weights):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=variable.path)


def test_sgd_without_weight_decay_is_plain_momentum():
    model = _tiny_vit()
    optimizer = make_optimizer(model, 0.01, total_steps=10, weight_decay=0.0, optimizer="sgd")
    assert optimizer.weight_decay is None  # no decay pass at all
    assert optimizer.momentum == pytest.approx(0.9) and optimizer.global_clipnorm == 1.0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_head_is_excluded_from_weight_decay_when_fine_tuning(name):
    model = _tiny_vit()
    head = {v.path for v in head_variables(model)}
    assert head == {"head/kernel", "head/bias"}
    fine_tune = make_optimizer(model, 0.1, total_steps=10, weight_decay=0.5, optimizer=name, decay_head=False)
    scratch = make_optimizer(model, 0.1, total_steps=10, weight_decay=0.5, optimizer=name)
    # The same decayed kernels but the head's (its bias, 1-D, is never decayed).
    assert _decayed(scratch, model) - _decayed(fine_tune, model) == {"head/kernel"}
    assert _decayed(fine_tune, model) == {"patch_encoder/projection/kernel", "encoder_block_0/qkv/kernel",
                                          "encoder_block_0/attention_output/kernel",
                                          "encoder_block_0/mlp_dense_1/kernel", "encoder_block_0/mlp_dense_2/kernel"}

    # Pure decay (zero gradients): the encoder's kernels shrink, the head does not.
    def step(optimizer):
        model = _tiny_vit()
        head_kernel = model.get_layer("head").kernel
        encoder_kernel = next(v for v in model.trainable_variables if v.path.endswith("qkv/kernel"))
        before = head_kernel.numpy(), encoder_kernel.numpy()
        optimizer = make_optimizer(model, 0.1, total_steps=10, weight_decay=0.5, optimizer=name, **optimizer)
        optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in model.trainable_variables])
        return (head_kernel.numpy() / before[0]).mean(), (encoder_kernel.numpy() / before[1]).mean()

    head_ratio, encoder_ratio = step({"decay_head": False})
    assert head_ratio == pytest.approx(1.0, abs=1e-6)
    assert encoder_ratio == pytest.approx(1 - 0.1 * 0.5, abs=1e-5)  # w -= lr * weight_decay * w
    assert step({"decay_head": True})[0] == pytest.approx(1 - 0.1 * 0.5, abs=1e-5)


def test_a_model_without_head_has_nothing_to_exclude():
    model = ViT(**dict(TINY, include_top=False))
    assert head_variables(model) == []
    make_optimizer(model, 0.1, total_steps=10, optimizer="sgd", weight_decay=0.1, decay_head=False)


def test_unknown_optimizer_and_bad_momentum():
    model = _tiny_vit()
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'sgd', got 'adam'"):
        make_optimizer(model, 0.1, total_steps=10, optimizer="adam")
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.5"):
        make_optimizer(model, 0.1, total_steps=10, optimizer="sgd", momentum=1.5)


def test_adamw_steps_match_numpy_adamw():
    """Three steps of clipped AdamW with decoupled decay on a warm-up + cosine schedule, as NumPy computes them
    from the equations (Loshchilov & Hutter; Keras' epsilon outside the square root, decay before the step)."""
    model = _tiny_vit()
    lr, weight_decay, clipnorm, total, warmup = 0.01, 0.1, 1.0, 5, 1
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7
    optimizer = make_optimizer(model, lr, total_steps=total, warmup_steps=warmup, weight_decay=weight_decay,
                               clipnorm=clipnorm)
    variables = model.trainable_variables
    decays = [optimizer._use_weight_decay(v) for v in variables]
    assert any(decays) and not all(decays)
    weights = [v.numpy().astype("float64") for v in variables]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    rng = np.random.default_rng(0)
    for step in range(1, 4):
        grads = [rng.standard_normal(w.shape).astype("float32") for w in weights]
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))

        index = step - 1  # the schedule sees the step count before this step
        rate = lr * index / warmup if index < warmup else (
            0.5 * lr * (1 + math.cos(math.pi * (index - warmup) / (total - warmup))))
        scale = min(1.0, clipnorm / math.sqrt(sum(float(np.sum(g.astype("float64") ** 2)) for g in grads)))
        for i, g in enumerate(grads):
            g = scale * g.astype("float64")
            if decays[i]:
                weights[i] = weights[i] - rate * weight_decay * weights[i]
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g**2
            m_hat, v_hat_root = m[i] / (1 - beta_1**step), np.sqrt(v[i]) / math.sqrt(1 - beta_2**step)
            weights[i] = weights[i] - rate * m_hat / (v_hat_root + epsilon / math.sqrt(1 - beta_2**step))
    for variable, expected in zip(variables, weights):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=1e-6, err_msg=variable.path)


def test_fused_adamw_trains_as_keras_adamw_in_fit():
    """`model.fit` with FusedAdamW against Keras' AdamW from the same start: the same weights and moments
    to float32 rounding after a compiled epoch, decay exclusions included."""
    from keras_vit.training.fused_adamw import FusedAdamW

    rng = np.random.default_rng(1)
    images = rng.random((32, 8, 8, 1), dtype="float32")
    labels = keras.utils.to_categorical(rng.integers(0, 3, 32), 3)
    models = []
    for optimizer_class in (keras.optimizers.AdamW, FusedAdamW):
        keras.utils.set_random_seed(0)
        model = _tiny_vit()
        schedule = keras.optimizers.schedules.CosineDecay(3e-3, 8, warmup_target=None)
        optimizer = optimizer_class(schedule, weight_decay=0.1, global_clipnorm=1.0)
        optimizer.exclude_from_weight_decay(var_list=[model.trainable_variables[0]])
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(images, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
        models.append(model)
    keras_adamw, fused = models
    assert type(fused.optimizer) is FusedAdamW and int(fused.optimizer.iterations) == 8
    moved = [not np.allclose(w, v) for w, v in zip(_tiny_vit().get_weights(), fused.get_weights())]
    assert sum(moved) > len(moved) // 2
    for expected, actual in zip(keras_adamw.optimizer.variables, fused.optimizer.variables):
        assert expected.name == actual.name and expected.shape == actual.shape
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6, err_msg=actual.path)
    # atol: the key bias's gradient is rounding noise (softmax ignores a shift shared by all keys), which Adam's
    # m / sqrt(v) turns into steps of about 1e-6 either way; real steps here are about lr = 3e-3.
    for expected, actual in zip(keras_adamw.trainable_variables, fused.trainable_variables):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5, err_msg=actual.path)


def test_fused_adamw_round_trips_through_a_keras_file(tmp_path):
    from keras_vit.training.fused_adamw import FusedAdamW

    model = _tiny_vit()
    model.compile(optimizer=FusedAdamW(1e-3, weight_decay=0.05, beta_2=0.99), loss="mse")
    model.fit(np.ones((4, 8, 8, 1), "float32"), np.zeros((4, 3), "float32"), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is FusedAdamW
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for expected, actual in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())


def test_fused_adamw_docstring_example_runs():
    # training/ is outside pytest's doctest paths (setup.cfg): its example runs here.
    import doctest

    from keras_vit.training import fused_adamw

    failed, attempted = doctest.testmod(fused_adamw, raise_on_error=False)
    assert attempted >= 4 and failed == 0


def test_fused_adamw_updates_with_the_fused_kernels():
    """The step's graph holds one fused Adam kernel per variable and one decay kernel per decayed one
    (the comparisons above would also pass on Keras' own path)."""
    import tensorflow as tf

    model = _tiny_vit()
    optimizer = make_optimizer(model, 1e-3, total_steps=10, weight_decay=0.1)
    variables = model.trainable_variables
    optimizer.build(variables)
    gradients = [tf.ones_like(v) for v in variables]
    graph = tf.function(lambda: optimizer.apply(gradients, variables)).get_concrete_function().graph
    op_types = [op.type for op in graph.get_operations()]
    assert op_types.count("ResourceApplyAdam") == len(variables)
    assert op_types.count("ResourceApplyGradientDescent") == len(_decayed(optimizer, model))
    assert op_types.count("L2Loss") == len(variables)
