"""Finding and opening what training writes: a `.keras` file or a training output folder.

A training output folder holds `model.keras` (the best model) and `config.json`
(the model configuration, dataset spec and `class_names`).
"""

import json
import os

from keras_vit.files import load_keras_file, write_json_atomic, write_text_atomic

__all__ = [
    "CONFIG_FILE", "MODEL_FILE", "load_class_names", "load_keras_model", "load_model_and_class_names",
    "read_training_config", "resolve_model_path", "truncate_history", "write_json_atomic",
]

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"


def resolve_model_path(source):
    """Returns the `.keras` file of a `.keras` path or a training output folder."""
    if os.path.isdir(source):
        path = os.path.join(source, MODEL_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{source} is a folder without {MODEL_FILE}; is it a training output folder?")
        return path
    if not os.path.exists(source):
        raise FileNotFoundError(f"model not found: {source}")
    if not source.endswith(".keras"):
        raise ValueError(f"{source} is not a .keras file or a training output folder")
    return source


def load_keras_model(source, float32=False):
    """Loads a `.keras` model (or a training folder's) safely, with clear errors for bad files
    (`keras_vit.files.load_keras_file`; `float32`: a mixed-precision ViT as its float32 twin)."""
    return load_keras_file(resolve_model_path(source), float32=float32)


def load_model_and_class_names(source):
    """The float32 Keras model at `source` (mixed-precision models export and predict in float32)
    and its class names. Raises ValueError when the saved names do not match its outputs."""
    model = load_keras_model(source, float32=True)
    num_classes = int(model.outputs[0].shape[-1])
    names = load_class_names(source, num_classes)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names saved with {source}, but the model has {num_classes} outputs")
    return model, names


def read_training_config(source):
    """The training `config.json` beside a model (folder or `.keras` file), or `{}` if none."""
    folder = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        try:
            return json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None


def load_class_names(source, num_classes=None):
    """Class names saved with a model; `["0", "1", ...]` when none were saved."""
    names = read_training_config(source).get("class_names")
    if names:
        return [str(n) for n in names]
    if num_classes is None:
        return None
    return [str(i) for i in range(num_classes)]


def truncate_history(path, epochs):
    """Keeps the header and the rows of the first `epochs` epochs of a `CSVLogger` file.

    A resumed run repeats the epoch its backup was taken in; without this its row would
    appear twice (once from the killed run, once from the resumed one).
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as file:
        lines = file.read().splitlines(keepends=True)
    if not lines:
        return
    header, rows = lines[0], lines[1:]
    kept = [row for row in rows if row.strip() and _row_epoch(row) < epochs]
    if len(kept) == len(rows):
        return
    write_text_atomic(path, header + "".join(kept))


def _row_epoch(row):
    try:
        return int(row.split(",", 1)[0])
    except ValueError:
        return -1
