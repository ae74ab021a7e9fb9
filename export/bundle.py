"""Exporting several TFLite modes of one model into a folder, with the report beside them."""

import os
import re

import numpy as np

from keras_vit.export.cpu_features import int8_context
from keras_vit.export.evaluate import check_image_array, keras_logits
from keras_vit.export.report import build_report, write_report
from keras_vit.export.tflite import MODES, QUANTIZED_MODES, convert, labels_path, write_tflite
from keras_vit.files import atomic_folder, check_class_names, check_output, read_head

QUANTIZERS = ("converter", "ai-edge")
# The modes AI Edge Quantizer makes from the float32 file (`export.ai_edge_quantizer.RECIPES`).
AI_EDGE_MODES = ("dynamic", "int8", "int16x8")
from keras_vit.images import model_image_shape


def export_modes(
    model,
    folder,
    modes=MODES,
    *,
    calibration_images=None,
    test_images=None,
    test_labels=None,
    class_names=None,
    dataset_name=None,
    batch_size=1,
    graph="auto",
    input_type="uint8",
    output_type="float32",
    thread_counts=(1, 2),
    rounds=5,
    runs=20,
    float_fallback=(),
    weight_granularity="channel",
    tta="none",
    quantizers=("converter",),
    float_ops=None,
    gpu_check=True,
    gpu_limit=200,
    validate_limit=16,
    overwrite=False,
    outputs="probabilities",
    log=print,
):
    """Converts `model` to every mode in `modes`, writes `model_<mode>.tflite` files and
    (when test images are given) `report.md`/`report.json` into `folder`.

    Images are raw 0..255 pixels `[N, H, W, C]` of the model's input size (uint8 or
    float32): `calibration_images` (training images, for int8/int16x8), `test_images` with
    int `test_labels` `[N]` for the report; `dataset_name` is what the report says they are.

    Everything is built in a temporary folder next to `folder` and moved into place
    only when all of it succeeded, so a failure (or SIGTERM, SIGINT) leaves no partial output.
    An existing `folder` keeps its other files; one that holds anything but such an export
    (`is_export_folder`) is refused unless `overwrite`.

    `quantizers`: who quantizes the dynamic, int8 and int16x8 modes: `converter` (TFLiteConverter,
    files `model_<mode>.tflite`) and/or `ai-edge` (AI Edge Quantizer on the float32 file,
    `export.ai_edge_quantizer`; files `model_<mode>_aiedge.tflite`, rows `<mode>:ai-edge`, plus
    its `weight_only` mode; `float_ops` keeps matching ops in float). Both side by side compare them;
    the report adds, per AI Edge Quantizer file, its `validate()` per-tensor errors on the first
    `validate_limit` test images.

    With `float_fallback` (see `export.tflite.convert`), an extra int8 model with those
    parts kept float is written as `model_int8_fallback.tflite` (row `int8+float:...`).

    `weight_granularity` applies to the int8 and int16x8 weights (`export.tflite.convert`).
    `tta="flip"`: every file averages each image with its mirror image (`export.tflite.convert`),
    and the report compares them with `keras_vit.flip_averaged(model)`.
    `gpu_check`: run every file on LiteRT's GPU accelerator (`export.accelerator.run_on_gpu`,
    in a child process, on the first `gpu_limit` test images) and report what happened; where
    the accelerator is not available, the report says so and why.

    `outputs`: what every file outputs, class probabilities (MediaPipe-ready, the default) or
    `logits` (`export.tflite.convert`). `log` gets one line per step, counted (`[2/5] converting
    float16 ...`), and per GPU run.

    Returns the report rows (empty without test images).
    """
    check_output(folder, (), is_export_folder, overwrite, "folder", "a new folder or an export's", "overwrite=True")
    if class_names is not None:
        class_names = check_class_names(class_names)  # one per line in every .labels.txt
    modes = list(modes)
    unknown = set(quantizers) - set(QUANTIZERS)
    if unknown or not quantizers:
        raise ValueError(f"quantizers must be among {', '.join(QUANTIZERS)}, got {', '.join(quantizers) or 'none'}")
    jobs = [(mode, mode, ()) for mode in modes if "converter" in quantizers or mode not in AI_EDGE_MODES]
    ai_edge_modes = [mode for mode in modes if mode in AI_EDGE_MODES] if "ai-edge" in quantizers else []
    if ai_edge_modes and set(modes) >= set(QUANTIZED_MODES):  # --mode all: the quantizer's own extra recipe too
        ai_edge_modes.append("weight_only")
    if float_fallback:
        if "int8" not in modes:
            raise ValueError("float fallback applies to the int8 mode; include int8 in the modes")
        jobs.append((f"int8+float:{','.join(float_fallback)}", "int8", tuple(float_fallback)))
    image_shape = model_image_shape(model)
    needs_calibration = any(mode in QUANTIZED_MODES for mode in modes)
    float32_content = None
    if needs_calibration and calibration_images is None:
        raise ValueError(
            f"mode(s) {', '.join(m for m in modes if m in QUANTIZED_MODES)} need calibration images: "
            "pass calibration_images (`keras-vit export --dataset SPEC` draws them from its training split)"
        )
    calibration = None
    if needs_calibration:
        calibration = check_image_array(calibration_images, image_shape, "calibration images")
    if test_images is not None:
        test_images = check_image_array(test_images, image_shape, "test images",
                                        np.zeros(0) if test_labels is None else test_labels)
    # Other files of an existing folder are kept; ours are replaced one by one (each atomic).
    with atomic_folder(folder, merge=True) as tmp:
        contents, files = {}, {}
        steps = len(jobs) + len(ai_edge_modes) + (test_images is not None)
        step = iter(range(1, steps + 1))
        for name, mode, fallback in jobs:
            log(f"[{next(step)}/{steps}] converting {name} ...")
            contents[name] = convert(
                model,
                mode,
                representative_images=calibration,
                batch_size=batch_size,
                graph=graph,
                input_type=input_type if mode == "int8" else "float32",
                output_type=output_type if mode == "int8" else "float32",
                float_fallback=fallback,
                weight_granularity=weight_granularity,
                tta=tta,
                outputs=outputs,
            )
            files[name] = f"model_{mode}{'_fallback' if fallback else ''}.tflite"
            write_tflite(contents[name], os.path.join(tmp, files[name]), class_names, outputs=outputs)
        for mode in ai_edge_modes:
            from keras_vit.export.ai_edge_quantizer import quantize

            name = f"{mode}:ai-edge"
            log(f"[{next(step)}/{steps}] quantizing {name} ...")
            if float32_content is None:
                float32_content = contents.get("float32") or convert(model, "float32", batch_size=batch_size,
                                                                     graph=graph, tta=tta, outputs=outputs)
            contents[name] = quantize(float32_content, mode, calibration, float_ops=float_ops)
            files[name] = f"model_{mode}_aiedge.tflite"
            write_tflite(contents[name], os.path.join(tmp, files[name]), class_names, outputs=outputs)
        rows = []
        if test_images is not None:
            log(f"[{next(step)}/{steps}] evaluating and timing {len(contents)} files on {len(test_images)} test "
                f"images ...")
            images, labels = test_images, np.asarray(test_labels)
            reference = model
            if tta == "flip":
                from keras_vit import flip_averaged

                reference = flip_averaged(model)
            reference_logits = keras_logits(reference, images)
            gpu_runs, gpu_context = None, "not checked"
            if gpu_check:
                gpu_runs, gpu_context = _gpu_runs(tmp, files, images[:gpu_limit], log)
            rows = build_report(contents, images, labels, reference_logits, thread_counts, rounds, runs, files, gpu_runs)
            for row in rows:
                if row["mode"].endswith(":ai-edge"):
                    from keras_vit.export.ai_edge_quantizer import validate

                    # Where in the graph the quantizer's error arises: every tensor against the float file's.
                    row["ai_edge_validation"] = validate(float32_content, contents[row["mode"]], images[:validate_limit])
            write_report(
                rows,
                tmp,
                context={
                    "dataset": dataset_name or "-",
                    "images": len(labels),
                    "calibration images": len(calibration) if needs_calibration else "-",
                    "batch size": batch_size,
                    "test-time augmentation": tta,
                    "quantizers": ", ".join(quantizers) + (f" (float ops: {float_ops})" if float_ops and
                                                          "ai-edge" in quantizers else ""),
                    "runtime": "LiteRT (ai_edge_litert.interpreter), XNNPACK",
                    "CPU": int8_context(),
                    "GPU accelerator": gpu_context,
                },
            )
    return rows


