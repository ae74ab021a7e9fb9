"""TFLite export: parity with Keras per mode, graph facts, the int8-friendly graph, errors.

One tiny ViT is trained per module (a few seconds) on MNIST slices when ../shared/data
has them, plus the scikit-learn digits upscaled to 28x28 (bundled, so the "generated"
set always exists); `keras-vit export --mode all` then writes every mode once, and the
tests read those files.
"""

import json
import os
import types

import numpy as np
import pytest

from conftest import SHARED_DATA

CLASS_NAMES = [f"digit {i}" for i in range(10)]


def _arrays(spec, split="test", count=None, resize=False, shape=(28, 28, 1)):
    """uint8 images and labels of a split at the model's shape, as the commands hand them to export."""
    from keras_vit.training.data import load_splits_for_model, split_arrays

    splits = load_splits_for_model(spec, shape, resize=resize)
    return split_arrays(getattr(splits, split), shape, count)


def _generated_digits():
    """scikit-learn's 8x8 digits, bilinearly upscaled to 20x20 and centred in 28x28 like MNIST."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = tf.image.resize(digits.images[..., None] * (255.0 / 16.0), (20, 20)).numpy()
    out = np.zeros((len(images), 28, 28, 1), "float32")
    out[:, 4:24, 4:24] = images
    return np.clip(np.round(out), 0, 255).astype("uint8"), digits.target.astype("int64")


def _mnist(train=2000, test=500):
    path = os.path.join(SHARED_DATA, "mnist.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        return (data["x_train"][:train, ..., None], data["y_train"][:train],
                data["x_test"][:test, ..., None], data["y_test"][:test])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import keras

    from keras_vit import ViT
    from keras_vit.training.cli import main

    root = tmp_path_factory.mktemp("export_tflite")
    gen_x, gen_y = _generated_digits()
    gen_train, gen_test = slice(0, 1297), slice(1297, 1797)
    x_train, y_train = [gen_x[gen_train]], [gen_y[gen_train]]
    x_test, y_test = [gen_x[gen_test]], [gen_y[gen_test]]
    mnist = _mnist()
    if mnist is not None:
        x_train.append(mnist[0]), y_train.append(mnist[1]), x_test.append(mnist[2]), y_test.append(mnist[3])
    x_train, y_train = np.concatenate(x_train), np.concatenate(y_train)
    data_path = root / "data.npz"
    np.savez(data_path, x_train=x_train, y_train=y_train, x_test=np.concatenate(x_test), y_test=np.concatenate(y_test))

    keras.utils.set_random_seed(0)
    # 14x14 patches: every patch holds part of the digit. With 7x7 patches the blank
    # border patches of a briefly trained model have near-constant tokens, whose
    # LayerNorm amplifies int8 rounding (agreement 75-85%; see BENCHMARKS.md, section 3).
    model = ViT(image_size=28, channels=1, patch_size=14, num_layers=2, num_heads=2, hidden_dim=32,
                mlp_dim=64, num_classes=10)
    # The recipe of `keras-vit train` in small: AdamW with weight decay and label
    # smoothing keep weights and logits bounded, as in any real training run.
    epochs, batch_size = 8, 64
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, epochs * (len(x_train) // batch_size), warmup_target=2e-3, warmup_steps=len(x_train) // batch_size
    )
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    model.fit(x_train.astype("float32"), keras.utils.to_categorical(y_train, 10), epochs=epochs,
              batch_size=batch_size, verbose=0)
    run = root / "run"
    run.mkdir()
    model.save(run / "model.keras")
    spec = f"npz:{data_path}"
    (run / "config.json").write_text(json.dumps({"class_names": CLASS_NAMES, "dataset": spec}))

    folder = root / "all"
    assert main(["export", str(run), "--format", "tflite", "--mode", "all", "--output", str(folder)]) == 0
    return types.SimpleNamespace(
        model=model, run=run, folder=folder, spec=spec, root=root,
        gen=(gen_x[gen_test].astype("float32"), gen_y[gen_test]),
        mnist=None if mnist is None else (mnist[2].astype("float32"), mnist[3]),
    )


def _content(work, mode):
    return (work.folder / f"model_{mode}.tflite").read_bytes()


def _outputs(work, mode, images):
    from keras_vit.export.runtime import TFLiteRunner

    return TFLiteRunner(_content(work, mode)).predict(images)


def _keras(work, images):
    return np.asarray(work.model.predict(images, batch_size=256, verbose=0))


def test_model_learned_something(work):
    images, labels = work.gen
    assert np.mean(_keras(work, images).argmax(-1) == labels) > 0.7


@pytest.mark.parametrize("mode, tolerance", [("float32", 1e-5), ("float16", 2e-3)])
def test_float_probabilities_match_keras(work, mode, tolerance):
    images, _ = work.gen
    # The files end in a softmax: the Keras model's logits, as probabilities.
    assert np.abs(_outputs(work, mode, images) - _softmax(_keras(work, images))).max() < tolerance


@pytest.mark.parametrize("mode", ["dynamic", "int8", "int16x8"])
def test_quantized_top1_agrees_with_keras_on_generated_digits(work, mode):
    images, _ = work.gen
    agreement = np.mean(_outputs(work, mode, images).argmax(-1) == _keras(work, images).argmax(-1))
    assert agreement >= 0.97, f"{mode}: top-1 agreement {agreement:.3f}"


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_quantized_top1_agrees_with_keras_on_real_mnist(work, mode):
    if work.mnist is None:
        pytest.skip(f"mnist.npz not found in {SHARED_DATA} (real datasets live in ../shared/data)")
    images, labels = work.mnist
    assert len(images) == 500
    outputs, reference = _outputs(work, mode, images), _keras(work, images)
    assert np.mean(outputs.argmax(-1) == reference.argmax(-1)) >= 0.97
    assert np.mean(outputs.argmax(-1) == labels) > 0.7


def test_file_size_matches_parameter_count(work):
    from keras_vit.export.analysis import parameter_bytes

    params = work.model.count_params()
    sizes = {mode: parameter_bytes(_content(work, mode)) for mode in ("float32", "float16", "dynamic", "int8")}
    # The folded graph drops the LayerNorm gammas/betas (folded into the Dense after them).
    assert 0.9 * 4 * params <= sizes["float32"] <= 4 * params * 1.05 + 1024
    assert 0.9 * 2 * params <= sizes["float16"] <= 2 * params * 1.1 + 1024
    # Quantized: 1 byte per weight plus int32 biases and the few small float tensors.
    for mode in ("dynamic", "int8"):
        assert 0.9 * params <= sizes[mode] <= 1.6 * params, (mode, sizes[mode], params)


def test_graph_facts(work):
    from keras_vit.export.analysis import analyze_ops

    facts = {mode: analyze_ops(_content(work, mode)) for mode in ("float32", "float16", "dynamic", "int8", "int16x8")}
    for mode, fact in facts.items():
        assert fact["all_builtin"] and not fact["flex_ops"], mode
        assert fact["static"], (mode, fact["dynamic_ops"])
        assert fact["inputs"][0]["shape"] == [1, 28, 28, 3]  # RGB in for the gray model (MediaPipe feeds RGB)
    assert facts["int8"]["fully_integer"], facts["int8"]["float_ops"]
    assert facts["int16x8"]["fully_integer"]
    assert not facts["float32"]["fully_integer"] and not facts["dynamic"]["fully_integer"]
    assert facts["int8"]["inputs"][0]["dtype"] == "uint8"
    # The int8-friendly graph: no int8 BATCH_MATMUL, no SQUARED_DIFFERENCE.
    assert "BATCH_MATMUL" not in facts["int8"]["ops"] and "SQUARED_DIFFERENCE" not in facts["int8"]["ops"]
    assert "BATCH_MATMUL" in facts["float32"]["ops"]


def test_dynamic_batch_graph_is_reported_not_static(work):
    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.tflite import convert

    facts = analyze_ops(convert(work.model, "float32", batch_size=None))
    assert not facts["static"]


def test_report_rows_and_labels(work):
    from keras_vit.export.tflite import read_labels

    report = json.loads((work.folder / "report.json").read_text())
    rows = {row["mode"]: row for row in report["rows"]}
    assert list(rows) == ["float32", "float16", "dynamic", "int8", "int16x8"]
    assert rows["float32"]["max_probability_error"] < 1e-5 and rows["float32"]["agreement_with_keras"] == 1.0
    assert {row["output_kind"] for row in rows.values()} == {"probabilities"}
    # A tiny model's file is mostly graph, not weights; the 0.3x target is for real models.
    assert rows["int8"]["fully_integer"] and rows["int8"]["size_vs_float32"] < 0.6
    for row in rows.values():
        assert set(row["latency"]) == {"1", "2"} and row["latency"]["1"]["median_ms"] > 0
        assert "GPU" in row["gpu_analyzer_output"] and isinstance(row["gpu_compatible"], bool)
    text = (work.folder / "report.md").read_text()
    assert "| int8 |" in text and "fully integer" in text
    assert read_labels(str(work.folder / "model_int8.tflite")) == CLASS_NAMES


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"pooling": "gap", "use_class_token": False},
        {"representation_size": 16, "classifier_activation": "softmax"},
        {"input_scaling": "symmetric", "mean": [0.2], "std": [0.7]},
        {"stem_channels": [4, 8]},
        {"stem_channels": [6], "input_scaling": "symmetric", "mean": [0.2], "std": [0.7]},
    ],
)
def test_integer_graph_equals_keras_in_float(overrides):
    """The int8-friendly formulation (folded norms, scaling, per-head FC attention) computes
    the Keras model's function: checked in float32 TensorFlow before any quantization."""
    import keras

    from keras_vit.export.graph import InferenceModule
    from keras_vit import ViT

    model = ViT(image_size=(12, 8), channels=1, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16,
                mlp_dim=32, num_classes=5, **overrides)
    rng = np.random.default_rng(1)
    for weight in model.weights:  # random non-trivial values everywhere (the head starts at zero)
        value = rng.normal(0, 0.3, weight.shape) + (1.0 if "gamma" in weight.path else 0.0)
        weight.assign((np.abs(value) + 0.5 if "moving_variance" in weight.path else value).astype("float32"))
    images = rng.uniform(0, 255, (3, 12, 8, 1)).astype("float32")
    softmax_head = overrides.get("classifier_activation") == "softmax"
    module = InferenceModule(model, graph="folded", batch_size=3, outputs="probabilities" if softmax_head else "logits",
                             rgb_input=False)
    expected = np.asarray(model(images))
    np.testing.assert_allclose(module.serve(images).numpy(), expected, atol=1e-4, rtol=1e-4)
    # The default: RGB in (the luminance of tf.image.rgb_to_grayscale taken inside), probabilities out.
    rgb = rng.uniform(0, 255, (3, 12, 8, 3)).astype("float32")
    gray = rgb @ (np.array([0.2989, 0.5870, 0.1140]) / 0.9999).astype("float32")[:, None]
    outputs = np.asarray(model(gray), "float64")
    probabilities = outputs if softmax_head else _softmax(outputs)
    for graph in ("folded", "keras"):
        served = InferenceModule(model, graph=graph, batch_size=3).serve(rgb).numpy()
        np.testing.assert_allclose(served, probabilities, atol=1e-5)
    del keras


