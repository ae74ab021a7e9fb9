"""The benchmarked configurations, and our ViT and keras-hub's ViT built identically from them.

Both models take raw 0..255 pixels `[B, H, W, C]`, scale them to [0, 1] inside the
model, and end in a float32 `Dense(num_classes)` head on the class token, so that
the same inputs, parameter count and output reach both sides.
"""

IMPLEMENTATIONS = ("ours", "keras_hub")

# Sizes from the ViT paper (Ti/16, S/16 at 224) and the CIFAR configuration of the
# training benchmarks: ViT-Ti widths on 32x32 images in 4x4 patches (65 tokens).
CONFIGS = {
    "vit_ti16": dict(image_size=224, patch_size=16, num_layers=12, num_heads=3,
                     hidden_dim=192, mlp_dim=768, num_classes=1000),
    "vit_s16": dict(image_size=224, patch_size=16, num_layers=12, num_heads=6,
                    hidden_dim=384, mlp_dim=1536, num_classes=1000),
    "cifar": dict(image_size=32, patch_size=4, num_layers=12, num_heads=3,
                  hidden_dim=192, mlp_dim=768, num_classes=10),
}


def get_config(name):
    """Returns a copy of a benchmark configuration; unknown names list the known ones."""
    if name not in CONFIGS:
        raise ValueError(f"Unknown benchmark config {name!r}; known: {', '.join(CONFIGS)}")
    return dict(CONFIGS[name])


def build_model(implementation, config, dtype=None):
    """Builds `implementation` ("ours" or "keras_hub") for a config dict.

    `dtype` is a Keras dtype policy name (None: the global policy). Returns a
    `keras.Model` mapping `[B, S, S, 3]` pixels to `[B, num_classes]` float32 logits.
    """
    import keras

    if implementation == "ours":
        from keras_vit import ViT

        return ViT(**config, dtype=dtype, input_scaling="unit")
    if implementation == "keras_hub":
        import keras_hub

        size = config["image_size"]
        inputs = keras.Input((size, size, 3), name="images")
        x = keras.layers.Rescaling(1.0 / 255.0, dtype=dtype, name="rescaling")(inputs)
        backbone = keras_hub.models.ViTBackbone(
            image_shape=(size, size, 3),
            patch_size=config["patch_size"],
            num_layers=config["num_layers"],
            num_heads=config["num_heads"],
            hidden_dim=config["hidden_dim"],
            mlp_dim=config["mlp_dim"],
            dtype=dtype,
        )
        tokens = backbone(x)
        # The same head as ours: class token -> float32 Dense (logits stay float32
        # under mixed precision).
        outputs = keras.layers.Dense(config["num_classes"], dtype="float32", name="head")(
            tokens[:, 0]
        )
        return keras.Model(inputs, outputs, name="keras_hub_vit")
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")


def forward_flops(config):
    """Floating-point operations (multiply and add counted as 2) of one image's forward pass.

    Counts the matrix products, which are all but ~1% of the work: patch embedding,
    per block the q/k/v projection, scores, attention-weighted values, output
    projection and the two MLP layers, and the head.
    """
    size, patch = config["image_size"], config["patch_size"]
    hidden, mlp, layers = config["hidden_dim"], config["mlp_dim"], config["num_layers"]
    patches = (size // patch) ** 2
    tokens = patches + 1
    patch_embedding = 2 * patches * (patch * patch * 3) * hidden
    per_block = (
        2 * tokens * hidden * 3 * hidden  # q, k, v
        + 2 * 2 * tokens * tokens * hidden  # q k^T and weights v, over all heads
        + 2 * tokens * hidden * hidden  # output projection
        + 2 * 2 * tokens * hidden * mlp  # MLP
    )
    head = 2 * hidden * config["num_classes"]
    return patch_embedding + layers * per_block + head


def training_flops(config):
    """FLOPs of one image's training step: forward plus backward (about twice the forward)."""
    return 3 * forward_flops(config)
