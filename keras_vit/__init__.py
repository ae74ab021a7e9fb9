"""keras-vit: the Vision Transformer for Keras 3 (TensorFlow backend).

    >>> import keras_vit
    >>> model = keras_vit.ViT.from_preset("vit_ti16", image_size=32, patch_size=8, num_classes=10)
    >>> model.output_shape
    (None, 10)

The names below load on first use (PEP 562): importing TensorFlow takes seconds, and the
`keras-vit` command line (keras_vit.training.cli) answers `--help` and argument errors
without it. Using any of them (`keras_vit.ViT`, `from keras_vit import ViT`), or importing Keras
after keras_vit, imports the whole model library and registers every layer for `.keras` files:
`import keras_vit, keras; keras.saving.load_model(path)` works as with an eager package.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Public name -> the module that defines it.
_NAMES = {
    "PRESETS": "keras_vit.presets",
    "get_preset": "keras_vit.presets",
    "ViT": "keras_vit.model",
    "PatchEncoder": "keras_vit.layers",
    "Patches": "keras_vit.layers",
    "TokenPooling": "keras_vit.layers",
    "TransformerBlock": "keras_vit.layers",
    "unpatchify": "keras_vit.layers",
    "attention_maps": "keras_vit.attention",
    "attention_model": "keras_vit.attention",
    "attention_rollout": "keras_vit.attention",
    "flip_averaged": "keras_vit.test_time_augmentation",
    "load_checkpoint": "keras_vit.checkpoint",
    "save_checkpoint": "keras_vit.checkpoint",
    "load_model": "keras_vit.files",
}
# Sub-packages reached as attributes (`keras_vit.layers.Patches`).
_SUBMODULES = ("layers", "explain")

__all__ = sorted([*_NAMES, "layers"])


def _load_library():
    # Every layer at once, so that any first use registers all of them for deserialization.
    importlib.import_module("keras_vit.model")
    importlib.import_module("keras_vit.test_time_augmentation")


class _RegisterWithKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads the model library right after Keras: whoever imports keras_vit and then Keras (to
    `keras.saving.load_model` a `.keras` file, say) finds every layer registered, while the
    command line, which imports Keras only to run a command, answers `--help` without it."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader  # Keras sees its own loader afterwards
        self.loader.exec_module(module)
        if _layers_initializing():
            # Keras was imported by the first layer module of a `from keras_vit.layers import ...`:
            # the model imports the layers, which are not defined yet, so keras_vit/layers/__init__.py
            # loads the library once they are.
            return
        _load_library()


def _layers_initializing():
    """Whether keras_vit.layers is being imported now (in sys.modules, its body not yet run)."""
    layers = sys.modules.get("keras_vit.layers")
    return layers is not None and getattr(layers.__spec__, "_initializing", False)


if "keras" in sys.modules:
    _load_library()
else:
    sys.meta_path.insert(0, _RegisterWithKeras())


def __getattr__(name):
    if name in _SUBMODULES:
        _load_library()
        return importlib.import_module(f"keras_vit.{name}")
    if name not in _NAMES:
        raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")
    _load_library()
    module = importlib.import_module(_NAMES[name])
    value = getattr(module, "load_keras_file" if name == "load_model" else name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_NAMES, *_SUBMODULES])
