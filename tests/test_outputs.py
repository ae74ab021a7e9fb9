"""Outputs that never destroy: refused when they are not the command's own, never an input, one
run per folder, and nothing left half-written after a failure, SIGTERM or SIGKILL."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from keras_vit.files import FolderInUseError, FolderLock, atomic_folder, atomic_path, remove_stale_temporaries
from keras_vit.training.cli import main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
# The smallest run `keras-vit train` makes on the bundled digits (about 20 s on 2 cores).
TINY_TRAIN = ["--epochs", "1", "--limit-train", "64", "--limit-test", "32", "--hidden-dim", "8", "--num-layers", "1",
              "--num-heads", "1", "--mlp-dim", "8", "--batch-size", "32", "--backup-every", "1000"]


def tree(folder):
    """Every file under `folder` with its bytes: what a test compares before and after a refusal."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder)] = file.read()
    return found


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A training folder as `keras-vit train` leaves it: a tiny digits ViT, config.json and metrics.json."""
    from keras_vit import ViT

    folder = tmp_path_factory.mktemp("outputs") / "run"
    folder.mkdir()
    model = ViT(image_size=8, channels=1, patch_size=4, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8,
                num_classes=10)
    model.save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps({"dataset": "digits", "class_names": [str(i) for i in range(10)]}))
    (folder / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    return folder


@pytest.fixture
def photos(tmp_path):
    """A user's folder of notes and photos."""
    folder = tmp_path / "notes"
    (folder / "photos").mkdir(parents=True)
    (folder / "notes.txt").write_text("do not lose me")
    Image.fromarray(np.full((8, 8, 3), 90, "uint8")).save(folder / "photos" / "cat.png")
    return folder


# --- 1. outputs never destroy ------------------------------------------------------------------


def test_savedmodel_export_refuses_a_folder_of_other_files(run_folder, photos, capsys):
    before = tree(photos)
    assert main(["export", str(run_folder), "--format", "savedmodel", "--output", str(photos)]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit export: error: --output {photos} exists and is a folder of 2 other entries (notes.txt, photos/): "
        "choose a new folder (or a SavedModel's, which is replaced whole), or --overwrite to replace it"
    )
    assert tree(photos) == before
    # A SavedModel folder is this command's own: exported again without asking.
    served = photos.parent / "served"
    assert main(["export", str(run_folder), "--format", "savedmodel", "--output", str(served)]) == 0
    first = (served / "saved_model.pb").stat().st_mtime_ns
    assert main(["export", str(run_folder), "--format", "savedmodel", "--output", str(served)]) == 0
    assert (served / "saved_model.pb").stat().st_mtime_ns != first
    assert sorted(os.listdir(photos.parent)) == ["notes", "served"]  # no temporary left beside them
    # --overwrite replaces the folder whole: the user asked for it by name.
    assert main(["export", str(run_folder), "--format", "savedmodel", "--output", str(photos), "--overwrite"]) == 0
    assert sorted(os.listdir(photos)) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]


@pytest.mark.parametrize("output, what", [("run", "is the model being exported"),
                                          ("parent", "holds the model being exported ({run})"),
                                          ("model", "is the model being exported")])
def test_an_export_is_never_written_over_its_source(run_folder, capsys, output, what):
    target = {"run": run_folder, "parent": run_folder.parent, "model": run_folder / "model.keras"}[output]
    before = tree(run_folder)
    for overwrite in ([], ["--overwrite"]):
        fmt = ["--format", "savedmodel"] if output != "model" else ["--mode", "all", "--dataset", "digits"]
        assert main(["export", str(run_folder), *fmt, "--output", str(target), *overwrite]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit export: error: --output {target} {what.format(run=run_folder)}, an input of this command: "
            + ("choose a new folder (or a SavedModel's, which is replaced whole)" if output != "model"
               else "choose a new folder (or one of --mode all's, whose files are replaced)")
        )
    assert tree(run_folder) == before


def test_tflite_exports_refuse_what_is_not_an_export(run_folder, photos, capsys):
    before = tree(photos)
    assert main(["export", str(run_folder), "--mode", "all", "--dataset", "digits", "--output", str(photos)]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit export: error: --output {photos} exists and is a folder of 2 other entries (notes.txt, photos/): "
        "choose a new folder (or one of --mode all's, whose files are replaced), or --overwrite to replace it"
    )
    notes = photos / "notes.txt"
    assert main(["export", str(run_folder), "--output", str(notes.with_suffix(".tflite"))]) == 0  # a new file
    notes.with_suffix(".tflite").write_text("not a model")
    assert main(["export", str(run_folder), "--output", str(notes.with_suffix(".tflite"))]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit export: error: --output {notes.with_suffix('.tflite')} exists and is a file of 11 bytes that this "
        "command did not write: choose a new .tflite file (or a .tflite file to replace), or --overwrite to replace it"
    )
    assert tree(photos) == dict(before, **{"notes.tflite": b"not a model", "notes.labels.txt": "".join(
        f"{i}\n" for i in range(10)).encode()})