def test_flex_ops_are_an_error_naming_them():
    import keras
    import tensorflow as tf

    from keras_vit.export.tflite import convert

    class SingularValues(keras.layers.Layer):
        def call(self, images):
            return tf.linalg.svd(images[..., 0], compute_uv=False)

    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(SingularValues()(inputs)))
    with pytest.raises(ValueError, match=r"not TFLite builtins \(Svd\).*Flex"):
        convert(model, "float32")


def test_evaluate_tflite_matches_direct_computation(work):
    from keras_vit.export.evaluate import evaluate_tflite

    path = str(work.folder / "model_int8.tflite")
    test_images, test_labels = _arrays(work.spec)
    metrics = evaluate_tflite(path, test_images, test_labels, keras_model=work.model, num_threads=1)
    images, labels = work.gen
    if work.mnist is not None:  # the test split: the generated digits, then the MNIST slice
        images, labels = np.concatenate([images, work.mnist[0]]), np.concatenate([labels, work.mnist[1]])
    outputs = _outputs(work, "int8", images)
    assert metrics["num_images"] == len(labels)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(outputs.argmax(-1) == labels))
    assert metrics["agreement_with_keras"] >= 0.97
    assert evaluate_tflite(path, *_arrays(work.spec, count=300), num_threads=1)["num_images"] == 300
    assert metrics["size_bytes"] == os.path.getsize(path) and metrics["median_latency_ms"] > 0
    assert evaluate_tflite(path, *_arrays(work.spec, count=10))["agreement_with_keras"] is None


