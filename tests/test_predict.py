"""`keras-vit predict` and `export.predictor`: the same classes and probabilities from a .keras file,
a training folder, a SavedModel and a .tflite file, equal to an independent computation; table,
JSON and CSV output; one-line errors for bad input."""

import csv
import io
import json
import os

import numpy as np
import pytest

from keras_vit.training.cli import main

CLASS_NAMES = ["ant", "bee", "cat", "dog"]
SIZE = 16


def _softmax(logits):
    logits = np.asarray(logits, dtype="float64")
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def _tiny_vit(seed=3, **kwargs):
    import keras

    from keras_vit import ViT

    keras.utils.set_random_seed(seed)
    options = dict(image_size=SIZE, channels=3, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
                   num_classes=len(CLASS_NAMES))
    model = ViT(**{**options, **kwargs})
    # The head starts at zero (all classes equal); give it weights so that classes differ.
    rng = np.random.default_rng(seed)
    head = model.get_layer("head")
    head.set_weights([rng.normal(0, 1.0, w.shape).astype("float32") for w in head.get_weights()])
    return model


def _smooth(rng, height, width, channels=3):
    """Upscaled noise: an image that JPEG keeps close to its pixels."""
    import tensorflow as tf

    small = rng.uniform(0, 255, (4, 4, channels)).astype("float32")
    return np.round(tf.image.resize(small, (height, width)).numpy()).clip(0, 255).astype("uint8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from PIL import Image

    from keras_vit.export.savedmodel import export_savedmodel
    from keras_vit.export.tflite import convert, write_tflite

    root = tmp_path_factory.mktemp("predict")
    model = _tiny_vit()
    run = root / "run"  # a training output folder
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"class_names": CLASS_NAMES}))
    export_savedmodel(model, str(root / "served"), CLASS_NAMES)
    write_tflite(convert(model, "float32"), str(root / "model.tflite"), CLASS_NAMES)

    rng = np.random.default_rng(5)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(_smooth(rng, SIZE, SIZE)).save(images / "a.png")
    Image.fromarray(_smooth(rng, SIZE, SIZE)).save(images / "sub" / "b.png")
    Image.fromarray(_smooth(rng, 40, 24)).save(images / "big.png")  # 24x40: resized like training does
    Image.fromarray(_smooth(rng, SIZE, SIZE, 1)[..., 0], mode="L").save(images / "gray.png")  # gray -> RGB
    Image.fromarray(_smooth(rng, SIZE, SIZE)).save(images / "c.jpg", quality=95)
    (images / "notes.txt").write_text("not an image")  # skipped: not an image extension
    models = {"keras": str(run / "model.keras"), "training folder": str(run), "savedmodel": str(root / "served"),
              "tflite": str(root / "model.tflite")}
    return model, root, images, models


def _expected(model, files):
    """What training's pipeline gives, computed independently: PIL decoding, bilinear resize rounded
    to whole pixel values, the Keras model, softmax."""
    import tensorflow as tf
    from PIL import Image

    batch = []
    for path in files:
        if str(path).endswith(".jpg"):
            # TensorFlow decodes JPEG with libjpeg's fast integer IDCT (training does too); PIL's
            # accurate one differs by up to ~13 levels on this small image, so it cannot be the reference.
            with open(path, "rb") as file:
                pixels = tf.io.decode_jpeg(file.read(), channels=3, dct_method="INTEGER_FAST").numpy()
            pixels = pixels.astype("float32")
        else:
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype="float32")
        if pixels.shape[:2] != (SIZE, SIZE):
            pixels = np.clip(np.round(tf.image.resize(pixels, (SIZE, SIZE), method="bilinear").numpy()), 0, 255)
        batch.append(pixels)
    return _softmax(model.predict(np.stack(batch), verbose=0))


