"""Class probabilities of image files from any model keras-vit writes: the library of `keras-vit predict`.

One predictor per model format, each with the same interface:

    image_shape   (height, width, channels) of the images the model takes
    class_names   one name per class
    predict(images)  uint8 or float32 `[N, H, W, C]` raw 0..255 pixels -> float32 probabilities `[N, K]`

`KerasPredictor` (a Keras model), `SavedModelPredictor` (a folder written by
`export.savedmodel.export_savedmodel`) and `TFLitePredictor` (a `.tflite` file written by
`export.tflite.write_tflite`). `load_predictor(path)` picks one by the path; a training
output folder's class names live in its `config.json`, which `training.artifacts` reads, so
the command line builds a `KerasPredictor` from that itself.

Every format is fed the same pixels: `predict_files` decodes, converts the channels and
resizes (bilinear, rounded to whole pixel values) with `keras_vit.images`, as the training
input pipeline does, so a file gets the same probabilities from the `.keras` model and from
its exports (up to the export's own numerical error).

    >>> top_k(np.array([[0.1, 0.7, 0.2]]), ["ant", "bee", "cat"], 2)
    [[{'class': 'bee', 'index': 1, 'probability': 0.7}, {'class': 'cat', 'index': 2, 'probability': 0.2}]]
"""

import csv
import io
import json
import os

import numpy as np

# The formats `model_format` tells apart.
MODEL_FORMATS = ("keras", "training_folder", "savedmodel", "tflite")
KERAS_MODEL_FILE = "model.keras"  # what a training output folder holds (training.artifacts.MODEL_FILE)
SAVED_MODEL_FILE = "saved_model.pb"
# Channel counts that image files are read as (gray, RGB); see keras_vit.images.decode_image.
IMAGE_CHANNELS = (1, 3)
DEFAULT_BATCH_SIZE = 32


