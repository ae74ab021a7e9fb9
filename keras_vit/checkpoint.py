"""Official google-research ViT checkpoints (`.npz`): load them into `ViT`, write them back.

The official checkpoints (ImageNet-21k and AugReg ViT-Ti/S/B/L/H) are the flat
parameters of the Flax model in `vit_jax/models_vit.py`, saved with `np.savez`:

    embedding/kernel                 [pH, pW, C, D]  patch-embedding convolution
    embedding/bias                   [D]
    cls                              [1, 1, D]       only with a class token
    Transformer/posembed_input/pos_embedding        [1, (1 +) rows * cols, D]
    Transformer/encoderblock_{i}/LayerNorm_0/{scale,bias}            [D]
    Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/
        {query,key,value}/kernel     [D, heads, head_dim]
        {query,key,value}/bias       [heads, head_dim]
        out/kernel                   [heads, head_dim, D]
        out/bias                     [D]
    Transformer/encoderblock_{i}/LayerNorm_2/{scale,bias}            [D]
    Transformer/encoderblock_{i}/MlpBlock_3/Dense_0/{kernel,bias}    [D, mlp_dim], [mlp_dim]
    Transformer/encoderblock_{i}/MlpBlock_3/Dense_1/{kernel,bias}    [mlp_dim, D], [D]
    Transformer/encoder_norm/{scale,bias}                            [D]
    pre_logits/{kernel,bias}         [D, R], [R]     only with a representation layer
    head/{kernel,bias}               [D or R, num_classes], [num_classes]

The official models take pixels scaled to [-1, 1]; a loaded `ViT` takes raw
0..255 pixels and scales them that way inside (`input_scaling="symmetric"`).
"""

import numbers
import os
import re
import warnings
import zipfile

import keras
import numpy as np

from keras_vit.files import atomic_path
from keras_vit.layers.patch_encoder import resample_position_embedding
from keras_vit.model import ViT

POS_EMBEDDING = "Transformer/posembed_input/pos_embedding"
# Some checkpoints are whole training states with the parameters under a prefix
# (the same prefixes timm's loader accepts).
PARAM_PREFIXES = ("", "opt/target/", "params/")
# Configuration the checkpoint fixes: overriding one with another value is an error.
ARCHITECTURE_FIELDS = (
    "patch_size",
    "channels",
    "hidden_dim",
    "num_layers",
    "num_heads",
    "mlp_dim",
    "use_class_token",
)

_BLOCK = "Transformer/encoderblock_{}/"
_ATTENTION = "MultiHeadDotProductAttention_1/"
_BLOCK_PATTERN = re.compile(r"^Transformer/encoderblock_(\d+)/")


