"""Reduce the token sequence to one vector per image."""

import keras
from keras import ops

from keras_vit.choices import POOLING_MODES


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Picks the class token (`"token"`) or averages the patch tokens (`"gap"`).

    Shapes: `[B, T, D]` -> `[B, D]`.

    Args:
        mode: `"token"` or `"gap"`.
        num_prefix_tokens: tokens before the patch tokens (the class token), which
            global average pooling leaves out.
    """

    def __init__(self, mode="token", num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {mode!r}")
        if mode == "token" and num_prefix_tokens < 1:
            raise ValueError("pooling='token' needs a class token (use_class_token=True)")
        self.mode = mode
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, tokens):
        if self.mode == "token":
            return tokens[:, 0]
        return ops.mean(tokens[:, self.num_prefix_tokens :], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "num_prefix_tokens": self.num_prefix_tokens})
        return config