def test_explain_never_draws_over_an_image(run_folder, photos, capsys):
    cat = photos / "photos" / "cat.png"
    before = tree(photos)
    for overwrite in ([], ["--overwrite"]):
        assert main(["explain", str(run_folder), str(cat), "--output", str(cat), *overwrite]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit explain: error: --output {cat} is an image being explained, an input of this command: "
            "choose a new .png file"
        )
    other = photos / "holiday.png"
    Image.fromarray(np.zeros((4, 4, 3), "uint8")).save(other)  # a photo, not a figure of explain's
    assert main(["explain", str(run_folder), str(cat), "--output", str(other)]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit explain: error: --output {other} exists and is a file of {other.stat().st_size:,} bytes that this "
        "command did not write: choose a new .png file, or --overwrite to replace it"
    )
    assert tree(photos) == dict(before, **{"holiday.png": other.read_bytes()})


def test_predict_and_evaluate_never_write_over_the_model(run_folder, tmp_path, capsys):
    model = run_folder / "model.keras"
    image = tmp_path / "seven.png"
    Image.fromarray(np.full((8, 8), 200, "uint8")).save(image)
    before = tree(run_folder)
    for overwrite in ([], ["--overwrite"]):
        assert main(["predict", str(model), str(image), "--output", str(model), *overwrite]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit predict: error: --output {model} is the model being read, an input of this command: "
            "choose a new file (or one of earlier predictions)"
        )
        assert main(["predict", str(run_folder), str(image), "--output", str(image), *overwrite]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit predict: error: --output {image} is an image being classified, an input of this command: "
            "choose a new file (or one of earlier predictions)"
        )
        assert main(["evaluate", str(model), "--output", str(model), *overwrite]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit evaluate: error: --output {model} is the model being evaluated, an input of this command: "
            "choose a new file (or one of earlier metrics)"
        )
        assert main(["evaluate", str(run_folder), "--output", str(run_folder / "config.json"), *overwrite]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit evaluate: error: --output {run_folder / 'config.json'} is the model's config.json, an input of "
            "this command: choose a new file (or one of earlier metrics)"
        )
    assert tree(run_folder) == before


def test_predictions_replace_only_earlier_predictions(run_folder, tmp_path, capsys):
    image = tmp_path / "seven.png"
    Image.fromarray(np.full((8, 8), 200, "uint8")).save(image)
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own,table\n")
    assert main(["predict", str(run_folder), str(image), "--output", str(notes), "--format", "csv"]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit predict: error: --output {notes} exists and is a file of 13 bytes that this command did not "
        "write: choose a new file (or one of earlier predictions), or --overwrite to replace it"
    )
    assert notes.read_text() == "my,own,table\n"
    for output_format in ("csv", "json", "table"):
        predictions = tmp_path / f"predictions.{output_format}"
        for _ in range(2):  # the second time over the first's predictions, without asking
            assert main(["predict", str(run_folder), str(image), "--output", str(predictions),
                         "--format", output_format]) == 0
        assert str(image) in predictions.read_text()
    assert main(["predict", str(run_folder), str(image), "--output", str(notes), "--format", "csv",
                 "--overwrite"]) == 0
    assert notes.read_text().startswith("image,rank,class,index,probability\n")


def test_train_refuses_a_finished_run_and_overwrite_replaces_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--output", str(run), *TINY_TRAIN]) == 0
    # What came after the run: its TFLite files, an evaluation, and the user's own notes.
    (run / "tflite").mkdir()
    (run / "tflite" / "model_float32.tflite").write_bytes(b"old model")
    (run / "metrics_eval.json").write_text(json.dumps({"test_accuracy": 0.1}))
    (run / "notes.txt").write_text("lr 2e-3 was better")
    accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    before = tree(run)
    capsys.readouterr()
    assert main(["train", "--output", str(run), *TINY_TRAIN]) == 2
    assert one_error_line(capsys) == (
        f"keras-vit train: error: --output {run} holds a finished run (model.keras, metrics.json, test accuracy "
        f"{accuracy:.4f}): choose another folder, or --overwrite to replace it"
    )
    assert tree(run) == before
    assert main(["train", "--output", str(run), *TINY_TRAIN, "--seed", "1", "--overwrite"]) == 0
    after = tree(run)
    # The earlier run's files are gone (its tflite/ and evaluation described the old model); the notes stay.
    assert "tflite/model_float32.tflite" not in after and "metrics_eval.json" not in after
    assert after["notes.txt"] == b"lr 2e-3 was better"
    assert after["model.keras"] != before["model.keras"] and json.loads(after["config.json"])["seed"] == 1
    assert len(after["history.csv"].decode().splitlines()) == 2  # a header and the new run's one epoch
    assert "overwrite" not in json.loads(after["config.json"])  # a decision of the command, not of the run
    assert not [name for name in os.listdir(run) if name.startswith(".")]  # lock released, no temporaries