def read_checkpoint(path):
    """Reads an official ViT `.npz` into `{name: float32 array}`, names without any prefix.

    Raises FileNotFoundError for a missing file and ValueError for a file that is
    not an `.npz` archive or holds no ViT parameters.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"Checkpoint {path} is a directory; expected an official ViT .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path} is not an .npz checkpoint ({error.__class__.__name__}: {error}); "
            f"expected an official ViT .npz file"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path} holds a single .npy array of shape {getattr(archive, 'shape', '?')}, "
            f"not an .npz checkpoint of named parameters"
        )
    with archive:
        names = list(archive.files)
        prefix = next((p for p in PARAM_PREFIXES if f"{p}embedding/kernel" in names), None)
        if prefix is None:
            shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise ValueError(
                f"{path} is not a ViT checkpoint: it has no 'embedding/kernel' parameter "
                f"(found {len(names)} arrays: {shown or 'none'})"
            )
        params = {}
        for name in names:
            if not name.startswith(prefix):
                continue  # optimizer state and the like beside the parameters
            try:
                value = archive[name]
            except ValueError as error:  # object arrays need pickle, refused on purpose
                raise ValueError(f"{path}: parameter {name!r} cannot be read safely: {error}") from None
            if value.dtype.kind != "f":
                raise ValueError(
                    f"{path}: parameter {name!r} has dtype {value.dtype}; expected floating point"
                )
            params[name[len(prefix) :]] = value.astype("float32", copy=False)
    return params


def _shape(params, name):
    if name not in params:
        raise ValueError(f"Checkpoint is missing parameter {name!r}")
    return tuple(params[name].shape)


def _require_rank(params, name, rank, layout):
    shape = _shape(params, name)
    if len(shape) != rank:
        raise ValueError(f"Checkpoint parameter {name!r} has shape {shape}; expected {layout}")
    return shape


def checkpoint_config(params):
    """Infers the `ViT` arguments of a checkpoint from its parameter shapes.

    Args:
        params: `{name: array}` as returned by `read_checkpoint`.

    Returns:
        dict with `image_size`, `patch_size`, `channels`, `hidden_dim`, `num_layers`,
        `num_heads`, `mlp_dim`, `use_class_token`, `pooling`, `representation_size`,
        `num_classes` (0 without a head), `input_scaling` and `layer_norm_epsilon`.
    """
    if "conv_root/kernel" in params:
        raise ValueError(
            "Hybrid ResNet+ViT checkpoints (R50+ViT, R26+S/32 ...) are not supported; "
            "expected a plain ViT checkpoint"
        )
    if "Transformer/encoderblock/LayerNorm_0/scale" in params or "pos_embedding" in params:
        raise ValueError(
            "This is a big_vision checkpoint (stacked 'Transformer/encoderblock/...' parameters); "
            "expected the google-research/vision_transformer layout with "
            "'Transformer/encoderblock_{i}/...'"
        )
    patch_h, patch_w, channels, hidden_dim = _require_rank(
        params, "embedding/kernel", 4, "[patch_height, patch_width, channels, hidden_dim]"
    )
    blocks = sorted({int(m.group(1)) for m in map(_BLOCK_PATTERN.match, params) if m})
    if not blocks:
        raise ValueError("Checkpoint has no 'Transformer/encoderblock_{i}/...' parameters")
    if blocks != list(range(len(blocks))):
        missing = sorted(set(range(blocks[-1] + 1)) - set(blocks))
        raise ValueError(
            f"Checkpoint encoder blocks are not numbered 0..{blocks[-1]}: "
            f"missing encoderblock_{missing[0]}"
        )
    attention = _BLOCK.format(0) + _ATTENTION
    _, num_heads, _ = _require_rank(
        params, attention + "query/kernel", 3, "[hidden_dim, num_heads, head_dim]"
    )
    _, mlp_dim = _require_rank(
        params, _BLOCK.format(0) + "MlpBlock_3/Dense_0/kernel", 2, "[hidden_dim, mlp_dim]"
    )
    use_class_token = "cls" in params
    grid = _position_grid(params)
    representation_size = None
    if "pre_logits/kernel" in params:
        representation_size = _require_rank(params, "pre_logits/kernel", 2, "[in, representation_size]")[1]
    num_classes = 0
    if "head/kernel" in params:
        num_classes = _require_rank(params, "head/kernel", 2, "[in, num_classes]")[1]
    return {
        "image_size": (grid[0] * patch_h, grid[1] * patch_w) if grid else None,
        "patch_size": (patch_h, patch_w),
        "channels": channels,
        "hidden_dim": hidden_dim,
        "num_layers": len(blocks),
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
        "use_class_token": use_class_token,
        "pooling": "token" if use_class_token else "gap",
        "representation_size": representation_size,
        "num_classes": num_classes,
        "input_scaling": "symmetric",
        "layer_norm_epsilon": 1e-6,  # Flax's LayerNorm default
    }


def _position_grid(params):
    """The `(rows, cols)` of the checkpoint's position grid, or None where it is not square."""
    num_tokens = _require_rank(params, POS_EMBEDDING, 3, "[1, tokens, hidden_dim]")[1]
    num_patches = num_tokens - int("cls" in params)
    side = int(round(max(num_patches, 0) ** 0.5))
    # Every official checkpoint has a square grid; others need image_size from the caller.
    return (side, side) if side > 0 and side * side == num_patches else None


