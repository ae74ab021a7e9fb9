"""The model library's named choices as plain data, without TensorFlow.

The command line lists them in its help and argparse `choices=` before any TensorFlow is
imported (importing it takes seconds); the layers and the model read them from here too, so
each list is written once.
"""

# How the transformer's tokens become one vector per image (keras_vit.layers.TokenPooling).
POOLING_MODES = ("token", "gap")

# How raw 0..255 pixels are scaled inside the model: (scale, offset).
INPUT_SCALINGS = {
    "unit": (1.0 / 255.0, 0.0),  # [0, 1]
    "symmetric": (1.0 / 127.5, -1.0),  # [-1, 1], as the official checkpoints were trained
    "none": (1.0, 0.0),
}

# Test-time augmentations that `keras-vit evaluate --tta` and `keras-vit export --tta` take
# (keras_vit.test_time_augmentation).
TTA_MODES = ("none", "flip")