# What `export_modes` writes into a folder (and the temporaries of its writes).
EXPORT_ENTRY = re.compile(r"(model_\w+\.tflite|model_\w+\.labels\.txt|report\.md|report\.json|\..+\.(tmp|old)-.*)$")


def is_tflite_file(path):
    """Whether `path` is a TFLite flatbuffer (its file identifier `TFL3`)."""
    return os.path.isfile(path) and read_head(path, 8)[4:8] == b"TFL3"


def is_export_folder(path):
    """Whether the folder `path` holds nothing but what `export_modes` writes."""
    return os.path.isdir(path) and all(EXPORT_ENTRY.match(name) for name in os.listdir(path))


def _gpu_runs(folder, files, images, log):
    """`({mode: AcceleratorRun}, context line)` of every file run on LiteRT's GPU accelerator."""
    from keras_vit.export.accelerator import AcceleratorRun, gpu_accelerator_available, run_on_gpu

    available, reason = gpu_accelerator_available()
    if not available:
        log(f"GPU accelerator not available, not run: {reason}")
        runs = {name: AcceleratorRun(status="unavailable", message=reason) for name in files}
        return runs, f"not available: {reason}"
    runs = {}
    for number, (name, file) in enumerate(files.items(), 1):
        log(f"  GPU accelerator {number}/{len(files)}: running {name} ...")
        runs[name] = run_on_gpu(os.path.join(folder, file), images, check_available=False)
        if runs[name].status != "runs":
            log(f"{name}: {runs[name].summary()}")
    note = next((r.latency_note for r in runs.values() if r.latency_note), "")
    return runs, (f"LiteRT CompiledModel, GPU with CPU fallback ({reason}), first {len(images)} test images, "
                  f"in a child process; latency: {note}")


__all__ = ["export_modes", "is_export_folder", "is_tflite_file", "labels_path"]
