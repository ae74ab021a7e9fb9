"""keras_vit.files: atomic writes with the user's permissions, and what the commands leave behind."""

import json
import os
import stat

import numpy as np
import pytest

from keras_vit.files import atomic_folder, atomic_path, load_keras_file, write_json_atomic, write_text_atomic


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_writes_get_the_umask_permissions_and_leave_no_temporary_file(tmp_path, umask_022):
    write_text_atomic(str(tmp_path / "a.txt"), "one")
    write_json_atomic(str(tmp_path / "sub" / "b.json"), {"x": 1})
    assert (tmp_path / "a.txt").read_text() == "one" and json.loads((tmp_path / "sub" / "b.json").read_text()) == {"x": 1}
    # mkstemp makes 0600 files: a serving account could not read them.
    assert mode(tmp_path / "a.txt") == 0o644 and mode(tmp_path / "sub" / "b.json") == 0o644
    os.umask(0o077)
    write_text_atomic(str(tmp_path / "private.txt"), "secret")
    assert mode(tmp_path / "private.txt") == 0o600
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "private.txt", "sub"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "model.bin")
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as file:
                file.write("half")
            raise RuntimeError("killed")
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["model.bin"]


def test_atomic_folder_replaces_or_merges_and_gets_the_umask(tmp_path, umask_022):
    folder = tmp_path / "export"
    with atomic_folder(str(folder)) as tmp:
        os.mkdir(os.path.join(tmp, "assets"))
        write_text_atomic(os.path.join(tmp, "assets", "labels.txt"), "a\n")
    # tempfile.mkdtemp makes 0700 folders.
    assert mode(folder) == 0o755 and mode(folder / "assets") == 0o755 and mode(folder / "assets" / "labels.txt") == 0o644
    (folder / "mine.txt").write_text("kept")
    with atomic_folder(str(folder), merge=True) as tmp:
        write_text_atomic(os.path.join(tmp, "new.txt"), "new")
    assert sorted(os.listdir(folder)) == ["assets", "mine.txt", "new.txt"]
    with pytest.raises(RuntimeError):
        with atomic_folder(str(folder)) as tmp:
            raise RuntimeError("conversion failed")
    assert sorted(os.listdir(folder)) == ["assets", "mine.txt", "new.txt"]
    with atomic_folder(str(folder)) as tmp:
        write_text_atomic(os.path.join(tmp, "only.txt"), "x")
    assert os.listdir(folder) == ["only.txt"] and sorted(os.listdir(tmp_path)) == ["export"]


def test_load_keras_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_keras_file(str(tmp_path / "missing.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a valid .keras file"):
        load_keras_file(str(bad))


def test_exported_tflite_folder_is_readable_by_others(tmp_path, umask_022):
    from keras_vit.export.bundle import export_modes
    from keras_vit import ViT

    model = ViT(image_size=8, channels=1, patch_size=4, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=16,
                num_classes=3)
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1)).astype("uint8")
    folder = tmp_path / "tflite"
    export_modes(model, str(folder), ("float32",), test_images=images, test_labels=np.array([0, 1, 2] * 2),
                 class_names=["a", "b", "c"], rounds=1, runs=1, gpu_check=False, log=lambda *_: None)
    assert mode(folder) == 0o755
    assert {name: mode(folder / name) for name in os.listdir(folder)} == {
        name: 0o644 for name in ("model_float32.tflite", "model_float32.labels.txt", "report.md", "report.json")
    }