def check_architecture(config, expected, source):
    """Refuses a checkpoint (its `checkpoint_config`) whose architecture differs from `expected`
    (a preset's arguments), naming each field that differs."""
    wrong = [f"{field}={config[field]!r} where {expected[field]!r} was expected" for field in ARCHITECTURE_FIELDS
             if field in expected and not _same(expected[field], config[field])]
    if wrong:
        raise ValueError(f"{source} is not the expected architecture: it has {', '.join(wrong)}")


def _same(value, expected):
    if isinstance(expected, tuple):
        value = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    return value == expected


def load_checkpoint(path, num_classes=None, image_size=None, interpolation="bilinear", *, architecture=None,
                    source=None, **overrides):
    """Builds a `ViT` from an official google-research ViT `.npz` checkpoint.

    The configuration comes from the parameter shapes. The model takes raw 0..255
    pixels `[B, H, W, C]` and scales them to [-1, 1] inside, so its logits are the
    checkpoint's.

    Args:
        path: the `.npz` file.
        num_classes: classes of the head; another number than the checkpoint's gives a
            fresh zero-initialized head (for fine-tuning). Default: the checkpoint's.
        image_size: int or `(height, width)`; another size than the checkpoint's
            resamples the position-embedding grid (class position kept).
        interpolation: `"bilinear"` (as the original fine-tuning code) or `"bicubic"`.
        architecture: a preset's arguments the checkpoint must match (`check_architecture`).
        source: how errors name the file (default: its path).
        **overrides: other `ViT` arguments (dropout_rate, drop_path_rate,
            include_top, classifier_activation, dtype, name ...). `representation_size=None`
            drops the checkpoint's pre-logits layer (and re-initializes the head).

    Returns:
        a `ViT` holding the checkpoint's weights.
    """
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    path = os.fspath(path)
    params = read_checkpoint(path)
    config = checkpoint_config(params)
    if architecture is not None:
        check_architecture(config, architecture, source or path)
    old_grid = _position_grid(params)

    if overrides.get("stem_channels"):
        raise ValueError(
            f"stem_channels={overrides['stem_channels']!r} does not match the checkpoint, whose patch "
            "embedding is linear (no convolutional stem); leave stem_channels unset"
        )
    for field in ARCHITECTURE_FIELDS:
        if field in overrides and not _same(overrides[field], config[field]):
            raise ValueError(
                f"{field}={overrides[field]!r} does not match the checkpoint, "
                f"which has {field}={config[field]!r}"
            )
    drop_pre_logits = False
    if "representation_size" in overrides:
        wanted = overrides.pop("representation_size")
        if wanted is None:
            drop_pre_logits = config["representation_size"] is not None
            config["representation_size"] = None
        elif wanted != config["representation_size"]:
            raise ValueError(
                f"representation_size={wanted!r} does not match the checkpoint, which has "
                f"representation_size={config['representation_size']!r} (None drops it)"
            )
    if image_size is None:
        if old_grid is None:
            raise ValueError(
                f"Cannot infer the image size: the position embedding of shape "
                f"{tuple(params[POS_EMBEDDING].shape)} is not a square grid; pass image_size"
            )
        image_size = config["image_size"]
    config["image_size"] = image_size
    include_top = overrides.get("include_top", True)
    if num_classes is None:
        num_classes = config["num_classes"]
        if num_classes == 0:
            # A checkpoint without a head is a feature extractor unless given classes.
            if include_top and "include_top" in overrides:
                raise ValueError("The checkpoint has no head; pass num_classes to add one")
            include_top = False
            num_classes = 1
    config["num_classes"] = num_classes
    config["include_top"] = include_top
    config.update({k: v for k, v in overrides.items() if k not in ("include_top",)})

    model = ViT(**config)

    if old_grid is None:
        # Non-square token count: only usable when the caller's grid holds it exactly.
        if model.num_patches != params[POS_EMBEDDING].shape[1] - int(model.use_class_token):
            raise ValueError(
                f"Cannot resample the position embedding of shape "
                f"{tuple(params[POS_EMBEDDING].shape)}: its grid is not square"
            )
        old_grid = model.patch_grid
    params = dict(params)
    if tuple(old_grid) != tuple(model.patch_grid):
        params[POS_EMBEDDING] = resample_position_embedding(
            params[POS_EMBEDDING], old_grid, model.patch_grid, model.use_class_token, interpolation
        )
    skip = set()
    if drop_pre_logits:
        skip |= {"pre_logits/kernel", "pre_logits/bias"}
    head_kept = (
        model.include_top
        and not drop_pre_logits
        and "head/kernel" in params
        and params["head/kernel"].shape[1] == model.num_classes
    )
    if not head_kept:
        skip |= {"head/kernel", "head/bias"}
    set_checkpoint_params(model, params, skip=skip, source=path)
    return model