def test_profile_times_every_op(work):
    from keras_vit.export.profile import profile_ops, summarize_profile

    content = _content(work, "int8")
    rows = profile_ops(content, repeats=2, inner=1)
    from keras_vit.export.analysis import analyze_ops

    assert len(rows) == sum(analyze_ops(content)["ops"].values())
    assert all(row["ms"] is not None and row["ms"] > 0 for row in rows)
    summary = {(r["op"], r["xnnpack"]) for r in summarize_profile(rows)}
    assert ("FULLY_CONNECTED", True) in summary  # weight projections run in XNNPACK


# --- bad input: one-line errors, exit status 2, nothing left behind -------------------


def _cli(argv, capsys):
    from keras_vit.training.cli import main

    status = main(argv)
    err = capsys.readouterr().err.strip()
    return status, err


def _leftovers(folder):
    return [name for name in os.listdir(folder) if ".tmp" in name or name.endswith(".tflite")]


def test_missing_and_corrupt_keras_file(work, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    status, err = _cli(["export", str(tmp_path / "nope.keras"), "--output", str(out)], capsys)
    assert status == 2 and "model not found" in err and "\n" not in err
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    status, err = _cli(["export", str(bad), "--output", str(out)], capsys)
    assert status == 2 and "not a valid .keras file" in err
    assert _leftovers(tmp_path) == []


def test_unknown_mode(work, tmp_path, capsys):
    status, err = _cli(["export", str(work.run), "--mode", "int4", "--output", str(tmp_path / "m.tflite")], capsys)
    assert status == 2 and "unknown mode 'int4'" in err and "float32, float16, dynamic, int8, int16x8" in err
    assert _leftovers(tmp_path) == []


def test_int8_without_calibration_data(work, tmp_path, capsys):
    source = tmp_path / "model.keras"
    source.write_bytes((work.run / "model.keras").read_bytes())  # no config.json: no dataset
    status, err = _cli(["export", str(source), "--mode", "int8", "--output", str(tmp_path / "m.tflite")], capsys)
    assert status == 2 and "calibration images" in err and "--dataset SPEC is needed" in err
    status, err = _cli(["export", str(source), "--mode", "all", "--output", str(tmp_path / "all")], capsys)
    assert status == 2 and "calibration images" in err and "--dataset SPEC is needed" in err
    assert _leftovers(tmp_path) == [] and not (tmp_path / "all").exists()


def test_single_mode_export_writes_file_and_labels(work, tmp_path, capsys):
    from keras_vit.export.tflite import read_labels

    out = tmp_path / "digits.tflite"
    status, _ = _cli(["export", str(work.run), "--mode", "dynamic", "--output", str(out)], capsys)
    assert status == 0 and out.exists()
    assert read_labels(str(out)) == CLASS_NAMES
    assert sorted(os.listdir(tmp_path)) == ["digits.labels.txt", "digits.tflite"]


def test_evaluate_errors(work, tmp_path):
    from keras_vit.export.evaluate import evaluate_tflite

    images, labels = _arrays(work.spec, count=10)
    with pytest.raises(ValueError, match="TFLite model not found"):
        evaluate_tflite(str(tmp_path / "missing.tflite"), images, labels)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a valid .tflite file"):
        evaluate_tflite(str(corrupt), images, labels)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(_content(work, "float32")[:2000])
    with pytest.raises(ValueError, match="LiteRT cannot load|not a valid"):
        evaluate_tflite(str(truncated), images, labels)
    # 8x8 digits are not the 28x28 images the model takes: refused where they are loaded...
    with pytest.raises(ValueError, match=r"images of size 8x8x1.*takes 28x28x1"):
        _arrays("digits")
    with pytest.raises(ValueError, match=r"10 test images need as many labels \[N\], got labels of shape \[9\]"):
        evaluate_tflite(str(work.folder / "model_float32.tflite"), images, labels[:9])
    # ...and by export, which checks the arrays it is given.
    with pytest.raises(ValueError, match=r"test images have shape \[10, 8, 8, 1\], the model takes \[N, 28, 28, 3\]"):
        evaluate_tflite(str(work.folder / "model_float32.tflite"), images[:, :8, :8], labels)


def test_evaluate_command_on_tflite(work, tmp_path, capsys):
    status, err = _cli(["evaluate", str(work.folder / "model_int8.tflite"), "--dataset", "digits"], capsys)
    assert status == 2 and "28x28x3" in err and "\n" not in err


def test_resize_is_opt_in_or_the_models_own_training_data(work, tmp_path, capsys):
    import shutil

    from keras_vit.export.evaluate import evaluate_tflite

    tflite = str(work.folder / "model_float32.tflite")
    # Asked for: the 8x8 digits are resized to the model's 28x28, for Keras and LiteRT alike.
    metrics = evaluate_tflite(tflite, *_arrays("digits", resize=True), keras_model=work.model)
    assert metrics["num_images"] == 360 and metrics["agreement_with_keras"] == 1.0
    assert metrics["max_probability_error"] < 1e-5 and metrics["output_kind"] == "probabilities"
    status, err = _cli(["evaluate", tflite, "--dataset", "digits"], capsys)
    assert status == 2 and err.endswith("or --resize to resize them as training does") and "\n" not in err
    assert _cli(["evaluate", tflite, "--dataset", "digits", "--resize", "--limit", "50"], capsys)[0] == 0
    # A model trained on resized images (its config.json names that dataset): resized unasked.
    run = tmp_path / "run"
    shutil.copytree(work.run, run)
    (run / "config.json").write_text(json.dumps({"class_names": CLASS_NAMES, "dataset": "digits"}))
    output = tmp_path / "int8.tflite"
    assert _cli(["export", str(run), "--mode", "int8", "--output", str(output)], capsys) == (0, "")
    assert _cli(["evaluate", str(output), "--keras-model", str(run), "--limit", "50"], capsys)[0] == 0


def test_int8_float_fallback_keeps_attention_and_gelu_float(work):
    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.runtime import TFLiteRunner
    from keras_vit.export.tflite import convert

    calibration, _ = _arrays(work.spec, "train", 100)
    content = convert(work.model, "int8", calibration, input_type="uint8", float_fallback=("attention", "gelu"))
    facts = analyze_ops(content)
    assert not facts["fully_integer"]
    assert set(facts["float_ops"]) >= {"BATCH_MATMUL", "SOFTMAX", "GELU"}
    assert "FULLY_CONNECTED" not in facts["float_ops"]  # the projections stay int8
    assert facts["inputs"][0]["dtype"] == "uint8"
    images, _ = work.gen
    outputs = TFLiteRunner(content).predict(images)
    assert np.mean(outputs.argmax(-1) == _keras(work, images).argmax(-1)) >= 0.97
    with pytest.raises(ValueError, match="unknown float fallback layernorm"):
        convert(work.model, "int8", calibration, float_fallback=("layernorm",))
    with pytest.raises(ValueError, match="applies to mode int8"):
        convert(work.model, "float16", float_fallback=("gelu",))


def test_calibration_images_come_from_training_split_and_check_size(work):
    from keras_vit.images import model_image_shape
    from keras_vit.training.evaluation import ModelData, model_data

    data = model_data(str(work.run), model_image_shape(work.model), work.spec)
    assert isinstance(data, ModelData) and data.image_shape == (28, 28, 1)
    images = data.calibration_arrays(50)
    assert images.shape == (50, 28, 28, 1) and images.dtype == np.uint8
    assert images.max() > 100  # raw 0..255 pixels, not rescaled
    with np.load(str(work.spec.split(":", 1)[1])) as arrays:
        train = {image.tobytes() for image in arrays["x_train"]}
    assert all(image.tobytes() in train for image in images)
    np.testing.assert_array_equal(data.calibration_arrays(50), images)  # seeded: the same sample each time
    with pytest.raises(ValueError, match="images of size 8x8x1.*28x28x1"):
        model_data(str(work.run), (28, 28, 1), "digits")
    with pytest.raises(ValueError, match="calibration size must be at least 1"):
        data.calibration_arrays(0)


def test_int8_per_tensor_weights_are_smaller_and_agree(work):
    """weight_granularity="tensor": one scale per FULLY_CONNECTED weight matrix instead of one
    per output channel; the file shrinks by the per-channel parameters, top-1 still agrees."""
    from tensorflow.lite.tools import flatbuffer_utils

    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.runtime import TFLiteRunner
    from keras_vit.export.tflite import convert

    calibration, _ = _arrays(work.spec, "train", 100)
    per_channel = _content(work, "int8")
    per_tensor = convert(work.model, "int8", calibration, input_type="uint8", weight_granularity="tensor")
    assert analyze_ops(per_tensor)["fully_integer"]

    def largest_scale_count(content):
        graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(content)).subgraphs[0]
        return max(len(t.quantization.scale) for t in graph.tensors
                   if t.quantization is not None and t.quantization.scale is not None)

    assert largest_scale_count(per_channel) > 1
    assert largest_scale_count(per_tensor) == 1
    assert len(per_tensor) < len(per_channel)
    images, _ = work.gen
    outputs = TFLiteRunner(per_tensor).predict(images)
    assert np.mean(outputs.argmax(-1) == _keras(work, images).argmax(-1)) >= 0.97
    with pytest.raises(ValueError, match="weight_granularity must be one of"):
        convert(work.model, "int8", calibration, weight_granularity="row")


