"""Serving SavedModel: both signatures through saved_model_cli, parity with Keras, bytes input,
class names asset, atomic writes and CLI errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

CLASS_NAMES = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import keras

    from keras_vit.export.savedmodel import export_savedmodel
    from keras_vit import ViT

    keras.utils.set_random_seed(3)
    model = ViT(image_size=16, channels=3, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16,
                mlp_dim=32, num_classes=4)
    rng = np.random.default_rng(0)
    head = model.get_layer("head")
    # The head starts at zero (all classes equal); give it weights so classes differ.
    head.set_weights([rng.normal(0, 1.0, w.shape).astype("float32") for w in head.get_weights()])
    root = tmp_path_factory.mktemp("savedmodel")
    path = str(root / "served")
    export_savedmodel(model, path, CLASS_NAMES, top_k=3)
    return model, path, root


def _saved_model_cli(*args):
    # The console script of this interpreter's TensorFlow, run as a module so that the
    # test does not depend on PATH.
    command = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def test_show_lists_both_signatures(exported):
    _, path, _ = exported
    text = _saved_model_cli("show", "--dir", path, "--all")
    assert "signature_def['serving_default']" in text and "signature_def['serving_bytes']" in text
    assert "inputs['images']" in text and "shape: (-1, 16, 16, 3)" in text
    assert "inputs['image_bytes']" in text and "DT_STRING" in text
    for output in ("probabilities", "top_k_ids", "top_k_probabilities", "top_k_classes"):
        assert f"outputs['{output}']" in text


def test_run_on_npy_equals_keras(exported):
    model, path, root = exported
    images = np.random.default_rng(1).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
    np.save(root / "images.npy", images)
    out = root / "cli_out"
    _saved_model_cli(
        "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"images={root / 'images.npy'}", "--outdir", str(out), "--overwrite",
    )
    probabilities = np.load(out / "probabilities.npy")
    expected = _softmax(np.asarray(model(images), dtype="float64"))
    assert np.abs(probabilities - expected).max() < 1e-5
    top_ids = np.load(out / "top_k_ids.npy")
    np.testing.assert_array_equal(top_ids, np.argsort(-expected, axis=-1)[:, :3])


def test_bytes_signature_on_png_and_jpeg_gives_keras_class(exported):
    import tensorflow as tf

    model, path, _ = exported
    loaded = tf.saved_model.load(path)
    rng = np.random.default_rng(2)
    # Smooth random images (upscaled noise), so JPEG keeps the content; one is 32x32 and
    # must be resized in the graph, as the training pipeline resizes.
    small = rng.uniform(0, 255, (6, 4, 4, 3)).astype("float32")
    images = tf.cast(tf.image.resize(small, (16, 16)), tf.uint8).numpy()
    encoded = [tf.io.encode_png(image).numpy() for image in images[:3]]
    encoded += [tf.io.encode_jpeg(image, quality=95).numpy() for image in images[3:5]]
    big = tf.cast(tf.image.resize(small[5:], (32, 32)), tf.uint8).numpy()[0]
    encoded.append(tf.io.encode_png(big).numpy())
    result = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))

    decoded = [tf.io.decode_image(data, channels=3).numpy().astype("float32") for data in encoded]
    # Resized and rounded to whole pixel values, as the training pipeline's uint8 images are.
    decoded[-1] = np.round(tf.image.resize(decoded[-1], (16, 16)).numpy())
    expected = _softmax(np.asarray(model(np.stack(decoded)), dtype="float64"))
    np.testing.assert_array_equal(result["top_k_ids"].numpy()[:, 0], expected.argmax(-1))
    np.testing.assert_allclose(result["probabilities"].numpy(), expected, atol=1e-5)
    names = [name.decode() for name in result["top_k_classes"].numpy()[:, 0]]
    assert names == [CLASS_NAMES[i] for i in expected.argmax(-1)]


def test_class_names_asset(exported):
    _, path, _ = exported
    with open(os.path.join(path, "assets", "labels.txt")) as file:
        assert file.read().split("\n")[:4] == CLASS_NAMES


def test_uint8_serving_default(exported, tmp_path):
    import tensorflow as tf

    from keras_vit.export.savedmodel import export_savedmodel

    model, _, _ = exported
    path = str(tmp_path / "uint8")
    export_savedmodel(model, path, CLASS_NAMES, input_dtype="uint8")
    images = np.random.default_rng(4).integers(0, 256, (3, 16, 16, 3)).astype("uint8")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    expected = _softmax(np.asarray(model(images.astype("float32")), dtype="float64"))
    assert np.abs(serve(images=tf.constant(images))["probabilities"].numpy() - expected).max() < 1e-5


def test_export_replaces_whole_folder_and_leaves_nothing_on_error(exported, tmp_path):
    from keras_vit.export.savedmodel import export_savedmodel

    model, _, _ = exported
    path = tmp_path / "out"
    path.mkdir()
    (path / "stale.txt").write_text("old")
    # A folder of other files is never replaced unasked: it is refused and left as it was.
    with pytest.raises(ValueError, match=r"^path .*out exists and is a folder of 1 other entry \(stale.txt\): choose a "
                       r"new folder or a SavedModel's, or overwrite=True to replace it$"):
        export_savedmodel(model, str(path), CLASS_NAMES)
    assert os.listdir(path) == ["stale.txt"] and (path / "stale.txt").read_text() == "old"
    export_savedmodel(model, str(path), CLASS_NAMES, overwrite=True)
    assert not (path / "stale.txt").exists() and (path / "saved_model.pb").exists()
    with pytest.raises(ValueError, match="3 class names for a model with 4 outputs"):
        export_savedmodel(model, str(tmp_path / "bad"), CLASS_NAMES[:3])
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_cli_savedmodel_and_errors(exported, tmp_path, capsys):
    from keras_vit.training.cli import main

    model, _, _ = exported
    model.save(tmp_path / "model.keras")
    out = tmp_path / "served"
    assert main(["export", str(tmp_path / "model.keras"), "--format", "savedmodel", "--output", str(out)]) == 0
    assert (out / "saved_model.pb").exists()
    capsys.readouterr()
    status = main(["export", str(tmp_path / "model.keras"), "--format", "savedmodel", "--mode", "int8",
                   "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "applies to --format tflite" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_flip_averaged_savedmodel_serves_mean_of_both_softmaxes(exported, tmp_path):
    import tensorflow as tf

    from keras_vit.export.savedmodel import export_savedmodel

    model, _, _ = exported
    path = str(tmp_path / "served_tta")
    export_savedmodel(model, path, CLASS_NAMES, top_k=2, tta="flip")
    images = np.random.default_rng(4).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    # Independent of keras_vit.flip_averaged: the plain model on each image and its mirror.
    expected = (_softmax(np.asarray(model(images), "float64"))
                + _softmax(np.asarray(model(images[:, :, ::-1]), "float64"))) / 2
    assert np.abs(expected - _softmax(np.asarray(model(images), "float64"))).max() > 1e-3  # not mirror-symmetric
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["top_k_ids"].numpy(), np.argsort(-expected, axis=-1)[:, :2])


def test_flip_averaged_export_refuses_a_softmax_head(tmp_path):
    from keras_vit.export.savedmodel import export_savedmodel
    from keras_vit import ViT

    model = ViT(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3,
                classifier_activation="softmax")
    with pytest.raises(ValueError, match="needs a model that outputs logits.*classifier_activation 'softmax'"):
        export_savedmodel(model, str(tmp_path / "x"), tta="flip")
    with pytest.raises(ValueError, match=r"tta must be one of \('none', 'flip'\), got 'rotate'"):
        export_savedmodel(model, str(tmp_path / "x"), tta="rotate")
    assert not (tmp_path / "x").exists()
    # The TFLite path refuses both before any conversion starts.
    from keras_vit.export.graph import InferenceModule
    from keras_vit.export.tflite import convert

    with pytest.raises(ValueError, match="needs a model that outputs logits"):
        InferenceModule(model, tta="flip")
    with pytest.raises(ValueError, match=r"tta must be one of \('none', 'flip'\), got 'rotate'"):
        convert(model, "float32", tta="rotate")
