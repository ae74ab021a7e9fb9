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