@pytest.mark.parametrize("case", ["file", "dataset_folder", "inside_dataset", "other_files"])
def test_train_refuses_outputs_it_would_damage_in_one_line(tmp_path, photos, capsys, case):
    (photos / "dogs").mkdir()
    Image.fromarray(np.full((8, 8, 3), 30, "uint8")).save(photos / "dogs" / "dog.png")
    output = {"file": photos / "notes.txt", "dataset_folder": photos, "inside_dataset": photos / "run",
              "other_files": photos}[case]
    dataset = "digits" if case in ("file", "other_files") else f"folder:{photos}"
    before = tree(photos)
    assert main(["train", "--dataset", dataset, "--output", str(output), "--epochs", "1"]) == 2
    expected = {
        "file": f"--output {output} is a file; a run needs a folder (a new one, or a run's to resume)",
        "dataset_folder": f"--output {output} is the dataset folder {photos}, whose sub-folders are the classes: "
                          "choose a folder outside it",
        "inside_dataset": f"--output {output} is inside the dataset folder {photos}, whose sub-folders are the "
                          "classes: choose a folder outside it",
        "other_files": f"--output {output} is a folder of other files (dogs/, notes.txt, photos/), not a keras-vit "
                       "run: choose a new or empty folder, or --overwrite to write the run into it (other files are "
                       "kept)",
    }[case]
    assert one_error_line(capsys) == f"keras-vit train: error: {expected}"
    assert tree(photos) == before and not (photos / "run").exists()


# --- 2. one run per folder ---------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from keras_vit.files import FolderLock
with FolderLock(sys.argv[1], "keras-vit train"):
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold_lock(folder):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_train_on_the_same_folder_is_refused_naming_the_pid(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = _hold_lock(run)
    try:
        record = json.loads((run / ".keras-vit.lock").read_text())
        assert (record["pid"], record["host"], record["command"]) == (holder.pid, socket.gethostname(), "keras-vit train")
        assert main(["train", "--output", str(run), *TINY_TRAIN]) == 2
        assert one_error_line(capsys) == (
            f"keras-vit train: error: {run} is in use by keras-vit train (pid {holder.pid} on {socket.gethostname()}, "
            f"since {record['since']}): wait for it to finish, or choose another folder"
        )
        assert os.listdir(run) == [".keras-vit.lock"]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(30)
    # SIGTERM ends the owner through its cleanups: the lock is released, not left stale.
    assert holder.returncode == 143 and os.listdir(run) == []


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path):
    holder = _hold_lock(tmp_path)
    holder.kill()
    holder.wait(30)
    assert json.loads((tmp_path / ".keras-vit.lock").read_text())["pid"] == holder.pid  # SIGKILL: no cleanup ran
    with FolderLock(tmp_path, "keras-vit train") as lock:
        assert lock.stale_owner["pid"] == holder.pid
        assert json.loads((tmp_path / ".keras-vit.lock").read_text())["pid"] == os.getpid()
        with pytest.raises(FolderInUseError, match=rf"is in use by keras-vit train \(pid {os.getpid()} on "):
            FolderLock(tmp_path, "keras-vit export").acquire()  # a second lock, even in the same process
    assert os.listdir(tmp_path) == []


