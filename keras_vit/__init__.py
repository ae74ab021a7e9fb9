"""keras-vit: the Vision Transformer for Keras 3 (TensorFlow backend)."""

from keras_vit import layers
from keras_vit.checkpoint import load_checkpoint, save_checkpoint
from keras_vit.attention import attention_maps, attention_model, attention_rollout
from keras_vit.layers import PatchEncoder, Patches, TokenPooling, TransformerBlock, unpatchify
from keras_vit.model import ViT
from keras_vit.presets import PRESETS, get_preset
from keras_vit.test_time_augmentation import flip_averaged

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "PatchEncoder",
    "Patches",
    "TokenPooling",
    "TransformerBlock",
    "ViT",
    "attention_maps",
    "attention_model",
    "attention_rollout",
    "flip_averaged",
    "get_preset",
    "load_checkpoint",
    "save_checkpoint",
    "layers",
    "unpatchify",
]
