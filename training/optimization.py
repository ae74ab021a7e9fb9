"""AdamW with a warm-up + cosine schedule, as ViTs are trained."""

import keras

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


def make_optimizer(model, learning_rate, total_steps, warmup_steps=0, weight_decay=0.05, clipnorm=1.0):
    """AdamW whose weight decay skips biases, LayerNorm, the class token and positions."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=warmup_cosine(learning_rate, total_steps, warmup_steps),
        weight_decay=weight_decay,
        global_clipnorm=clipnorm or None,
    )
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer


def no_decay_variables(model):
    """Biases, LayerNorm gamma/beta (all 1-D) and the class token / position embedding."""
    return [
        v for v in model.trainable_variables
        if len(v.shape) <= 1 or any(name in v.path for name in NO_DECAY_NAMES)
    ]
