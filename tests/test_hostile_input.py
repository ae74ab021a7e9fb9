"""Bad input that never costs memory or silence: limits checked before allocation (classes, pixels
per image, npz header sizes), and options or data that would train or score nonsense refused."""

import io
import json
import os
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_vit.training.cli import main
from keras_vit.training.data import load_splits, read_npz, take_sample

LIMIT = "more than the limit of 89,478,485 pixels per image ($KERAS_VIT_MAX_IMAGE_PIXELS raises it)"


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def write_png(path, width, height):
    """A valid gray PNG of `width` x `height` black pixels, written row by row (a 20000x20000 one
    is 389 kB on disk, 400 MB decoded)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), b"\0" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        file.write(chunk(b"IDAT", data) + chunk(b"IEND", b""))


def forged_png(path, width, height):
    """A PNG whose header claims `width` x `height` pixels over a few bytes of data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 3-class ViT of 8x8 RGB images, as a .keras file and a float32 .tflite with labels."""
    from keras_vit import ViT
    from keras_vit.export.tflite import convert, write_tflite

    folder = tmp_path_factory.mktemp("hostile")
    model = ViT(image_size=8, channels=3, patch_size=4, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8,
                num_classes=3)
    model.save(folder / "model.keras")
    write_tflite(convert(model, "float32"), str(folder / "model.tflite"), ["a", "b", "c"])
    return folder


# --- 3. bounded memory on hostile files ----------------------------------------------------------


def test_one_huge_label_is_refused_before_any_class_is_built(tmp_path, capsys):
    images = np.zeros((4, 8, 8), "uint8")
    path = npz(tmp_path / "labels.npz", x_train=images, y_train=np.array([0, 1, 0, 10**9]), x_test=images,
               y_test=np.array([0, 1, 0, 1]))
    tracemalloc.start()
    with pytest.raises(ValueError) as error:
        load_splits(f"npz:{path}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(error.value) == (f"y_train in {path} holds the label 1,000,000,000: labels are class ids 0..99,999, "
                                "at most 100,000 classes ($KERAS_VIT_MAX_CLASSES raises the limit)")
    assert peak < 16 * 2**20  # a billion class names once took past 8 GB
    # The limit is the user's to set, as an argument or in the environment.
    sparse = npz(tmp_path / "sparse.npz", x_train=images, y_train=np.array([0, 1, 0, 150]), x_test=images,
                 y_test=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"holds the label 150: labels are class ids 0\.\.99, at most 100 classes"):
        load_splits(f"npz:{sparse}", max_classes=100)
    assert load_splits(f"npz:{sparse}", max_classes=151).info.num_classes == 151
    os.environ["KERAS_VIT_MAX_CLASSES"] = "2"
    try:
        ok = npz(tmp_path / "two.npz", x_train=images, y_train=np.array([0, 1, 0, 1]), x_test=images,
                 y_test=np.array([0, 1, 0, 1]))
        assert load_splits(f"npz:{ok}").info.num_classes == 2
        assert main(["train", "--dataset", f"npz:{path}", "--output", str(tmp_path / "run")]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit train: error: y_train in {path} holds the label 1,000,000,000: labels are class ids 0..1, "
            "at most 2 classes ($KERAS_VIT_MAX_CLASSES raises the limit)"
        )
    finally:
        del os.environ["KERAS_VIT_MAX_CLASSES"]
    assert not (tmp_path / "run").exists()


def test_too_many_class_folders_are_refused(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / name / "0.png")
    with pytest.raises(ValueError) as error:
        load_splits(f"folder:{tmp_path}", max_classes=2)
    assert str(error.value) == (f"{tmp_path} has 3 class sub-folders, more than the limit of 2 classes "
                                "($KERAS_VIT_MAX_CLASSES raises it); expected one sub-folder of images per class")


def _forged_npz(path, shape, dtype="<u1"):
    """An npz whose x_train header declares `shape` over no data at all."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    small = np.zeros((2, 8, 8), "uint8")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", buffer.getvalue())
        for key, array in (("y_train", np.array([0, 1])), ("x_test", small), ("y_test", np.array([0, 1]))):
            data = io.BytesIO()
            np.save(data, array)
            archive.writestr(f"{key}.npy", data.getvalue())
    return str(path)


