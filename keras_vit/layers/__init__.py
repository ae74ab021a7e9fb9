"""Keras layers of the Vision Transformer."""

from keras_vit.layers.conv_stem import ConvStem
from keras_vit.layers.patch_encoder import PatchEncoder, resample_position_embedding
from keras_vit.layers.patches import Patches, unpatchify
from keras_vit.layers.pooling import TokenPooling
from keras_vit.layers.transformer_block import DropPath, TransformerBlock

__all__ = [
    "ConvStem",
    "DropPath",
    "PatchEncoder",
    "Patches",
    "TokenPooling",
    "TransformerBlock",
    "resample_position_embedding",
    "unpatchify",
]

# Imported first (`from keras_vit.layers import Patches`), the layers defer loading the rest of the
# library (keras_vit/__init__.py) until they are defined: every layer is then registered.
from keras_vit import _load_library  # noqa: E402

_load_library()