def model_params(model):
    """Returns a `ViT`'s weights as `{name: float32 array}` in the official checkpoint layout."""
    _check_vit(model)
    if model.stem_channels:
        raise ValueError(
            f"the official checkpoint layout has a linear patch embedding; a hybrid ViT (stem_channels="
            f"{list(model.stem_channels)}) cannot be written in it: save it as a .keras file"
        )
    patch_h, patch_w = model.patch_size
    dim, heads = model.hidden_dim, model.num_heads
    head_dim = dim // heads
    encoder = model.get_layer("patch_encoder")
    out = {
        "embedding/kernel": _np(encoder.projection.kernel).reshape(patch_h, patch_w, model.channels, dim),
        "embedding/bias": _np(encoder.projection.bias),
        POS_EMBEDDING: _np(encoder.position_embedding),
    }
    if model.use_class_token:
        out["cls"] = _np(encoder.class_token)
    for i, block in enumerate(model.blocks):
        prefix = _BLOCK.format(i)
        attention = prefix + _ATTENTION
        out[prefix + "LayerNorm_0/scale"] = _np(block.attention_norm.gamma)
        out[prefix + "LayerNorm_0/bias"] = _np(block.attention_norm.beta)
        # Our fused qkv kernel [D, 3D] is [query | key | value], each [D, heads * head_dim].
        qkv_kernel, qkv_bias = _np(block.qkv.kernel), _np(block.qkv.bias)
        for j, part in enumerate(("query", "key", "value")):
            columns = slice(j * dim, (j + 1) * dim)
            out[attention + f"{part}/kernel"] = qkv_kernel[:, columns].reshape(dim, heads, head_dim)
            out[attention + f"{part}/bias"] = qkv_bias[columns].reshape(heads, head_dim)
        out[attention + "out/kernel"] = _np(block.attention_output.kernel).reshape(heads, head_dim, dim)
        out[attention + "out/bias"] = _np(block.attention_output.bias)
        out[prefix + "LayerNorm_2/scale"] = _np(block.mlp_norm.gamma)
        out[prefix + "LayerNorm_2/bias"] = _np(block.mlp_norm.beta)
        for j, dense in enumerate((block.mlp_dense_1, block.mlp_dense_2)):
            out[prefix + f"MlpBlock_3/Dense_{j}/kernel"] = _np(dense.kernel)
            out[prefix + f"MlpBlock_3/Dense_{j}/bias"] = _np(dense.bias)
    norm = model.get_layer("encoder_norm")
    out["Transformer/encoder_norm/scale"] = _np(norm.gamma)
    out["Transformer/encoder_norm/bias"] = _np(norm.beta)
    for name in ("pre_logits", "head"):
        layer = _find_layer(model, name)
        if layer is not None:
            out[f"{name}/kernel"] = _np(layer.kernel)
            out[f"{name}/bias"] = _np(layer.bias)
    return out