def model_format(path):
    """Which kind of model `path` is: one of `MODEL_FORMATS`.

    Raises FileNotFoundError for a missing path and ValueError for anything else that is
    not a `.keras` file, a `.tflite` file, a training output folder or a SavedModel folder.
    """
    path = str(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            return "savedmodel"
        if os.path.isfile(os.path.join(path, KERAS_MODEL_FILE)):
            return "training_folder"
        raise ValueError(
            f"{path} is a folder without {KERAS_MODEL_FILE} or {SAVED_MODEL_FILE}; expected a training output "
            "folder or a SavedModel folder (keras-vit export --format savedmodel)"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    if path.endswith(".keras"):
        return "keras"
    if path.endswith(".tflite"):
        return "tflite"
    raise ValueError(
        f"{path} is not a model keras-vit predicts with; expected a .keras file, a .tflite file, a training "
        "output folder or a SavedModel folder"
    )


def _softmax(values):
    from keras_vit.export.runtime import softmax

    return softmax(values)


def _check_class_names(class_names, num_classes, source):
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {source}, which has {num_classes} outputs")
    return class_names


class _Predictor:
    """What the predictors share: the image check and the batching of `predict`."""

    image_shape = None
    class_names = None
    source = "the model"
    batch_size = DEFAULT_BATCH_SIZE

    @property
    def num_classes(self):
        return len(self.class_names)

    def check_images(self, images):
        """Raises ValueError unless `images` are `[N, H, W, C]` of the model's image shape."""
        from keras_vit.export.runtime import check_image_shape

        check_image_shape(images, self.image_shape, model=self.source)

    def predict(self, images, batch_size=None):
        """uint8 or float32 `[N, H, W, C]` raw 0..255 pixels -> float32 class probabilities `[N, K]`."""
        images = np.asarray(images)
        self.check_images(images)
        if images.dtype != np.uint8:
            images = images.astype("float32")
        batch_size = int(batch_size or self.batch_size)
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if len(images) == 0:
            return np.zeros((0, self.num_classes), "float32")
        chunks = [self._probabilities(images[start : start + batch_size])
                  for start in range(0, len(images), batch_size)]
        return np.concatenate(chunks).astype("float32")

    def _probabilities(self, images):
        raise NotImplementedError


class KerasPredictor(_Predictor):
    """A Keras model (`[B, H, W, C]` raw pixels -> logits, or probabilities for a softmax head).

    Args:
        model: the Keras model (for a mixed-precision `ViT`, pass its `as_float32()` twin to
            predict in float32, as the exports do).
        class_names: one name per output (default "0", "1", ...).
        source: how error messages name the model.
    """

    def __init__(self, model, class_names=None, source=None, batch_size=DEFAULT_BATCH_SIZE):
        from keras_vit.export.savedmodel import outputs_are_probabilities
        from keras_vit.images import model_image_shape

        self.model = model
        self.source = source or f"model {model.name!r}"
        self.image_shape = model_image_shape(model)
        if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            raise ValueError(f"{self.source} must have one [batch, classes] output to predict classes")
        self.class_names = _check_class_names(class_names, int(model.outputs[0].shape[-1]), self.source)
        self.outputs_probabilities = outputs_are_probabilities(model)
        self.batch_size = batch_size

    def _probabilities(self, images):
        outputs = np.asarray(self.model(np.asarray(images, dtype="float32"), training=False), dtype="float64")
        return outputs if self.outputs_probabilities else _softmax(outputs)


class SavedModelPredictor(_Predictor):
    """A serving SavedModel written by `keras-vit export --format savedmodel` (`export.savedmodel`).

    Runs its `serving_default` signature, which returns `probabilities`; the class names are
    its `assets/labels.txt`.
    """

    def __init__(self, path, batch_size=DEFAULT_BATCH_SIZE):
        import tensorflow as tf

        from keras_vit.export.savedmodel import LABELS_ASSET, SERVING_DEFAULT

        self.source = str(path)
        self.batch_size = batch_size
        try:
            self.loaded = tf.saved_model.load(self.source)
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"could not load {path} as a SavedModel: {first_line}") from None
        expected = "written by `keras-vit export --format savedmodel`"
        self.serve = self.loaded.signatures.get(SERVING_DEFAULT)
        if self.serve is None:
            raise ValueError(f"{path} is a SavedModel without a {SERVING_DEFAULT} signature; expected one {expected}")
        inputs = self.serve.structured_input_signature[1]
        outputs = self.serve.structured_outputs
        if list(inputs) != ["images"] or "probabilities" not in outputs:
            raise ValueError(f"{path}: its {SERVING_DEFAULT} signature does not take images and return "
                             f"probabilities; expected a SavedModel {expected}")
        spec = inputs["images"]
        shape = tuple(spec.shape)
        if len(shape) != 4 or None in shape[1:]:
            raise ValueError(f"{path} takes images of shape {shape}; expected [batch, H, W, C] of a static size")
        self.image_shape = tuple(int(s) for s in shape[1:])
        self.input_dtype = spec.dtype
        num_classes = int(outputs["probabilities"].shape[-1])
        labels = os.path.join(self.source, "assets", LABELS_ASSET)
        names = None
        if os.path.isfile(labels):
            with open(labels) as file:
                names = file.read().split("\n")[:num_classes]
        self.class_names = _check_class_names(names, num_classes, self.source)

    def _probabilities(self, images):
        import tensorflow as tf

        if self.input_dtype == tf.uint8 and images.dtype != np.uint8:
            images = np.clip(np.round(images), 0, 255).astype("uint8")
        result = self.serve(images=tf.constant(images, dtype=self.input_dtype))
        return result["probabilities"].numpy()


def tflite_outputs_probabilities(content):
    """Whether a `.tflite` model outputs class probabilities (`export.analysis.outputs_probabilities`)."""
    from keras_vit.export.analysis import outputs_probabilities

    return outputs_probabilities(content)


class TFLitePredictor(_Predictor):
    """A `.tflite` file written by `keras-vit export` (`export.tflite.write_tflite`), run on LiteRT.

    Quantized inputs and outputs are handled by `export.runtime.TFLiteRunner`. The class names
    are those embedded in its metadata, else the labels file beside it (`export.tflite.read_labels`),
    else "0", "1", .... `image_shape` is the file's input: RGB for a gray model exported with
    `rgb_input` (the default), which converts to gray inside; gray images are accepted too
    (repeated to RGB). The probabilities are the file's own output (what MediaPipe's image
    classifier reports as scores), or the softmax of a file that outputs logits.
    """

    def __init__(self, path, class_names=None, num_threads=None, batch_size=DEFAULT_BATCH_SIZE):
        from keras_vit.export.analysis import read_tflite
        from keras_vit.export.runtime import TFLiteRunner
        from keras_vit.export.tflite import read_labels

        self.source = str(path)
        self.batch_size = batch_size
        content = read_tflite(self.source)
        self.runner = TFLiteRunner(content, num_threads=num_threads)
        shape = self.runner.input_shape
        if len(shape) != 4:
            raise ValueError(f"{path} takes inputs of shape {shape}; expected [batch, H, W, C] images")
        self.image_shape = tuple(shape[1:])
        output_shape = tuple(int(s) for s in self.runner.output["shape"])
        if len(output_shape) != 2:
            raise ValueError(f"{path} outputs shape {output_shape}; expected [batch, classes]")
        self.outputs_probabilities = self.runner.outputs_probabilities
        names = class_names if class_names is not None else read_labels(self.source, content)
        self.class_names = _check_class_names(names, output_shape[-1], self.source)

    def check_images(self, images):
        """Raises ValueError unless `images` are `[N, H, W, C]` of the file's input (or gray for an RGB input)."""
        from keras_vit.export.runtime import fit_channels

        fit_channels(images, self.image_shape, model=self.source)

    def _probabilities(self, images):
        return self.runner.probabilities(np.asarray(images, dtype="float32"))


def load_predictor(path, class_names=None, num_threads=None, batch_size=DEFAULT_BATCH_SIZE):
    """The predictor of a `.keras` file, a SavedModel folder or a `.tflite` file.

    `class_names` overrides the names saved with the model (a `.keras` file has none: "0", "1",
    ... unless given). A training output folder's `model.keras` is loaded too, but its class
    names (in `config.json`) are read by `training.artifacts.load_model_and_class_names`:
    pass them, or build `KerasPredictor(model, names)` from that.
    """
    kind = model_format(path)
    if kind == "tflite":
        return TFLitePredictor(path, class_names, num_threads=num_threads, batch_size=batch_size)
    if kind == "savedmodel":
        predictor = SavedModelPredictor(path, batch_size=batch_size)
        if class_names is not None:
            predictor.class_names = _check_class_names(class_names, predictor.num_classes, path)
        return predictor
    keras_path = os.path.join(path, KERAS_MODEL_FILE) if kind == "training_folder" else path
    from keras_vit.files import load_keras_file

    return KerasPredictor(load_keras_file(keras_path, float32=True), class_names, source=str(path), batch_size=batch_size)


def iter_predictions(predictor, paths, resize=True, batch_size=None):
    """Class probabilities of image files (and folders, searched recursively), a batch at a time.

    Images are decoded as the model's channel count (gray from color takes the luminance,
    RGB from gray repeats it) and, with `resize`, resized to the model's size as the training
    input pipeline does (bilinear, rounded); without it an image of another size is an error
    that names it. A file that cannot be decoded (corrupt, truncated, not an image) is skipped,
    so that one bad photo does not stop a folder of thousands.

    Yields `(files, probabilities [B, K], skipped)` per batch of `batch_size` files: the files
    that were read, their probabilities, and `(file, reason)` of those skipped.
    """
    from keras_vit.images import UnreadableImageError, list_image_files, load_image_file

    height, width, channels = predictor.image_shape
    if channels not in IMAGE_CHANNELS:
        raise ValueError(
            f"{predictor.source} takes {channels}-channel images; image files are read as gray (1 channel) "
            "or RGB (3 channels)"
        )
    batch_size = int(batch_size or predictor.batch_size)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    files = list_image_files([str(p) for p in paths])
    for start in range(0, len(files), batch_size):
        read, images, skipped = [], [], []
        for path in files[start : start + batch_size]:
            try:
                images.append(load_image_file(path, (height, width), channels, resize,
                                              resize_hint="leave out --no-resize to resize it"))
            except UnreadableImageError as error:
                skipped.append((path, error.reason))
                continue
            read.append(path)
        probabilities = (predictor.predict(np.stack(images), batch_size=batch_size) if images
                         else np.zeros((0, len(predictor.class_names)), "float32"))
        yield read, probabilities, skipped


def predict_files(predictor, paths, resize=True, batch_size=None):
    """All of `iter_predictions` at once: `(files, probabilities [N, K], skipped [(file, reason)])`.

    Raises ValueError when no file could be read.
    """
    files, probabilities, skipped = [], [], []
    for batch_files, batch_probabilities, batch_skipped in iter_predictions(predictor, paths, resize, batch_size):
        files += batch_files
        probabilities.append(batch_probabilities)
        skipped += batch_skipped
    if not files:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped[:3])
        raise ValueError(f"no readable image among {len(skipped)} file(s): {reasons}")
    return files, np.concatenate(probabilities), skipped


