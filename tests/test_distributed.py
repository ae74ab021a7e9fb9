"""tf.distribute: mirrored replicas and multi-worker training agree with one device."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "tests", "scripts", "distributed_fit.py")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _weights(path):
    with np.load(path) as data:
        count = len([k for k in data.files if k.startswith("w")])
        return [data[f"w{i}"] for i in range(count)], int(data["replicas"]), float(data["change"]), data["loss"]


def test_mirrored_two_cpus_matches_one_device(tmp_path):
    for mode in ("one_device", "mirrored"):
        subprocess.run([sys.executable, SCRIPT, mode, str(tmp_path / f"{mode}.npz")], check=True, env=_env(), timeout=300)
    single, replicas_1, change, _ = _weights(tmp_path / "one_device.npz")
    mirrored, replicas_2, _, _ = _weights(tmp_path / "mirrored.npz")
    assert (replicas_1, replicas_2) == (1, 2)
    assert change > 1e-3  # the weights did move
    # Same global batch of 16 split 8 + 8: gradients are the same sums in another
    # order, so only float32 round-off may differ (stated tolerance 1e-5).
    assert max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)) < 1e-5


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_two_workers(arguments, timeout):
    """Runs `arguments(index)` as worker 0 and worker 1 of one cluster on loopback; both must succeed."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, *arguments(index)], env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"the two workers did not finish in {timeout} s")
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]


def test_multiworker_two_processes_end_equal(tmp_path):
    _run_two_workers(lambda index: [SCRIPT, "multiworker", str(tmp_path / f"worker{index}.npz")], timeout=300)
    (w0, replicas, change, loss0), (w1, _, _, loss1) = (_weights(tmp_path / f"worker{i}.npz") for i in range(2))
    assert replicas == 2 and change > 1e-3 and np.isfinite(loss0).all()
    assert max(float(np.abs(a - b).max()) for a, b in zip(w0, w1)) == 0.0


def _id_folder(root, classes=4, per_class=10):
    """`root/train/<class>/` and `root/test/<class>/` of flat 8x8 PNGs whose color encodes a file id."""
    from PIL import Image

    labels = {}
    for split, count in (("train", per_class), ("test", 2)):
        for label in range(classes):
            os.makedirs(root / split / f"c{label}")
            for _ in range(count):
                file_id = len(labels)
                pixels = np.zeros((8, 8, 3), "uint8")
                pixels[..., 0], pixels[..., 1] = file_id // 256, file_id % 256
                Image.fromarray(pixels).save(root / split / f"c{label}" / f"{file_id}.png")
                labels[file_id] = (split, label)
    return labels


def test_two_workers_read_disjoint_file_shards_that_cover_the_train_split(tmp_path):
    """Sharded by file under MultiWorkerMirroredStrategy (auto-sharding off): in one epoch the
    workers see disjoint sets of files whose union is the whole train split; validation is whole on each."""
    labels = _id_folder(tmp_path / "data")
    script = os.path.join(REPO_ROOT, "tests", "scripts", "sharded_input.py")
    _run_two_workers(lambda index: [script, str(tmp_path / "data"), str(tmp_path / f"worker{index}.json")],
                     timeout=180)
    seen = []
    for index in range(2):
        with open(tmp_path / f"worker{index}.json") as file:
            seen.append(json.load(file))
    validation = set(seen[0]["validation_ids"])
    assert set(seen[1]["validation_ids"]) == validation and len(validation) == 8  # not sharded
    train = {i for i, (split, _) in labels.items() if split == "train"} - validation
    assert len(train) == seen[0]["num_train"] == 32
    for key in ("local", "distributed"):
        first, second = (worker[f"{key}_ids"] for worker in seen)
        assert len(first) == len(set(first)) == 16 and len(second) == len(set(second)) == 16, key
        assert not set(first) & set(second), key
        assert set(first) | set(second) == train, key
        for worker in seen:  # every label came with its own file
            assert all(labels[i] == ("train", y) for i, y in zip(worker[f"{key}_ids"], worker[f"{key}_labels"]))
    assert seen[0]["global_counts"] == seen[1]["global_counts"] == [8.0] * 4  # global batches of 8, 4 + 4
