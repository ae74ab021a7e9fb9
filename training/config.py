"""Training configuration: defaults, a JSON/YAML file, and command-line overrides."""

import dataclasses
import json
import math
import os

from keras_vit.training.choices import CROP_FILLS, JIT_COMPILE, KEEP_MODELS, OPTIMIZERS, PRECISIONS, STRATEGIES

# ViT constructor arguments a user may override on top of a preset.
MODEL_FIELDS = (
    "image_size",
    "channels",
    "patch_size",
    "num_layers",
    "num_heads",
    "hidden_dim",
    "mlp_dim",
    "pooling",
    "use_class_token",
    "representation_size",
    "dropout_rate",
    "attention_dropout_rate",
    "drop_path_rate",
    "input_scaling",
    "stem_channels",
)


@dataclasses.dataclass
class TrainConfig:
    """Everything `training.fit.train` needs; saved as `config.json` beside the model.

    `preset="auto"` chooses the model from the dataset (`training.model_choice`), and
    options left at None (epochs, time budget, batch size, warm-up, MixUp, optimizer, learning
    rate, weight decay, label smoothing, flips) follow the number of training images and whether
    the run starts from a checkpoint (`init_from`: a file, or weights by name); `resolve`
    fills them in (`model_choice.choose_recipe`). `pretrained="auto"` fine-tunes official
    weights found in the Keras cache for images of 64 pixels and more; a weights name
    fetches those, "none" trains from scratch.

    `model` holds ViT overrides on top of `preset` (image_size, patch_size, ...);
    channels and num_classes default to the dataset's.
    """

    dataset: str = "digits"
    output: str = "runs/digits"
    preset: str = "auto"
    model: dict = dataclasses.field(default_factory=dict)
    init_from: str = None
    pretrained: str = "auto"
    data_dir: str = None
    epochs: int = None
    batch_size: int = None
    optimizer: str = None
    momentum: float = 0.9
    learning_rate: float = None
    weight_decay: float = None
    warmup_epochs: float = None
    clipnorm: float = 1.0
    ema: float = 0.0
    time_budget_minutes: float = None
    label_smoothing: float = None
    crop_padding: int = None
    crop_fill: str = "reflect"
    flip: bool = None
    randaugment: bool = False
    mixup: float = None
    cutmix: float = 0.0
    validation_fraction: float = 0.1
    seed: int = 0
    strategy: str = "auto"
    precision: str = "auto"
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    backup_every: int = 50
    backup_seconds: float = 30.0
    early_stopping: int = 0
    keep_model: str = "best"
    cache_memory_mb: float = 1024.0
    cache_file: str = None
    manual_dir: str = None
    verify_images: bool = False
    limit_train: int = None
    limit_test: int = None
    export_tflite: bool = False

    def __post_init__(self):
        for field in dataclasses.fields(self):
            setattr(self, field.name, _typed(field, getattr(self, field.name)))
        unknown = set(self.model) - set(MODEL_FIELDS)
        if unknown:
            raise ValueError(
                f"Unknown model option(s) {', '.join(sorted(unknown))}; known: {', '.join(MODEL_FIELDS)}"
            )
        self.model = {name: _typed_model_option(name, value) for name, value in self.model.items()}
        for name in ("epochs", "batch_size", "steps_per_execution", "limit_train", "limit_test"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # NaN passes every comparison below as False: `--learning-rate nan` trained to NaN weights.
            if field.type is float and value is not None and not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value}")
        for name, value in self.model.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.clipnorm >= 0:
            raise ValueError(f"clipnorm must be positive (0 turns clipping off), got {self.clipnorm}")
        for name in ("weight_decay", "warmup_epochs", "mixup", "cutmix", "crop_padding", "early_stopping"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more (0 turns it off), got {getattr(self, name)}")
        for name in RATE_MODEL_FIELDS:
            if name in self.model and self.model[name] is not None and not 0.0 <= self.model[name] < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {self.model[name]}")
        if self.keep_model not in KEEP_MODELS:
            raise ValueError(f"keep_model must be {' or '.join(map(repr, KEEP_MODELS))}, got {self.keep_model!r}")
        if self.backup_every < 1 or self.backup_seconds < 0:
            raise ValueError(
                f"backups need backup_every >= 1 step and backup_seconds >= 0, got {self.backup_every} and {self.backup_seconds}"
            )
        if self.time_budget_minutes is not None and self.time_budget_minutes < 0:
            raise ValueError(f"time_budget_minutes must be positive (0 turns it off), got {self.time_budget_minutes}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1) (0 turns it off), got {self.ema}")
        for name, choices in (("strategy", STRATEGIES), ("precision", PRECISIONS), ("jit_compile", JIT_COMPILE)):
            if str(getattr(self, name)).lower() not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be {' or '.join(map(repr, OPTIMIZERS))}, got {self.optimizer!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.cache_memory_mb < 0:
            raise ValueError(f"cache_memory_mb must be 0 or more (0 turns the memory cache off), got {self.cache_memory_mb}")
        if self.crop_fill not in CROP_FILLS:
            raise ValueError(f"crop_fill must be {' or '.join(map(repr, CROP_FILLS))}, got {self.crop_fill!r}")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.early_stopping and not self.validation_fraction:
            raise ValueError("early_stopping watches validation accuracy: it needs validation_fraction above 0")

    def resolve(self, num_train, image_size=None, allow_time_budget=True, channels=None):
        """This config with the data-dependent defaults (None) set for `num_train` images of
        `image_size` (height, width) and `channels`, the sizes the model takes.
        `allow_time_budget=False` (several workers, whose clocks differ) leaves the automatic
        epochs without their time budget."""
        from keras_vit.training.model_choice import choose_recipe

        recipe = choose_recipe(num_train, image_size, fine_tune=bool(self.init_from), channels=channels)
        if self.epochs is not None:
            recipe["epochs"] = self.epochs
            recipe["warmup_epochs"] = min(3.0, 0.1 * self.epochs)
        if self.epochs is not None or not allow_time_budget:
            # The automatic budget belongs to the automatic epochs: a count the user chose runs in full.
            recipe["time_budget_minutes"] = 0.0
        chosen = {key: value for key, value in recipe.items() if getattr(self, key) is None}
        return dataclasses.replace(self, **chosen)

    def to_dict(self):
        return dataclasses.asdict(self)


def _typed(field, value):
    """`value` as the field's type, or a ValueError naming the option and what it expects.

    Config files need this: PyYAML reads `2e-3` (no dot) as a string, and a JSON
    file may quote its numbers; a bare `TypeError` deep in training would not say which option.
    """
    if value is None and field.default is None:
        return None
    kind = field.type
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{field.name} must be true or false, got {value!r}")
    if kind in (int, float):
        return _number(field.name, value, kind)
    if kind is str and isinstance(value, bool):
        return str(value).lower()  # YAML's `jit_compile: true`
    if kind in (str, dict) and not isinstance(value, kind):
        expected = "a string" if kind is str else "a mapping of model options"
        raise ValueError(f"{field.name} must be {expected}, got {value!r}")
    return value


def _number(name, value, kind):
    """`value` as an int or float (also from a string), else a ValueError naming `name`."""
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value) if isinstance(value, str) else value
        if kind is float and isinstance(number, (int, float)):
            return float(number)
        if kind is int and isinstance(number, (int, float)) and float(number).is_integer():
            return int(number)
    except ValueError:
        pass
    expected = "a whole number" if kind is int else "a number"
    raise ValueError(f"{name} must be {expected}, got {value!r}")


# Model options checked like the training options: the ViT constructor itself takes int(...) of
# its sizes, so `num_layers: 2.5` would silently build 2 layers.
WHOLE_NUMBER_MODEL_FIELDS = ("channels", "num_layers", "num_heads", "hidden_dim", "mlp_dim", "representation_size")
RATE_MODEL_FIELDS = ("dropout_rate", "attention_dropout_rate", "drop_path_rate")
SIZE_MODEL_FIELDS = ("image_size", "patch_size", "stem_channels")  # a number, or a list of them
BOOL_MODEL_FIELDS = ("use_class_token",)


def _typed_model_option(name, value):
    if value is None:
        return None
    if name in WHOLE_NUMBER_MODEL_FIELDS:
        return _number(name, value, int)
    if name in RATE_MODEL_FIELDS:
        return _number(name, value, float)
    if name in BOOL_MODEL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if name in SIZE_MODEL_FIELDS:
        if isinstance(value, (list, tuple)):
            return tuple(_number(name, item, int) for item in value)
        if name == "stem_channels":
            raise ValueError(f"stem_channels must be a list of channel counts like [32, 64], got {value!r}")
        return _number(name, value, int)
    return value


# What `train` adds to a run's `config.json` besides the options: dropped on reading, so that
# `--config RUN/config.json` trains that run again.
RUN_RECORD_KEYS = ("model_config", "class_names", "num_classes", "precision_used", "intra_op_threads")


def read_config_file(path):
    """Reads a JSON or YAML file of `TrainConfig` fields (model fields may sit at top level)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as file:
        text = file.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as error:  # yaml and json raise their own error types
        raise ValueError(f"cannot parse config file {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of options, got {type(data).__name__}")
    return {key: value for key, value in data.items() if key not in RUN_RECORD_KEYS}


def merge_config(*layers):
    """Merges option dicts (later wins, None means unset) into a `TrainConfig`."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    merged, model = {}, {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key == "model":
                if not isinstance(value, dict):
                    raise ValueError(f"model must be a mapping of model options, got {value!r}")
                model.update({k: v for k, v in value.items() if v is not None})
            elif key in MODEL_FIELDS:
                model[key] = value
            elif key in fields:
                merged[key] = value
            else:
                raise ValueError(f"Unknown training option {key!r}")
    return TrainConfig(model=model, **merged)