def set_checkpoint_params(model, params, skip=(), source="checkpoint"):
    """Assigns official-layout parameters `{name: array}` to a `ViT`.

    Every parameter the model has (less `skip`) must be present with the official
    shape; a missing, extra or misshapen one is a ValueError naming it (and both shapes).
    """
    expected = model_params(model)
    skip = set(skip)
    for name, value in expected.items():
        if name in skip:
            continue
        if name not in params:
            raise ValueError(
                f"{source} is missing parameter {name!r} (expected shape {value.shape})"
            )
        if tuple(params[name].shape) != value.shape:
            raise ValueError(
                f"{source}: parameter {name!r} has shape {tuple(params[name].shape)}; "
                f"the model needs {value.shape}"
            )
    extra = sorted(set(params) - set(expected) - skip)
    if extra:
        shown = ", ".join(repr(n) for n in extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise ValueError(
            f"{source} has {len(extra)} parameter(s) this model does not use: {shown}"
        )

    def get(name):
        return None if name in skip else np.asarray(params[name], dtype="float32")

    def assign(variable, value):
        if value is not None:
            variable.assign(value.reshape(tuple(variable.shape)))

    dim = model.hidden_dim
    encoder = model.get_layer("patch_encoder")
    assign(encoder.projection.kernel, get("embedding/kernel"))
    assign(encoder.projection.bias, get("embedding/bias"))
    assign(encoder.position_embedding, get(POS_EMBEDDING))
    if model.use_class_token:
        assign(encoder.class_token, get("cls"))
    for i, block in enumerate(model.blocks):
        prefix = _BLOCK.format(i)
        attention = prefix + _ATTENTION
        assign(block.attention_norm.gamma, get(prefix + "LayerNorm_0/scale"))
        assign(block.attention_norm.beta, get(prefix + "LayerNorm_0/bias"))
        parts = ("query", "key", "value")
        assign(
            block.qkv.kernel,
            np.concatenate([get(attention + f"{p}/kernel").reshape(dim, dim) for p in parts], axis=1),
        )
        assign(block.qkv.bias, np.concatenate([get(attention + f"{p}/bias").reshape(dim) for p in parts]))
        assign(block.attention_output.kernel, get(attention + "out/kernel"))
        assign(block.attention_output.bias, get(attention + "out/bias"))
        assign(block.mlp_norm.gamma, get(prefix + "LayerNorm_2/scale"))
        assign(block.mlp_norm.beta, get(prefix + "LayerNorm_2/bias"))
        for j, dense in enumerate((block.mlp_dense_1, block.mlp_dense_2)):
            assign(dense.kernel, get(prefix + f"MlpBlock_3/Dense_{j}/kernel"))
            assign(dense.bias, get(prefix + f"MlpBlock_3/Dense_{j}/bias"))
    norm = model.get_layer("encoder_norm")
    assign(norm.gamma, get("Transformer/encoder_norm/scale"))
    assign(norm.beta, get("Transformer/encoder_norm/bias"))
    for name in ("pre_logits", "head"):
        layer = _find_layer(model, name)
        if layer is not None:
            assign(layer.kernel, get(f"{name}/kernel"))
            assign(layer.bias, get(f"{name}/bias"))


def save_checkpoint(model, path):
    """Writes a `ViT`'s weights to `path` in the official `.npz` layout, atomically.

    The layout stores no input scaling: loading the file back assumes pixels scaled
    to [-1, 1] inside the model, as the official checkpoints do.
    """
    params = model_params(model)
    if model.input_scaling != "symmetric" or model.mean is not None:
        warnings.warn(
            f"This model scales inputs with input_scaling={model.input_scaling!r}"
            f"{' and mean/std' if model.mean is not None else ''}; the .npz layout does not "
            f"record it, and load_checkpoint assumes 'symmetric' ([-1, 1]) scaling",
            stacklevel=2,
        )
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Folder {folder} does not exist; cannot write {path}")
    with atomic_path(path, ".npz") as temp_path, open(temp_path, "wb") as file:
        # A file object keeps np.savez from appending ".npz" to the name.
        np.savez(file, **params)
    return path


def _check_vit(model):
    if not isinstance(model, ViT):
        raise TypeError(f"Expected a keras_vit.ViT, got {type(model).__name__}")


def _find_layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _np(variable):
    return np.array(keras.ops.convert_to_numpy(variable), dtype="float32")
