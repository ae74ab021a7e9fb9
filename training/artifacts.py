"""Finding and opening what training writes: a `.keras` file or a training output folder.

A training output folder holds `model.keras` (the best model) and `config.json`
(the model configuration, dataset spec and `class_names`).
"""

import json
import os
import zipfile

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


def load_keras_model(source, compile=False, float32=False):
    """Loads a `.keras` model (or a training folder's) safely, with clear errors for bad files.

    `float32=True` returns a keras_vit ViT trained in mixed precision as its float32 twin
    (`ViT.as_float32`): the reference that exports are made from and compared with.
    """
    import keras

    import keras_vit  # noqa: F401  (registers the custom layers for deserialization)

    path = resolve_model_path(source)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a valid .keras file (not a zip archive; corrupt or foreign file)")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"could not load {path} as a Keras model: {first_line}") from None
    if float32 and hasattr(model, "as_float32"):
        model = model.as_float32()
    return model


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


def write_json_atomic(path, data):
    """Writes JSON through a temporary file in the same folder, then renames it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as file:
        json.dump(data, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(tmp, path)


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
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as file:
        file.write(header)
        file.writelines(kept)
    os.replace(tmp, path)


def _row_epoch(row):
    try:
        return int(row.split(",", 1)[0])
    except ValueError:
        return -1
