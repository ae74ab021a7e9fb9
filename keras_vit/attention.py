"""Attention weights of every block, and attention rollout (Abnar & Zuidema 2020)."""

import keras
import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")


class AttentionModel(keras.Model):
    """Maps images to each block's attention weights, sharing a `ViT`'s layers.

    A subclassed model rather than a functional one: Keras' functional graph keeps
    one output structure per shared layer, and the ViT's blocks already return a
    single tensor there, so a second functional graph that asks them for their
    attention too cannot be built.

    Output: a list of `num_layers` tensors `[B, num_heads, T, T]`.
    """

    def __init__(self, vit, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{vit.name}_attention"), **kwargs)
        self.vit = vit

    def call(self, images, training=False):
        _, attention = self.vit.tokens(images, return_attention_scores=True, training=training)
        return attention


def attention_model(model):
    """A model sharing `model`'s weights that maps images to each block's attention.

    Output: a list of `num_layers` tensors `[B, num_heads, T, T]` (T = tokens,
    class token first when the model has one).
    """
    return AttentionModel(model)


def attention_maps(model, images, batch_size=32):
    """Each block's attention weights for a batch of images, as NumPy `[L, B, h, T, T]`."""
    outputs = attention_model(model).predict(np.asarray(images), batch_size=batch_size, verbose=0)
    return np.stack([np.asarray(o) for o in outputs])


def attention_rollout(attention, patch_grid, head_fusion="mean", has_class_token=True):
    """Attention rollout: how much each patch flows into the output token.

    Each layer's attention is fused over heads, mixed with the residual identity
    (`0.5 * A + 0.5 * I`, rows renormalized) and the layers are multiplied from
    the first to the last.

    Args:
        attention: `[L, B, h, T, T]` array (or a list of `[B, h, T, T]`).
        patch_grid: `(rows, cols)` of the patches.
        head_fusion: `"mean"`, `"max"` or `"min"` over heads.
        has_class_token: token 0 is the class token; the map is its row. Without
            one, the map is the mean over all output tokens.

    Returns:
        `[B, rows, cols]` map of the rolled-out attention, and the full `[B, T, T]`
        rollout matrix (rows sum to 1).
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    attention = np.asarray(attention, dtype="float64")
    if attention.ndim != 5 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be [layers, batch, heads, T, T], got {attention.shape}")
    rows, cols = patch_grid
    num_tokens = attention.shape[-1]
    num_prefix = int(has_class_token)
    if num_tokens != num_prefix + rows * cols:
        raise ValueError(
            f"attention has {num_tokens} tokens, patch grid {tuple(patch_grid)} needs "
            f"{num_prefix + rows * cols}"
        )
    fused = getattr(attention, head_fusion)(axis=2)  # [L, B, T, T]
    identity = np.eye(num_tokens)
    rollout = np.broadcast_to(identity, fused.shape[1:]).copy()
    for layer_attention in fused:
        mixed = 0.5 * layer_attention + 0.5 * identity
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    if has_class_token:
        flow = rollout[:, 0, num_prefix:]
    else:
        flow = rollout.mean(axis=1)
    return flow.reshape(-1, rows, cols).astype("float32"), rollout.astype("float32")
