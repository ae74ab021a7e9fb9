"""AdamW with a warm-up + cosine schedule, as ViTs are trained."""

import math

import keras
from keras import ops

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
                   time_progress=None):
    """AdamW whose weight decay skips biases, LayerNorm, the class token and positions.

    `ema` > 0 keeps an exponential moving average of the weights with that momentum
    (Keras' `use_ema`); `keras.callbacks.SwapEMAWeights` then evaluates and saves it.
    With a `time_progress` variable (a time budget), the schedule runs over progress
    (`ProgressWarmupCosine`) instead of steps.
    """
    if time_progress is not None:
        schedule = ProgressWarmupCosine(
            learning_rate, total_steps, warmup_steps / max(int(total_steps), 1), time_progress
        )
    else:
        schedule = warmup_cosine(learning_rate, total_steps, warmup_steps)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        global_clipnorm=clipnorm or None,
        use_ema=bool(ema),
        ema_momentum=float(ema) if ema else 0.99,
    )
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer


def no_decay_variables(model):
    """Biases, LayerNorm gamma/beta (all 1-D) and the class token / position embedding."""
    return [
        v for v in model.trainable_variables
        if len(v.shape) <= 1 or any(name in v.path for name in NO_DECAY_NAMES)
    ]
