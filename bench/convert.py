"""Exports a benchmark model to a SavedModel and a float32 TFLite file, once per model.

The files are made in their own process (`python -m bench.convert ...`), so that the
processes that time them load only the file and their resident memory is the
deployment footprint, not the converter's.
"""

import argparse
import json
import os
import shutil
import tempfile


def export_saved_model(model, path):
    """Writes `model` as a SavedModel with a `serve` endpoint `[None, H, W, C] -> logits`."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".saved_model-")
    try:
        model.export(staging, format="tf_saved_model", verbose=False)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def convert_tflite(saved_model_dir, path):
    """Converts a SavedModel to a float32 `.tflite` file (no quantization), atomically."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    flatbuffer = converter.convert()
    fd, staging = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tflite")
    with os.fdopen(fd, "wb") as f:
        f.write(flatbuffer)
    os.replace(staging, path)


def artifact_paths(directory, implementation, config_name):
    """Where the SavedModel and TFLite file of one (implementation, config) live."""
    stem = os.path.join(directory, f"{config_name}-{implementation}")
    return {"saved_model": stem + "-saved_model", "tflite": stem + ".tflite"}


def prepare(directory, implementation, config_name, seed=0):
    """Builds the model (seeded weights) and writes both files unless they exist."""
    paths = artifact_paths(directory, implementation, config_name)
    if os.path.isdir(paths["saved_model"]) and os.path.isfile(paths["tflite"]):
        return paths
    import keras

    from bench.models import build_model, get_config

    keras.utils.set_random_seed(seed)
    model = build_model(implementation, get_config(config_name))
    export_saved_model(model, paths["saved_model"])
    convert_tflite(paths["saved_model"], paths["tflite"])
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(prepare(args.dir, args.impl, args.config)))


if __name__ == "__main__":
    main()