def top_k(probabilities, class_names, k=5):
    """The `k` most probable classes of each row, most probable first (ties: lower index first).

    Returns one list per row of `{"class": name, "index": i, "probability": p}`; `k` is
    clipped to the number of classes.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[-1] != len(class_names):
        raise ValueError(f"probabilities of shape {probabilities.shape} for {len(class_names)} class names")
    k = int(k)
    if k < 1:
        raise ValueError(f"top-k must be at least 1, got {k}")
    k = min(k, len(class_names))
    rows = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        rows.append([{"class": class_names[i], "index": int(i), "probability": _clean_float(row[i])} for i in order])
    return rows


def _clean_float(value):
    # The shortest decimal that reads back as the same float32 (0.873, not 0.8730000257492065).
    return float(str(np.float32(value)))


def prediction_records(files, rows):
    """JSON-ready records: `[{"image": path, "predictions": [{"class", "index", "probability"}, ...]}, ...]`."""
    return [{"image": str(path), "predictions": predictions} for path, predictions in zip(files, rows)]


def format_table(files, rows):
    """One line per image: its path, then `class (p=0.873)` for each of its top classes."""
    return "".join(
        str(path) + "  " + "  ".join(f"{p['class']} (p={p['probability']:.3f})" for p in predictions) + "\n"
        for path, predictions in zip(files, rows)
    )


def format_json(files, rows):
    """The records of `prediction_records` as indented JSON text."""
    return json.dumps(prediction_records(files, rows), indent=2) + "\n"


CSV_COLUMNS = ("image", "rank", "class", "index", "probability")


def format_csv(files, rows):
    """CSV with the header `image,rank,class,index,probability`, one row per image and rank (1 first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for path, predictions in zip(files, rows):
        for rank, p in enumerate(predictions, start=1):
            writer.writerow([str(path), rank, p["class"], p["index"], repr(p["probability"])])
    return buffer.getvalue()


FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv}


def format_predictions(files, rows, output_format="table"):
    """`files` and their `top_k` rows as text in `output_format` (table, json or csv)."""
    if output_format not in FORMATTERS:
        raise ValueError(f"output format must be one of {tuple(FORMATTERS)}, got {output_format!r}")
    return FORMATTERS[output_format](files, rows)


def write_output_atomic(path, text):
    """Writes the formatted predictions to the file `path` (`keras_vit.files.write_text_atomic`)."""
    from keras_vit.files import write_text_atomic

    if os.path.isdir(path):
        raise IsADirectoryError(f"--output {path} is a folder; expected a file name")
    write_text_atomic(path, text)
