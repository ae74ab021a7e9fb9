"""AdamW (training from scratch) or momentum SGD (fine-tuning) with a warm-up + cosine schedule, as ViTs are trained."""

import math

import keras
from keras import ops

from keras_vit.training.choices import OPTIMIZERS
from keras_vit.training.fused_adamw import FusedAdamW

# The classification layer of `keras_vit.ViT` (keras_vit/model.py names it so).
HEAD_LAYER = "head"

# Variables that get no weight decay besides biases and LayerNorm scales/offsets.
NO_DECAY_NAMES = ("class_token", "position_embedding")


def warmup_cosine(learning_rate, total_steps, warmup_steps):
    """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then cosine decay to 0."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(max(int(warmup_steps), 0), total_steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


@keras.saving.register_keras_serializable(package="keras_vit")
class ProgressWarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then cosine decay to 0 over training *progress* p in [0, 1].

    p = max(step / total_steps, time_progress), where `time_progress` is a variable that
    `training.callbacks.TimeBudget` advances from the training time spent over the
    budget. A run with a time budget thus anneals fully however fast the machine turns
    out to be (the steps bound it if it is faster than expected). Keras' schedules only
    see the step count, hence this class.

    Args:
        learning_rate: peak learning rate, reached at p = `warmup_fraction`.
        total_steps: steps of the whole run (`epochs * steps_per_epoch`).
        warmup_fraction: share of the run spent warming up, in [0, 1).
        time_progress: a scalar float32 variable for the time share (a new one if None).
    """

    def __init__(self, learning_rate, total_steps, warmup_fraction=0.0, time_progress=None):
        self.learning_rate = float(learning_rate)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_fraction = min(max(float(warmup_fraction), 0.0), 0.999)
        if time_progress is None:
            time_progress = keras.Variable(0.0, dtype="float32", trainable=False, name="time_progress")
        self.time_progress = time_progress

    def __call__(self, step):
        progress = ops.maximum(ops.cast(step, "float32") / self.total_steps, ops.convert_to_tensor(self.time_progress))
        progress = ops.clip(progress, 0.0, 1.0)
        warm = self.warmup_fraction
        rising = self.learning_rate * progress / warm if warm else self.learning_rate
        decay_progress = ops.clip((progress - warm) / (1.0 - warm), 0.0, 1.0)
        decaying = 0.5 * self.learning_rate * (1.0 + ops.cos(math.pi * decay_progress))
        return ops.where(progress < warm, rising, decaying)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "warmup_fraction": self.warmup_fraction}


def make_optimizer(model, learning_rate, total_steps, warmup_steps=0, weight_decay=0.05, clipnorm=1.0, ema=0.0,
                   time_progress=None, optimizer="adamw", momentum=0.9, decay_head=True):
    """AdamW (`FusedAdamW`: Keras' update in fused kernels) or momentum SGD on a warm-up +
    cosine schedule, with global-norm gradient clipping.

    Weight decay is decoupled (`w -= lr * weight_decay * w` each step, Keras' `weight_decay`
    argument, for SGD too) and skips biases, LayerNorm, the class token and positions;
    with `decay_head=False` also the classification head (a fine-tuned model's new
    zero-initialized head: decay would only hold it back).

    Args:
        model: the model whose `trainable_variables` will be trained.
        learning_rate: peak learning rate, reached after `warmup_steps`.
        total_steps: steps of the whole run; the cosine reaches 0 there.
        warmup_steps: steps of linear warm-up from 0.
        weight_decay: decoupled decay rate (0 turns it off).
        clipnorm: global gradient-norm clip (0 or None turns it off).
        ema: momentum of an exponential moving average of the weights (0 turns it off;
            Keras' `use_ema`, which `keras.callbacks.SwapEMAWeights` evaluates and saves).
        time_progress: a scalar variable of a time budget's progress: the schedule then
            runs over progress (`ProgressWarmupCosine`) instead of steps.
        optimizer: "adamw" (training from scratch) or "sgd" (Keras' `SGD` with heavy-ball
            momentum, `nesterov=False`: the ViT paper's fine-tuning, Appendix B.1.1).
        momentum: SGD's momentum, in [0, 1).
        decay_head: False excludes the head (layer "head") from weight decay.

    Returns:
        a Keras optimizer.

    Keras' SGD keeps `m = momentum * m - lr * g; w += m` (lr inside the velocity), which
    with a changing learning rate differs slightly from optax's `v = momentum * v + g;
    w -= lr * v` in the paper's code; both are heavy-ball momentum.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be {' or '.join(map(repr, OPTIMIZERS))}, got {optimizer!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if time_progress is not None:
        schedule = ProgressWarmupCosine(
            learning_rate, total_steps, warmup_steps / max(int(total_steps), 1), time_progress
        )
    else:
        schedule = warmup_cosine(learning_rate, total_steps, warmup_steps)
    common = dict(
        learning_rate=schedule,
        global_clipnorm=clipnorm or None,
        use_ema=bool(ema),
        ema_momentum=float(ema) if ema else 0.99,
    )
    if optimizer == "sgd":
        # None rather than 0: Keras then skips the decay pass over every weight.
        result = keras.optimizers.SGD(momentum=float(momentum), nesterov=False,
                                      weight_decay=weight_decay or None, **common)
    else:
        result = FusedAdamW(weight_decay=weight_decay, **common)
    if result.weight_decay is not None:
        result.exclude_from_weight_decay(var_list=no_decay_variables(model, decay_head=decay_head))
    return result


def no_decay_variables(model, decay_head=True):
    """Biases, LayerNorm gamma/beta (all 1-D), the class token / position embedding and,
    with `decay_head=False`, the head's kernel and bias."""
    head = {id(v) for v in head_variables(model)} if not decay_head else set()
    return [
        v for v in model.trainable_variables
        if len(v.shape) <= 1 or any(name in v.path for name in NO_DECAY_NAMES) or id(v) in head
    ]


def head_variables(model):
    """The trainable variables of the model's classification layer ("head"); [] without one."""
    try:
        layer = model.get_layer(HEAD_LAYER)
    except ValueError:  # include_top=False, or not a keras_vit.ViT
        return []
    return list(layer.trainable_variables)
