"""Every exported mode run for real on LiteRT's GPU accelerator (export.accelerator), in a child process.

Without a GPU the accelerator runs on Mesa >= 25's lavapipe (software Vulkan; `.ci/run` installs it);
where it is missing the GPU tests skip with the reason, which says how to enable it. A small hybrid
ViT (a convolutional stem) is trained for a few seconds on the scikit-learn digits, upscaled to 28x28.
"""

import json
import types

import numpy as np
import pytest

from test_export_tflite import CLASS_NAMES, _generated_digits
from numpy_reference import softmax

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")


def _require_gpu():
    from keras_vit.export.accelerator import gpu_accelerator_available

    available, reason = gpu_accelerator_available()
    if not available:
        pytest.skip(f"LiteRT GPU accelerator not available: {reason}")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import keras

    from keras_vit.export.bundle import export_modes
    from keras_vit import ViT
    from keras_vit.training.data import load_splits_for_model, split_arrays

    root = tmp_path_factory.mktemp("export_accelerator")
    x, y = _generated_digits()
    train, test = slice(0, 1297), slice(1297, 1797)
    data = root / "data.npz"
    np.savez(data, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    keras.utils.set_random_seed(0)
    model = ViT(image_size=28, channels=1, patch_size=14, stem_channels=[8], num_layers=2, num_heads=2,
                hidden_dim=32, mlp_dim=64, num_classes=10)
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    model.fit(x[train].astype("float32"), keras.utils.to_categorical(y[train], 10), epochs=3, batch_size=64,
              verbose=0)
    spec = f"npz:{data}"
    folder = root / "all"
    splits = load_splits_for_model(spec, (28, 28, 1))
    test_images, test_labels = split_arrays(splits.test, (28, 28, 1), 100)
    rows = export_modes(model, str(folder), MODES, calibration_images=split_arrays(splits.train, (28, 28, 1), 64)[0],
                        test_images=test_images, test_labels=test_labels, class_names=CLASS_NAMES,
                        dataset_name=spec, rounds=1, runs=2, gpu_limit=100, quantizers=("converter", "ai-edge"),
                        log=lambda *_: None)
    run = root / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"class_names": CLASS_NAMES, "dataset": spec}))
    return types.SimpleNamespace(model=model, folder=folder, rows={r["mode"]: r for r in rows}, spec=spec,
                                 run=run, images=x[test].astype("float32"), labels=y[test])


def test_model_learned_something(work):
    assert work.rows["float32"]["accuracy"] > 0.6


def test_ai_edge_quantizer_files_run_on_the_gpu_or_fail_without_aborting(work):
    """AI Edge Quantizer's files on the GPU accelerator: dynamic and int8 run fully accelerated;
    int16x8 (int16 inputs, moved as float16 bytes by the child) runs with its int16 ops on the
    CPU; weight_only's DEQUANTIZE of constant weights fails to compile there (a Python
    exception in an app, not an abort), and the report sends the GPU to float16."""
    _require_gpu()
    for mode in ("dynamic:ai-edge", "int8:ai-edge", "int16x8:ai-edge"):
        gpu = work.rows[mode]["gpu"]
        assert gpu["status"] == "runs", (mode, gpu["summary"])
        assert gpu["agreement_with_cpu"] >= 0.95, (mode, gpu)
    assert work.rows["int8:ai-edge"]["gpu"]["fully_accelerated"]
    assert work.rows["weight_only:ai-edge"]["gpu"]["status"] in ("runs", "failed")
    assert all(row["gpu"]["status"] != "aborted" for row in work.rows.values())
    text = (work.folder / "report.md").read_text()
    assert "## Recommendation" in text and "model_float16.tflite" in text.split("## Recommendation")[1]


def test_no_one_way_split_in_any_exported_file(work):
    """A SPLIT into one part aborts the GPU accelerator in any precision (bench/experiments/
    gpu_int8_repro.py); the folded graph's per-head attention no longer emits one at batch 1."""
    from keras_vit.export.accelerator import known_gpu_aborts, tiny_model_bytes
    from keras_vit.export.analysis import load_model_object, op_name

    for mode in MODES:
        content = (work.folder / f"model_{mode}.tflite").read_bytes()
        model = load_model_object(content)
        splits = [op for op in model.subgraphs[0].operators if op_name(model, op) == "SPLIT"]
        assert all(len(op.outputs) > 1 for op in splits), mode
        assert known_gpu_aborts(content) == [] and work.rows[mode]["gpu_known_aborts"] == []
    assert known_gpu_aborts(tiny_model_bytes("one_way_split")) == [
        "SPLIT into one part (object_reader.cc:373 Check failed: CanReadValue)"]


def test_every_mode_runs_on_the_gpu_and_agrees(work):
    _require_gpu()
    for mode in MODES:
        gpu = work.rows[mode]["gpu"]
        assert gpu["status"] == "runs", (mode, gpu["summary"])
        assert gpu["num_images"] == 100 and gpu["latency"]["median_ms"] > 0
        assert gpu["latency_note"]  # e.g. "lavapipe (software Vulkan), not a phone"
        # As close to Keras as the same file on the CPU interpreter (on the same 100 images).
        cpu_agreement = work.rows[mode]["agreement_with_keras"]
        assert gpu["agreement_with_keras"] >= min(0.95, cpu_agreement - 0.03), (mode, gpu, cpu_agreement)
    for mode in ("float32", "float16", "dynamic", "int8"):
        assert work.rows[mode]["gpu"]["fully_accelerated"], mode
    # The GPU computes in float16 by default (as on a phone): float files agree with the CPU
    # interpreter to float16 precision (the logits here are several units).
    for mode in ("float32", "float16"):
        assert work.rows[mode]["gpu"]["max_error_vs_cpu"] < 3e-2, mode
        assert work.rows[mode]["gpu"]["max_error_vs_keras"] < 3e-2, mode
        assert work.rows[mode]["gpu"]["agreement_with_cpu"] == 1.0, mode
    # int8 runs dequantized on the GPU: near the CPU's int8 logits, not equal to them.
    assert work.rows["int8"]["gpu"]["agreement_with_cpu"] >= 0.9
    # int16x8: the GPU has no int16 kernels, so most ops fall back to the CPU (and are counted).
    int16 = work.rows["int16x8"]["gpu"]
    assert not int16["fully_accelerated"] and int16["cpu_ops"] > int16["gpu_ops"] > 0