def _predict_json(capsys, *argv):
    capsys.readouterr()
    assert main(["predict", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _probabilities(records):
    """`[N, K]` probabilities from JSON records that list every class."""
    result = np.zeros((len(records), len(CLASS_NAMES)))
    for row, record in enumerate(records):
        for prediction in record["predictions"]:
            assert CLASS_NAMES[prediction["index"]] == prediction["class"]
            result[row, prediction["index"]] = prediction["probability"]
    return result


def test_every_model_format_gives_the_training_pipelines_probabilities(setup, capsys):
    model, _, images, models = setup
    results = {kind: _predict_json(capsys, path, str(images), "--top-k", "10", "--batch-size", "2")
               for kind, path in models.items()}
    files = [record["image"] for record in results["keras"]]
    assert [os.path.relpath(f, images) for f in files] == ["a.png", "big.png", "c.jpg", "gray.png", "sub/b.png"]
    expected = _expected(model, files)
    assert len(set(expected.argmax(-1))) > 1  # the images do not all get the same class
    for kind, records in results.items():
        assert [record["image"] for record in records] == files, kind
        assert all(len(record["predictions"]) == len(CLASS_NAMES) for record in records), kind  # --top-k clipped
        probabilities = _probabilities(records)
        np.testing.assert_allclose(probabilities, expected, atol=1e-4, err_msg=kind)
        np.testing.assert_array_equal([r["predictions"][0]["index"] for r in records], expected.argmax(-1), kind)
        for record in records:  # most probable first
            values = [p["probability"] for p in record["predictions"]]
            assert values == sorted(values, reverse=True), kind


def test_table_json_and_csv_agree(setup, capsys, tmp_path):
    _, _, images, models = setup
    files = [str(images / "a.png"), str(images / "sub")]
    records = _predict_json(capsys, models["tflite"], *files, "--top-k", "2")
    assert [len(r["predictions"]) for r in records] == [2, 2]
    assert [r["image"] for r in records] == [str(images / "a.png"), str(images / "sub" / "b.png")]

    assert main(["predict", models["tflite"], *files, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, record in zip(lines, records):
        first, second = record["predictions"]
        assert line == (f"{record['image']}  {first['class']} (p={first['probability']:.3f})  "
                        f"{second['class']} (p={second['probability']:.3f})")

    out = tmp_path / "predictions.csv"
    assert main(["predict", models["tflite"], *files, "--top-k", "2", "--format", "csv", "--output", str(out)]) == 0
    assert "wrote csv predictions of 2 images" in capsys.readouterr().out
    assert out.read_text().splitlines()[0] == "image,rank,class,index,probability"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["image"], int(r["rank"]), r["class"], int(r["index"]), float(r["probability"])) for r in rows] == [
        (record["image"], rank, p["class"], p["index"], p["probability"])
        for record in records for rank, p in enumerate(record["predictions"], start=1)
    ]
    # On the terminal, a batch at a time (here one image each): the same CSV, its header once.
    assert main(["predict", models["tflite"], *files, "--top-k", "2", "--format", "csv", "--batch-size", "1"]) == 0
    assert capsys.readouterr().out == out.read_text()
    out_json = tmp_path / "predictions.json"
    assert main(["predict", models["tflite"], *files, "--top-k", "2", "--format", "json", "--output",
                 str(out_json)]) == 0
    assert json.loads(out_json.read_text()) == records
    assert sorted(os.listdir(tmp_path)) == ["predictions.csv", "predictions.json"]  # no temporary files left


def test_library_api(setup):
    from keras_vit.images import load_image_files

    from keras_vit.export.predictor import KerasPredictor, load_predictor, predict_files, top_k

    model, root, images, models = setup
    predictors = [load_predictor(models["savedmodel"]), load_predictor(models["tflite"]),
                  KerasPredictor(model, CLASS_NAMES)]
    pixels = load_image_files([str(images / "a.png"), str(images / "big.png")], (SIZE, SIZE), 3, resize=True)
    expected = _softmax(model.predict(pixels.astype("float32"), verbose=0))
    for predictor in predictors:
        assert predictor.image_shape == (SIZE, SIZE, 3) and predictor.class_names == CLASS_NAMES
        for batch in (pixels, pixels.astype("float32")):  # uint8 or float32 pixels
            np.testing.assert_allclose(predictor.predict(batch), expected, atol=1e-4)
        with pytest.raises(ValueError, match=r"images of size 8x8x3 do not fit .*takes 16x16x3"):
            predictor.predict(np.zeros((1, 8, 8, 3), "uint8"))
    # A .keras file alone has no class names: "0", "1", ... unless given.
    assert load_predictor(models["keras"]).class_names == ["0", "1", "2", "3"]
    files, probabilities, skipped = predict_files(predictors[0], [images / "sub"])
    assert files == [str(images / "sub" / "b.png")] and probabilities.shape == (1, 4) and skipped == []
    b_pixels = load_image_files(files, (SIZE, SIZE), 3)
    np.testing.assert_allclose(probabilities, _softmax(model.predict(b_pixels.astype("float32"), verbose=0)), atol=1e-4)
    rows = top_k(np.array([[0.1, 0.4, 0.4, 0.1]]), CLASS_NAMES, 3)
    assert [(p["class"], p["index"], p["probability"]) for p in rows[0]] == [("bee", 1, 0.4), ("cat", 2, 0.4),
                                                                              ("ant", 0, 0.1)]
    with pytest.raises(ValueError, match="top-k must be at least 1"):
        top_k(np.ones((1, 4)) / 4, CLASS_NAMES, 0)


def test_softmax_heads_and_flip_averaged_tflite_give_probabilities(tmp_path):
    from keras_vit.export.predictor import KerasPredictor, load_predictor
    from keras_vit.export.tflite import convert, write_tflite

    images = np.random.default_rng(6).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    softmax_model = _tiny_vit(seed=4, classifier_activation="softmax")
    expected = np.asarray(softmax_model(images), "float64")  # probabilities already: not softmaxed again
    write_tflite(convert(softmax_model, "float32"), str(tmp_path / "softmax.tflite"))
    np.testing.assert_allclose(KerasPredictor(softmax_model).predict(images), expected, atol=1e-6)
    np.testing.assert_allclose(load_predictor(str(tmp_path / "softmax.tflite")).predict(images), expected, atol=1e-5)

    model = _tiny_vit(seed=5)
    write_tflite(convert(model, "float32", tta="flip"), str(tmp_path / "flip.tflite"))
    expected = (_softmax(model(images)) + _softmax(model(images[:, :, ::-1]))) / 2
    np.testing.assert_allclose(load_predictor(str(tmp_path / "flip.tflite")).predict(images), expected, atol=1e-5)


def _error(capsys, *argv):
    capsys.readouterr()
    status = main(["predict", *argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and captured.out == "", (status, captured)
    assert lines[0].startswith("keras-vit predict: error: ")
    return lines[0]


def test_bad_input_is_one_line_and_exit_code_2(setup, capsys, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.delenv("KERAS_VIT_DEBUG", raising=False)
    _, root, images, models = setup
    image = str(images / "a.png")
    missing = str(tmp_path / "missing.keras")
    assert f"model not found: {missing}" in _error(capsys, missing, image)
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert "model.onnx is not a model keras-vit predicts with; expected a .keras file, a .tflite" in _error(
        capsys, str(tmp_path / "model.onnx"), image)
    assert "is a folder without model.keras or saved_model.pb" in _error(capsys, str(images), image)
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    assert "corrupt.keras is not a valid .keras file" in _error(capsys, str(tmp_path / "corrupt.keras"), image)
    (tmp_path / "corrupt.tflite").write_bytes(b"not a flatbuffer")
    assert "corrupt.tflite is not a valid .tflite file" in _error(capsys, str(tmp_path / "corrupt.tflite"), image)

    model = models["tflite"]
    assert f"image not found: {tmp_path / 'nope.png'}" in _error(capsys, model, str(tmp_path / "nope.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    # Only undecodable files: an error. Among readable ones: skipped, named on stderr, exit status 1.
    assert f"no readable image among 1 file(s): {tmp_path / 'broken.png'}" in _error(
        capsys, model, str(tmp_path / "broken.png"))
    for output_format in ("table", "csv", "json"):
        status = main(["predict", model, image, str(tmp_path / "broken.png"), "--format", output_format])
        captured = capsys.readouterr()
        assert status == 1 and image in captured.out and "broken.png" not in captured.out, output_format
        assert captured.err.startswith(f"keras-vit predict: warning: skipped 1 file that could not be decoded: "
                                       f"{tmp_path / 'broken.png'} (")
        assert "{{" not in captured.err and "[Op:" not in captured.err  # TensorFlow's message, not its decorations
    (tmp_path / "empty").mkdir()
    assert f"{tmp_path / 'empty'} holds no image files" in _error(capsys, model, str(tmp_path / "empty"))
    assert f"{images / 'big.png'} is 24x40 pixels but the model takes 16x16" in _error(
        capsys, model, str(images / "big.png"), "--no-resize")
    assert "--top-k must be at least 1" in _error(capsys, model, image, "--top-k", "0")
    assert "--threads applies to a .tflite file" in _error(capsys, models["savedmodel"], image, "--threads", "2")

    four = tmp_path / "four"
    four.mkdir()
    _tiny_vit(channels=4).save(four / "model.keras")
    Image.fromarray(np.zeros((SIZE, SIZE, 3), "uint8")).save(tmp_path / "rgb.png")
    assert "takes 4-channel images; image files are read as gray (1 channel) or RGB (3 channels)" in _error(
        capsys, str(four), str(tmp_path / "rgb.png"))
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]