def _softmax(logits):
    from numpy_reference import softmax

    return softmax(np.asarray(logits, "float64"))


def _flip_averaged_probabilities(model, images):
    """Mean softmax of the plain Keras model on the images and on their mirror images."""
    plain = model.predict(images, batch_size=256, verbose=0)
    mirrored = model.predict(images[:, :, ::-1], batch_size=256, verbose=0)
    return (_softmax(plain) + _softmax(mirrored)) / 2


@pytest.mark.parametrize("graph, batch_size", [("folded", 2), ("keras", 2), ("keras", None)])
def test_flip_averaged_inference_graph_equals_mean_of_both_softmaxes(graph, batch_size):
    from keras_vit.export.graph import InferenceModule
    from keras_vit import ViT

    model = ViT(image_size=(8, 12), channels=3, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16,
                mlp_dim=32, num_classes=5, stem_channels=[6])
    rng = np.random.default_rng(2)
    for weight in model.weights:
        value = rng.normal(0, 0.3, weight.shape) + (1.0 if "gamma" in weight.path else 0.0)
        weight.assign((np.abs(value) + 0.5 if "moving_variance" in weight.path else value).astype("float32"))
    images = rng.uniform(0, 255, (2, 8, 12, 3)).astype("float32")
    expected = _flip_averaged_probabilities(model, images)
    assert np.abs(expected - _softmax(model.predict(images, verbose=0))).max() > 1e-3  # the flip matters
    probabilities = InferenceModule(model, graph=graph, batch_size=batch_size, tta="flip").serve(images).numpy()
    assert probabilities.shape == (2, 5)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    logits = InferenceModule(model, graph=graph, batch_size=batch_size, tta="flip", outputs="logits").serve(images)
    np.testing.assert_allclose(_softmax(logits.numpy()), expected, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), np.log(expected), atol=1e-4)


