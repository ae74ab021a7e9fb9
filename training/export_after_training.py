"""`keras-vit train --export-tflite`: the best model as float32, float16, dynamic and int8 `.tflite` files
with their report, from the splits the run trained on (loaded once)."""

import os

from keras_vit.export.bundle import export_modes
from keras_vit.training.artifacts import load_model_and_class_names
from keras_vit.training.evaluation import TFLITE_FOLDER, ModelData

# float16 is the file for the GPU accelerator, dynamic or int8 for the CPU, int8 for NPUs.
MODES = ("float32", "float16", "dynamic", "int8")


def export_tflite_after_training(output, splits, dataset, limit_test=None, log=print):
    """Writes `OUTPUT/tflite/` (see `export.bundle.export_modes`) and returns the report rows.

    The report runs on the test split up to `ModelData.report_arrays`' memory bound (a seeded
    sample past it), and on at most `limit_test` images."""
    from keras_vit.images import model_image_shape

    model, names = load_model_and_class_names(output)
    data = ModelData(dataset, model_image_shape(model), splits)
    test_images, test_labels = data.report_arrays(limit_test)
    folder = os.path.join(output, TFLITE_FOLDER)
    rows = export_modes(
        model, folder, MODES, calibration_images=data.calibration_arrays(200), test_images=test_images,
        test_labels=test_labels, class_names=names, dataset_name=dataset, log=log,
    )
    for row in rows:
        log(f"{'tflite ' + row['mode']:<16}accuracy {row['accuracy']:.4f}  {row['size_bytes'] / 1e6:.3f} MB")
    log(f"{'tflite report':<16}{os.path.join(folder, 'report.md')}")
    return rows
