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


def test_multiworker_two_processes_end_equal(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                [sys.executable, SCRIPT, "multiworker", str(tmp_path / f"worker{index}.npz")],
                env=_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail("multi-worker training did not finish in 300 s")
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    (w0, replicas, change, loss0), (w1, _, _, loss1) = (_weights(tmp_path / f"worker{i}.npz") for i in range(2))
    assert replicas == 2 and change > 1e-3 and np.isfinite(loss0).all()
    assert max(float(np.abs(a - b).max()) for a, b in zip(w0, w1)) == 0.0