def test_flip_averaged_tflite_float32_and_int8(work, tmp_path, capsys):
    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.runtime import TFLiteRunner
    from keras_vit.export.tflite import convert, read_labels

    images, _ = work.gen
    expected = _flip_averaged_probabilities(work.model, images)
    out = tmp_path / "averaged.tflite"
    status, _ = _cli(["export", str(work.run), "--mode", "float32", "--tta", "flip", "--output", str(out)], capsys)
    assert status == 0 and read_labels(str(out)) == CLASS_NAMES
    runner = TFLiteRunner(out.read_bytes())
    assert runner.input_shape == (1, 28, 28, 3)  # the mirror image is made inside the file (RGB in, gray inside)
    np.testing.assert_allclose(runner.predict(images), expected, atol=1e-5)  # the averaged probabilities themselves

    calibration = images[:100]
    content = convert(work.model, "int8", calibration, input_type="uint8", tta="flip")
    facts = analyze_ops(content)
    assert facts["fully_integer"] and facts["static"] and facts["all_builtin"], facts
    agreement = np.mean(TFLiteRunner(content).predict(images).argmax(-1) == expected.argmax(-1))
    assert agreement >= 0.95, f"int8 flip-averaged: top-1 agreement {agreement:.3f}"


def test_flip_averaged_export_report_compares_with_flip_averaged_keras(work, tmp_path):
    import json as json_module

    from keras_vit.export.bundle import export_modes

    folder = tmp_path / "report"
    test_images, test_labels = _arrays(work.spec, count=100)
    rows = export_modes(work.model, str(folder), ("float32",), test_images=test_images, test_labels=test_labels,
                        class_names=CLASS_NAMES, dataset_name=work.spec, rounds=1, runs=2, tta="flip")
    report = json_module.loads((folder / "report.json").read_text())
    assert report["context"]["test-time augmentation"] == "flip"
    assert rows[0]["max_probability_error"] < 1e-5 and rows[0]["agreement_with_keras"] == 1.0