def test_an_npz_header_claiming_terabytes_is_refused_before_reading(tmp_path, capsys):
    path = _forged_npz(tmp_path / "forged.npz", (10**12, 3, 3))
    assert main(["train", "--dataset", f"npz:{path}", "--output", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit train: error: x_train in {path} declares shape (1000000000000, 3, 3) of uint8 (8.2 TiB) but its "
        "member holds 128 bytes: the npz file is corrupt"
    )
    assert not (tmp_path / "run").exists()


def test_npz_arrays_larger_than_the_memory_limit_are_refused_before_reading(tmp_path, monkeypatch):
    # A genuine 64 MiB array, compressed to a few kB: what counts is what loading it would allocate.
    path = str(tmp_path / "zeros.npz")
    np.savez_compressed(path, x_train=np.zeros((1024, 256, 256), "uint8"), y_train=np.arange(1024) % 2,
                        x_test=np.zeros((2, 256, 256), "uint8"), y_test=np.array([0, 1]))
    assert os.path.getsize(path) < 2**20
    with pytest.raises(ValueError) as error:
        read_npz(path, max_bytes=2**20)
    assert str(error.value) == (f"the arrays of {path} take 64.1 MiB (x_train, y_train, x_test, y_test), more than "
                                "max_bytes (1.0 MiB); $KERAS_VIT_MAX_NPZ_BYTES sets the limit")
    monkeypatch.setenv("KERAS_VIT_MAX_NPZ_BYTES", str(2**20))
    with pytest.raises(ValueError, match=r"more than \$KERAS_VIT_MAX_NPZ_BYTES \(1.0 MiB\)"):
        read_npz(path)
    # By default, the memory the host has available.
    import keras_vit.training.data as data

    monkeypatch.delenv("KERAS_VIT_MAX_NPZ_BYTES")
    monkeypatch.setattr(data, "available_host_memory", lambda: 2**25)
    with pytest.raises(ValueError, match=r"take 64.1 MiB .*, more than the memory available \(32.0 MiB\)"):
        read_npz(path)
    monkeypatch.setattr(data, "available_host_memory", lambda: 2**30)
    assert read_npz(path)[0].shape == (1024, 256, 256)


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    write_png(path, 20000, 20000)
    assert 380_000 < os.path.getsize(path) < 400_000
    return path


def test_predict_skips_an_image_over_the_pixel_limit_without_decoding_it(tiny_model, huge_png, tmp_path, capsys,
                                                                         monkeypatch):
    import keras_vit.images as images

    small = tmp_path / "small.png"
    Image.fromarray(np.full((8, 8), 100, "uint8")).save(small)
    decoded = []
    decode = images.decode_image_file
    monkeypatch.setattr(images, "decode_image_file", lambda path, *a, **k: decoded.append(path) or decode(path, *a, **k))
    assert main(["predict", str(tiny_model / "model.keras"), str(huge_png), str(small), "--format", "csv"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"keras-vit predict: warning: skipped 1 file that could not be decoded: {huge_png} "
                                    f"(20000x20000 pixels, {LIMIT})")
    assert str(small) in captured.out and str(huge_png) not in captured.out
    assert decoded == [str(small)]  # the 400-megapixel file was never decoded
    with pytest.raises(images.ImageTooLargeError) as error:
        images.load_image_file(str(small), (8, 8), 1, max_pixels=63)
    assert str(error.value) == (f"{small} is 8x8 pixels, more than the limit of 63 pixels per image "
                                "($KERAS_VIT_MAX_IMAGE_PIXELS raises it)")


def test_a_training_folder_image_over_the_pixel_limit_is_skipped_before_training(tmp_path, capfd, monkeypatch):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((8, 8), 40 * i, "uint8")).save(tmp_path / name / f"{i}.png")
    forged_png(tmp_path / "cat" / "forged.png", 40000, 40000)
    write_png(tmp_path / "dog" / "wide.png", 10000, 10000)  # under PIL's own guard, over the limit
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("keras-vit: warning:")]
    assert warnings == [
        f"keras-vit: warning: skipped 2 of 12 image files in {tmp_path} that cannot be decoded or are too large: "
        f"cat/forged.png (40000x40000 pixels, {LIMIT}), dog/wide.png (10000x10000 pixels, {LIMIT})"
    ]
    assert splits.info.num_examples["train"] + splits.info.num_examples["test"] == 10
    monkeypatch.setenv("KERAS_VIT_MAX_IMAGE_PIXELS", "63")  # configurable: now every 8x8 image is over it
    with pytest.raises(ValueError, match="hold no decodable images"):
        load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    monkeypatch.setenv("KERAS_VIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="^KERAS_VIT_MAX_IMAGE_PIXELS must be a positive whole number, got 'lots'$"):
        load_splits(f"folder:{tmp_path}", validation_fraction=0.0)


# --- 4. no silent nonsense -----------------------------------------------------------------------


def test_a_single_class_dataset_is_refused(tmp_path, capsys):
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, "uint8")).save(tmp_path / "photos" / "cat" / f"{i}.png")
    assert main(["train", "--dataset", f"folder:{tmp_path / 'photos'}", "--output", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit train: error: dataset folder:{tmp_path / 'photos'} has training images of 1 class only; "
        "a classifier needs at least 2 classes, one sub-folder of images each"
    )
    images = np.zeros((6, 8, 8), "uint8")
    path = npz(tmp_path / "one.npz", x_train=images, y_train=np.full(6, 3), x_test=images, y_test=np.arange(6) % 4)
    assert main(["train", "--dataset", f"npz:{path}", "--output", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == (f"keras-vit train: error: dataset npz:{path} has training images of 1 class "
                                      "only; a classifier needs at least 2 classes")
    assert not (tmp_path / "run").exists()


def test_tflite_evaluate_refuses_labels_the_model_cannot_output(tiny_model, tmp_path, capsys):
    images = np.zeros((6, 8, 8, 3), "uint8")
    path = npz(tmp_path / "ten.npz", x_train=images, y_train=np.arange(6) % 3, x_test=images,
               y_test=np.array([0, 1, 2, 9, 9, 9]))
    for model in ("model.tflite", "model.keras"):  # the same refusal for both formats
        assert main(["evaluate", str(tiny_model / model), "--dataset", f"npz:{path}",
                     "--output", str(tmp_path / "m.json")]) == 2
        assert one_error_line(capsys) == f"keras-vit evaluate: error: dataset npz:{path} has 10 classes, the model only 3"
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--learning-rate", "nan", "learning_rate must be a finite number, got nan"),
    ("--learning-rate", "-0.1", "learning_rate must be positive, got -0.1"),
    ("--time-budget", "nan", "time_budget_minutes must be a finite number, got nan"),
    ("--time-budget", "inf", "time_budget_minutes must be a finite number, got inf"),
    ("--mixup", "-1", "mixup must be 0 or more (0 turns it off), got -1.0"),
    ("--cutmix", "nan", "cutmix must be a finite number, got nan"),
    ("--clipnorm", "-1", "clipnorm must be positive (0 turns clipping off), got -1.0"),
    ("--weight-decay", "-0.1", "weight_decay must be 0 or more (0 turns it off), got -0.1"),
    ("--warmup-epochs", "-2", "warmup_epochs must be 0 or more (0 turns it off), got -2.0"),
    ("--dropout-rate", "nan", "dropout_rate must be a finite number, got nan"),
    ("--drop-path-rate", "1.5", "drop_path_rate must be in [0, 1), got 1.5"),
    ("--limit-train", "-1", "limit_train must be at least 1, got -1"),
    ("--limit-test", "0", "limit_test must be at least 1, got 0"),
])
def test_training_options_that_would_train_nonsense_are_refused(tmp_path, capsys, option, value, message):
    assert main(["train", "--output", str(tmp_path / "run"), option, value]) == 2
    assert one_error_line(capsys) == f"keras-vit train: error: {message}"
    assert not (tmp_path / "run").exists()


def test_a_negative_limit_is_refused(tiny_model, capsys):
    for command in (["evaluate", str(tiny_model / "model.keras")],
                    ["export", str(tiny_model / "model.keras"), "--output", str(tiny_model / "x.tflite")]):
        assert main([*command, "--dataset", "digits", "--limit", "-1"]) == 2
        assert one_error_line(capsys) == f"keras-vit {command[0]}: error: --limit must be at least 1, got -1"
    import tensorflow as tf

    with pytest.raises(ValueError, match=r"^a sample needs a count of at least 1, got -1$"):
        take_sample(tf.data.Dataset.range(4), -1)


def test_a_class_name_with_a_line_break_is_refused(tiny_model, tmp_path, capsys):
    for name in ("cat\nsiamese", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, "uint8")).save(tmp_path / "photos" / name / f"{i}.png")
    assert main(["train", "--dataset", f"folder:{tmp_path / 'photos'}", "--output", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit train: error: class folder {str(tmp_path / 'photos' / 'cat') + chr(10) + 'siamese'!r} has a name "
        "with a line break (or of spaces only), which a labels file (one class per line) cannot hold: rename the folder"
    )
    assert not (tmp_path / "run").exists()
    # A model trained before this check: its labels file would have 3 lines for 3 classes plus one.
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "model.keras").write_bytes((tiny_model / "model.keras").read_bytes())
    (run / "config.json").write_text(json.dumps({"class_names": ["cat\nsiamese", "dog", "bird"]}))
    assert main(["export", str(run), "--output", str(tmp_path / "out" / "model.tflite")]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit export: error: the class names of {run} holds the name 'cat\\nsiamese', which a labels file (one "
        "class per line) cannot hold: class names must be one line of visible characters"
    )
    assert sorted(os.listdir(tmp_path)) == ["old_run", "photos"]


def test_a_limit_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    from keras_vit.files import max_image_pixels
    from keras_vit.training.data import resolve_max_classes

    monkeypatch.delenv("KERAS_VIT_MAX_CLASSES", raising=False)
    assert resolve_max_classes() == 100_000
    monkeypatch.setenv("KERAS_VIT_MAX_CLASSES", "1_000")
    assert resolve_max_classes() == 1000 and resolve_max_classes(7) == 7
    with pytest.raises(ValueError, match=r"^max_classes must be at least 2, got 1$"):
        resolve_max_classes(1)
    monkeypatch.setenv("KERAS_VIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match=r"^KERAS_VIT_MAX_IMAGE_PIXELS must be a positive whole number, got 'lots'$"):
        max_image_pixels()
    with pytest.raises(ValueError, match=r"^max_pixels must be at least 1, got 0$"):
        max_image_pixels(0)