def test_float32_file_on_the_gpu_in_float32_equals_the_cpu_interpreter(work):
    _require_gpu()
    from keras_vit.export.accelerator import run_on_gpu
    from keras_vit.export.runtime import TFLiteRunner

    path = work.folder / "model_float32.tflite"
    images = work.images[:50]
    result = run_on_gpu(str(path), images, runs=2, enforce_f32=True)
    assert result.runs and result.fully_accelerated
    cpu = TFLiteRunner(path.read_bytes()).predict(images)
    assert np.abs(result.outputs - cpu).max() < 1e-4
    # The file outputs probabilities: the softmax of Keras's logits.
    keras_probabilities = softmax(np.asarray(work.model.predict(images, verbose=0), "float64"))
    assert result.outputs_probabilities and np.abs(result.probabilities() - keras_probabilities).max() < 1e-5


def test_report_shows_the_run_and_the_static_analyzer(work):
    text = (work.folder / "report.md").read_text()
    assert "GPU accelerator (run)" in text and "GPU Analyzer (static)" in text
    assert "## Which file for which accelerator" in text and "float16 for the GPU" in text
    rows = json.loads((work.folder / "report.json").read_text())["rows"]
    # Every file runs, but AI Edge Quantizer's weight_only, which the GPU refuses (see above).
    assert all(row["gpu"]["status"] in ("runs", "unavailable") for row in rows if row["mode"] != "weight_only:ai-edge")
    assert all(isinstance(row["gpu_compatible"], bool) for row in rows)  # the Analyzer's verdict stays


def test_abort_in_the_child_is_reported_not_fatal(tmp_path):
    """A delegate CHECK failure kills the child only; the caller gets status, stage and message."""
    _require_gpu()
    from keras_vit.export.accelerator import run_on_gpu, tiny_model_bytes

    bad = tmp_path / "one_way_split.tflite"
    bad.write_bytes(tiny_model_bytes("one_way_split"))
    result = run_on_gpu(str(bad), np.ones((2, 2, 2, 1), "float32"))
    assert result.status == "aborted" and result.stage == "compiling"
    assert result.message == "object_reader.cc:373 Check failed: CanReadValue(node_input_index) (SIGABRT)"
    assert result.outputs is None and result.summary().startswith("ABORTS")
    good = tmp_path / "add.tflite"
    good.write_bytes(tiny_model_bytes("add"))
    result = run_on_gpu(str(good), np.arange(8, dtype="float32").reshape(2, 2, 2, 1))
    assert result.runs and result.fully_accelerated
    np.testing.assert_allclose(result.outputs, 2 * np.arange(8).reshape(2, 4))


def test_unavailable_accelerator_is_reported_with_the_reason(work, tmp_path, monkeypatch, capsys):
    import keras_vit.export.accelerator as accelerator
    from keras_vit.export.bundle import export_modes
    from keras_vit.training.cli import main

    reason = f"no Vulkan loader (libvulkan.so.1) for LiteRT's WebGPU accelerator: {accelerator.ENABLE_HINT}"
    monkeypatch.setattr(accelerator, "gpu_accelerator_available", lambda: (False, reason))
    rows = export_modes(work.model, str(tmp_path / "report"), ("float32",), test_images=work.images[:50],
                        test_labels=work.labels[:50], class_names=CLASS_NAMES, rounds=1, runs=2, log=lambda *_: None)
    assert rows[0]["gpu"]["status"] == "unavailable" and "apt-get install" in rows[0]["gpu"]["message"]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "not run (no GPU accelerator here)" in text and "bookworm-backports" in text
    # keras-vit evaluate --accelerator gpu: one line with the reason, exit status 2, no traceback.
    status = main(["evaluate", str(work.folder / "model_float32.tflite"), "--dataset", work.spec, "--accelerator", "gpu",
                   "--limit", "10"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "apt-get install" in err and "\n" not in err


def test_missing_vulkan_loader_gives_the_enabling_reason(monkeypatch):
    import ctypes

    import keras_vit.export.accelerator as accelerator

    def no_vulkan(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_vulkan)
    reason = accelerator._static_unavailable_reason()
    assert "libvulkan.so.1" in reason and "apt-get install -y -t bookworm-backports mesa-vulkan-drivers" in reason


def test_evaluate_command_on_the_gpu(work, tmp_path, capsys):
    _require_gpu()
    from keras_vit.training.cli import main

    output = tmp_path / "metrics.json"
    status = main(["evaluate", str(work.folder / "model_int8.tflite"), "--accelerator", "gpu",
                   "--keras-model", str(work.run), "--limit", "50", "--output", str(output)])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads(output.read_text())
    assert metrics["gpu_status"] == "runs" and metrics["fully_accelerated"] and metrics["num_images"] == 50
    assert metrics["agreement_with_cpu"] >= 0.9 and metrics["agreement_with_keras"] >= 0.9
    assert metrics["median_latency_ms"] > 0 and metrics["latency_note"]
