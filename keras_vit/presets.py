"""ViT configurations as plain data (sizes from google-research/vision_transformer).

Each preset is a dict of `ViT` constructor arguments; `ViT.from_preset` lets any
field be overridden.
"""

_SIZES = {
    # name: (hidden_dim, num_layers, num_heads, mlp_dim)
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
    "h": (1280, 32, 16, 5120),
}

_NAMES = {"ti": "Tiny", "s": "Small", "b": "Base", "l": "Large", "h": "Huge"}


def _preset(size, patch_size):
    hidden_dim, num_layers, num_heads, mlp_dim = _SIZES[size]
    return {
        "image_size": 224,
        "patch_size": patch_size,
        "hidden_dim": hidden_dim,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
        "num_classes": 1000,
    }


PRESETS = {
    f"vit_{size}{patch}": _preset(size, patch)
    for size, patch in [
        ("ti", 16),
        ("s", 16),
        ("s", 32),
        ("b", 8),
        ("b", 16),
        ("b", 32),
        ("l", 16),
        ("l", 32),
        ("h", 14),
    ]
}

# The small configuration the command line chooses for 8x8 digits: a hybrid ViT whose
# one-convolution stem (32 channels, stride 2) makes the 4x4 grid of 2x2-pixel tokens. The default
# job (100 epochs) scores 98.00% mean over seeds 0-4 (97.22-98.61%) in 81-95 s of training on 2
# AVX-512 cores; on a 2-core AVX2 CPU the stem took seed 0 from 97.2% to 99.4% in 100 epochs
# (BENCHMARKS.md section 2, "Digits").
PRESETS["vit_digits"] = {
    "image_size": 8,
    "patch_size": 2,
    "stem_channels": (32,),
    "hidden_dim": 64,
    "num_layers": 4,
    "num_heads": 4,
    "mlp_dim": 128,
    "num_classes": 10,
    # No dropout: beside MixUp and label smoothing, dropout 0.1 lowered the digits job's mean test
    # accuracy by about 0.2 points (17 seeds each; bench/experiments/digits_sweep.py,
    # BENCHMARKS.md section 2).
    "dropout_rate": 0.0,
}


def describe_preset(name):
    """One line describing a preset, for `keras-vit presets`."""
    config = get_preset(name)
    return (
        f"{name:<11} hidden_dim={config['hidden_dim']:<5} layers={config['num_layers']:<3}"
        f" heads={config['num_heads']:<3} mlp_dim={config['mlp_dim']:<5}"
        f" patch={config['patch_size']:<3} image={config['image_size']}"
    )


def get_preset(name):
    """Returns a copy of a preset's configuration; unknown names list the known ones."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return dict(PRESETS[name])