def test_both_quantizers_side_by_side_and_ai_edge_alone(work, tmp_path, capsys):
    """`--quantizer both`: the converter's and AI Edge Quantizer's files in one report, each
    compared with Keras on the same images; `--quantizer ai-edge --mode int8` one file."""
    folder = tmp_path / "both"
    status, err = _cli(["export", str(work.run), "--dataset", work.spec, "--mode", "all", "--quantizer", "both",
                        "--output", str(folder), "--limit", "200", "--no-gpu-check", "--calibration-size", "64"], capsys)
    assert status == 0, err
    report = json.loads((folder / "report.json").read_text())
    rows = {row["mode"]: row for row in report["rows"]}
    assert set(rows) >= {"int8", "int8:ai-edge", "int16x8:ai-edge", "dynamic:ai-edge", "weight_only:ai-edge"}
    assert report["context"]["quantizers"] == "converter, ai-edge"
    for mode in ("int8:ai-edge", "int16x8:ai-edge", "dynamic:ai-edge", "weight_only:ai-edge"):
        assert rows[mode]["agreement_with_keras"] >= 0.95, (mode, rows[mode]["agreement_with_keras"])
        assert rows[mode]["size_bytes"] < rows["float32"]["size_bytes"], mode
    from keras_vit.export.analysis import parameter_bytes

    weights = {name: parameter_bytes((folder / f"model_{name}.tflite").read_bytes()) for name in ("int8_aiedge", "float32")}
    assert weights["int8_aiedge"] < 0.5 * weights["float32"]  # int8 weights (the files share a fixed overhead)
    # AI Edge Quantizer's validate(): per-tensor errors of each of its files, in the report.
    validation = rows["int8:ai-edge"]["ai_edge_validation"]
    assert validation["tensors"] > 10 and validation["max_mse"] >= validation["median_mse"] > 0
    assert validation["worst"][0][1] == validation["max_mse"]
    text = (folder / "report.md").read_text()
    assert "## AI Edge Quantizer: where the error arises (validate)" in text and "**int16x8:ai-edge**" in text
    # Every file is told what it is for, the AI Edge Quantizer's ones too.
    assert "- **int8:ai-edge** (model_int8_aiedge.tflite): the CPU (XNNPACK integer kernels)" in text
    assert "- **weight_only:ai-edge** (model_weight_only_aiedge.tflite): a smaller file only" in text
    single = tmp_path / "int8_aiedge.tflite"
    status, err = _cli(["export", str(work.run), "--dataset", work.spec, "--mode", "int8", "--quantizer", "ai-edge",
                        "--calibration-size", "64", "--output", str(single)], capsys)
    assert status == 0, err
    assert single.read_bytes() != (folder / "model_int8.tflite").read_bytes()
    status, err = _cli(["export", str(work.run), "--mode", "int8", "--quantizer", "both", "--output",
                        str(tmp_path / "x.tflite")], capsys)
    assert status == 2 and "--quantizer both compares the two quantizers in the report of --mode all" in err


def test_export_modes_refuses_what_it_cannot_use(work, tmp_path):
    from keras_vit.export.bundle import export_modes

    images, labels = _arrays(work.spec, count=8)
    cases = [
        (dict(quantizers=("tflite-converter",)), "quantizers must be among converter, ai-edge, got tflite-converter"),
        (dict(modes=("int8",)), r"mode\(s\) int8 need calibration images: pass calibration_images"),
        (dict(test_images=images, test_labels=labels[:3]), r"8 test images need as many labels \[N\], got labels of shape \[3\]"),
        (dict(test_images=images), r"8 test images need as many labels \[N\], got labels of shape \[0\]"),
        (dict(modes=("float16",), float_fallback=("gelu",)), "float fallback applies to the int8 mode"),
    ]
    for options, message in cases:
        options = {"modes": ("float32",), **options}
        with pytest.raises(ValueError, match=message):
            export_modes(work.model, str(tmp_path / "out"), gpu_check=False, log=lambda *_: None, **options)
    assert not (tmp_path / "out").exists()  # nothing written for a refused export
