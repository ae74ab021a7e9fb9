"""Attention as pictures: per-layer/per-head maps and attention rollout, upsampled to the image.

All maps here start on the patch grid `[B, rows, cols]` (one value per patch) and
are upsampled to the image `[B, height, width]` with `upsample`.
"""

import numpy as np
import tensorflow as tf

from keras_vit.attention import HEAD_FUSIONS, attention_maps, attention_rollout

INTERPOLATIONS = ("nearest", "bilinear")


def check_vit(model):
    """Raises unless `model` is a `keras_vit.ViT` (the explanations need its layers)."""
    from keras_vit.model import ViT

    if not isinstance(model, ViT):
        raise TypeError(f"explanations need a keras_vit.ViT model, got {type(model).__name__}")


def upsample(maps, image_size, interpolation="bilinear"):
    """Resizes patch-grid maps `[B, rows, cols]` to the image, `[B, height, width]` float32.

    Uses half-pixel centres (`tf.image.resize`), so a patch's value lands on that
    patch's pixels; `"nearest"` with a patch size that divides the image repeats
    each value over exactly its patch. Bilinear keeps values within the input's
    range (each pixel is a convex combination of patch values).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    maps = np.asarray(maps, dtype="float32")
    if maps.ndim != 3:
        raise ValueError(f"maps must be [batch, rows, cols], got shape {maps.shape}")
    height, width = (int(s) for s in image_size)
    if maps.shape[1:] == (height, width):
        return maps
    resized = tf.image.resize(maps[..., None], (height, width), method=interpolation, antialias=False)
    return resized.numpy()[..., 0].astype("float32")


def token_map(attention, patch_grid, has_class_token=True):
    """Attention over the patches, `[..., T, T]` -> `[..., rows, cols]`.

    With a class token: the class token's row (what it attends to) over the patch
    columns. Without one: the attention each patch receives, averaged over queries.
    """
    attention = np.asarray(attention, dtype="float32")
    rows, cols = patch_grid
    prefix = int(has_class_token)
    if attention.shape[-1] != prefix + rows * cols:
        raise ValueError(
            f"attention has {attention.shape[-1]} tokens, patch grid {tuple(patch_grid)} needs "
            f"{prefix + rows * cols}"
        )
    received = attention[..., 0, prefix:] if has_class_token else attention.mean(axis=-2)
    return received.reshape(*received.shape[:-1], rows, cols)


def _fuse_heads(attention, head_fusion):
    # attention: [..., h, T, T] -> [..., T, T]
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    return getattr(attention, head_fusion)(axis=-3)


def layer_head_maps(model, images, interpolation="bilinear", attention=None):
    """Every block's and head's attention over the patches, upsampled to the image.

    Args:
        model: a `keras_vit.ViT`.
        images: raw 0..255 images `[B, H, W, C]`.
        attention: optional precomputed `[L, B, h, T, T]` (from `attention_maps`).

    Returns:
        float32 `[B, num_layers, num_heads, H, W]`.
    """
    check_vit(model)
    if attention is None:
        attention = attention_maps(model, images)
    grid_maps = token_map(attention, model.patch_grid, model.use_class_token)  # [L, B, h, r, c]
    num_layers, batch, heads, rows, cols = grid_maps.shape
    flat = grid_maps.transpose(1, 0, 2, 3, 4).reshape(-1, rows, cols)
    image_maps = upsample(flat, model.image_size, interpolation)
    return image_maps.reshape(batch, num_layers, heads, *model.image_size)


def layer_attention_maps(
    model, images, layer=-1, head=None, head_fusion="mean", interpolation="bilinear", attention=None
):
    """One block's attention over the patches (by default the class token's last-layer attention).

    Args:
        layer: block index (negative counts from the end).
        head: head index, or None to fuse the heads with `head_fusion`.
        head_fusion: `"mean"`, `"max"` or `"min"` over heads.

    Returns:
        float32 `[B, H, W]`.
    """
    check_vit(model)
    num_layers, num_heads = model.num_layers, model.num_heads
    if not -num_layers <= int(layer) < num_layers:
        raise ValueError(f"layer must be in [{-num_layers}, {num_layers}), the model has {num_layers} blocks; got {layer}")
    if head is not None and not -num_heads <= int(head) < num_heads:
        raise ValueError(f"head must be in [{-num_heads}, {num_heads}), the model has {num_heads} heads; got {head}")
    if attention is None:
        attention = attention_maps(model, images)
    layer_attention = np.asarray(attention[int(layer)], dtype="float32")  # [B, h, T, T]
    if head is None:
        layer_attention = _fuse_heads(layer_attention, head_fusion)
    else:
        layer_attention = layer_attention[:, int(head)]
    grid = token_map(layer_attention, model.patch_grid, model.use_class_token)
    return upsample(grid, model.image_size, interpolation)


def rollout_maps(model, images, head_fusion="mean", interpolation="bilinear", attention=None):
    """Attention rollout (Abnar & Zuidema 2020) of each image, upsampled to the image.

    The patch-grid map is the class token's row of the rollout matrix over the
    patches (see `keras_vit.attention.attention_rollout`).

    Returns:
        float32 `[B, H, W]` map and the `[B, T, T]` rollout matrix (rows sum to 1).
    """
    check_vit(model)
    if attention is None:
        attention = attention_maps(model, images)
    grid, matrix = attention_rollout(
        attention, model.patch_grid, head_fusion=head_fusion, has_class_token=model.use_class_token
    )
    return upsample(grid, model.image_size, interpolation), matrix