def test_without_flock_the_pid_decides(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": sleeper.pid, "host": socket.gethostname(), "command": "keras-vit train", "since": "noon"}
        (tmp_path / ".keras-vit.lock").write_text(json.dumps(record))
        with pytest.raises(FolderInUseError, match=rf"\(pid {sleeper.pid} on .*, since noon\)"):
            FolderLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with FolderLock(tmp_path) as lock:  # that pid no longer runs: stale
        assert lock.stale_owner["pid"] == sleeper.pid


def test_sigterm_during_training_releases_the_lock_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "keras_vit.training", "train", "--output", str(run), *TINY_TRAIN[2:],
               "--epochs", "30", "--backup-seconds", "0"]
    first = subprocess.Popen(command, env=ENV, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = run / "backup" / "training_metadata.json"
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        try:
            if json.loads(metadata.read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    # The backup being written when the signal came is finished first: a half-written one would not load.
    assert first.wait(60) == 143
    assert ".keras-vit.lock" not in os.listdir(run) and metadata.exists()
    second = subprocess.run(command, env=ENV, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "Resuming from the backup" in second.stdout
    with open(run / "history.csv") as file:
        assert [int(line.split(",")[0]) for line in file.read().splitlines()[1:]] == list(range(30))


# --- 5. no leftovers ------------------------------------------------------------------------------


def _no_space(real_write):
    """`write_bytes_atomic` on a disk that fills up halfway through the file."""
    def write(path, data):
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            file.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_an_export_that_fails_on_a_full_disk_leaves_nothing(run_folder, tmp_path, monkeypatch, capsys):
    import keras_vit.export.tflite as tflite

    monkeypatch.setattr(tflite, "write_bytes_atomic", _no_space(tflite.write_bytes_atomic))
    output = tmp_path / "phone" / "models" / "digits.tflite"
    assert main(["export", str(run_folder), "--output", str(output)]) == 2
    assert one_error_line(capsys) == "keras-vit export: error: [Errno 28] No space left on device"
    assert os.listdir(tmp_path) == []  # neither the .labels.txt, nor the folders made for the pair
    # Over an earlier export: both of its files stay as they were.
    (tmp_path / "digits.tflite").write_bytes(b"1234TFL3 an earlier model")
    (tmp_path / "digits.labels.txt").write_text("zero\none\n")
    assert main(["export", str(run_folder), "--output", str(tmp_path / "digits.tflite")]) == 2
    assert tree(tmp_path) == {"digits.tflite": b"1234TFL3 an earlier model", "digits.labels.txt": b"zero\none\n"}


ATOMIC_FOLDER_THEN_WAIT = """
import os, sys, time
from keras_vit.files import atomic_folder
with atomic_folder(sys.argv[1]) as tmp:
    open(os.path.join(tmp, "model_float32.tflite"), "wb").write(b"finished file")
    print("writing", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("kill, returncode", [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT), (signal.SIGKILL, -signal.SIGKILL)])
def test_a_signal_during_a_folder_write_leaves_no_temporary_after_the_next_run(tmp_path, kill, returncode):
    output = tmp_path / "tflite"
    writer = subprocess.Popen([sys.executable, "-c", ATOMIC_FOLDER_THEN_WAIT, str(output)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert writer.stdout.readline().strip() == "writing"
    [temporary] = os.listdir(tmp_path)
    assert temporary.startswith(f".tflite.tmp-{socket.gethostname()}-{writer.pid}-")
    writer.send_signal(kill)
    assert writer.wait(30) == returncode
    if kill != signal.SIGKILL:
        assert os.listdir(tmp_path) == []  # cleaned up on the way out
    else:
        assert os.listdir(tmp_path) == [temporary]  # nothing runs on SIGKILL: the next write removes it
    with atomic_folder(str(output)) as tmp:
        open(os.path.join(tmp, "report.md"), "w").write("new")
    assert os.listdir(tmp_path) == ["tflite"] and os.listdir(output) == ["report.md"]


def test_only_temporaries_of_processes_that_no_longer_run_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    names = [f".model.tflite.tmp-{host}-{dead.pid}-abc", f".model.tflite.old-{host}-{dead.pid}-abc",
             f".model.tflite.tmp-{host}-{os.getpid()}-abc",  # a write in progress
             f".model.tflite.tmp-otherhost-{dead.pid}-abc",  # another machine's, on a shared disk
             f".other.tflite.tmp-{host}-{dead.pid}-abc", "model.tflite"]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f".model.tflite.tmp-{host}-{dead.pid}-dir").mkdir()
    removed = remove_stale_temporaries(str(tmp_path / "model.tflite"))
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [names[0], names[1], f".model.tflite.tmp-{host}-{dead.pid}-dir"])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:])


def test_sigterm_during_export_mode_all_leaves_no_temporary(run_folder, tmp_path):
    output = tmp_path / "tflite"
    export = subprocess.Popen(
        [sys.executable, "-m", "keras_vit.training", "export", str(run_folder), "--mode", "all", "--dataset", "digits",
         "--output", str(output), "--no-gpu-check", "--calibration-size", "8", "--limit", "8"],
        env=dict(ENV, PYTHONUNBUFFERED="1"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )
    converted = 0
    for line in export.stdout:  # SIGTERM once the first file is finished in the temporary folder
        converted += "] converting " in line  # "[2/6] converting float16 ..."
        if converted == 2:
            break
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tflite.tmp-")], os.listdir(tmp_path)
    export.send_signal(signal.SIGTERM)
    assert export.wait(60) == 143
    assert os.listdir(tmp_path) == []


def test_a_failed_write_removes_the_folders_it_made(tmp_path):
    target = tmp_path / "a" / "b" / "file.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("disk gone")
    assert os.listdir(tmp_path) == []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_folder(str(tmp_path / "a" / "b" / "export")):
            raise RuntimeError("conversion failed")
    assert tree(tmp_path) == {"a/mine.txt": b"kept"} and os.listdir(tmp_path / "a") == ["mine.txt"]
