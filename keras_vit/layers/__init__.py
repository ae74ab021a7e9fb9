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
