"""Official weights by name (`keras_vit.pretrained`), without network: a local `http.server` serves an
official-layout ViT-Ti/16 checkpoint at the bucket's path, standing in for storage.googleapis.com
through the mirror variable; the Keras cache is a temporary KERAS_HOME."""

import functools
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from keras_vit import pretrained
from test_checkpoint import random_checkpoint, write_npz

NAME = "vit_ti16.augreg_in21k_ft_in1k"
PATH_IN_BUCKET = ("augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03"
                  "-res_224.npz")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """A folder laid out as gs://vit_models, holding a random ViT-Ti/16 (1000 classes) at the AugReg path."""
    root = tmp_path_factory.mktemp("bucket")
    os.makedirs(root / "augreg")
    params = random_checkpoint(image_size=224, patch_size=16, hidden_dim=192, num_layers=12, num_heads=3,
                               mlp_dim=768, num_classes=1000, seed=3)
    write_npz(root / PATH_IN_BUCKET, params)
    return root


class _Server:
    """`http.server` over a folder in a thread, counting the GET requests it answers."""

    def __init__(self, root):
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(bucket, tmp_path, monkeypatch):
    """The served bucket as KERAS_VIT_WEIGHTS_URL, and an empty Keras cache."""
    server = _Server(str(bucket))
    monkeypatch.setenv(pretrained.MIRROR_ENV, server.url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    pretrained._checked.clear()
    yield server
    server.close()


def _offline(monkeypatch):
    """A mirror address where nothing listens: any download fails as it does without network."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(pretrained.MIRROR_ENV, f"http://127.0.0.1:{port}/")


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _cache_entries(tmp_path):
    root = tmp_path / "keras_home"
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def test_registry_names_every_official_size_with_its_file():
    for preset in ("vit_ti16", "vit_s16", "vit_b16", "vit_b32", "vit_l16"):
        entry = pretrained.get_weights(f"{preset}.augreg_in21k_ft_in1k")
        assert entry["path"].startswith("augreg/") and entry["path"].endswith("res_224.npz")
        assert entry["preset"] == preset and entry["num_classes"] == 1000 and 70 < entry["imagenet_top1"] < 90
        assert pretrained.get_weights(f"{preset}.augreg_in21k")["num_classes"] == 21843
    assert pretrained.WEIGHTS[NAME]["path"] == PATH_IN_BUCKET
    with pytest.raises(ValueError, match=r"unknown weights 'vit_ti16.imagenet'; known: vit_ti16.augreg_in21k,"):
        pretrained.get_weights("vit_ti16.imagenet")


def test_from_preset_downloads_once_into_the_keras_cache(mirror, bucket, tmp_path, monkeypatch):
    from keras_vit import ViT, load_checkpoint

    model = ViT.from_preset("vit_ti16", weights="augreg_in21k_ft_in1k", num_classes=3, image_size=64)
    cached = tmp_path / "keras_home" / "vit_models" / PATH_IN_BUCKET
    assert mirror.requests == ["/" + PATH_IN_BUCKET]
    assert _sha256(cached) == _sha256(bucket / PATH_IN_BUCKET)
    # No digest is recorded for this file: the download's is kept beside it, and nothing else.
    assert (tmp_path / "keras_home" / "vit_models" / (PATH_IN_BUCKET + ".sha256")).read_text().split()[0] == \
        _sha256(cached)
    assert _cache_entries(tmp_path) == sorted([f"vit_models/{PATH_IN_BUCKET}", f"vit_models/{PATH_IN_BUCKET}.sha256"])
    # The same model as loading the served file directly: encoder weights, resampled grid, new head.
    direct = load_checkpoint(str(bucket / PATH_IN_BUCKET), num_classes=3, image_size=64)
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")
    features = model.embed(images)
    np.testing.assert_allclose(features, direct.embed(images), atol=1e-6)
    assert float(np.abs(np.asarray(model.get_layer("encoder_norm").gamma) - 1).max()) > 0  # checkpoint values
    assert model.num_classes == 3 and model.patch_grid == (4, 4)

    # A second use reads the cache: no request, even with the network gone.
    _offline(monkeypatch)
    pretrained._checked.clear()
    again = ViT.from_preset("vit_ti16", weights=NAME, num_classes=3, image_size=64)
    assert len(mirror.requests) == 1
    np.testing.assert_allclose(again.embed(images), features, atol=1e-6)


def test_a_recorded_digest_is_checked_and_a_wrong_download_leaves_nothing(mirror, bucket, tmp_path, monkeypatch):
    good = _sha256(bucket / PATH_IN_BUCKET)
    monkeypatch.setitem(pretrained.WEIGHTS, NAME, dict(pretrained.WEIGHTS[NAME], sha256="0" * 64))
    with pytest.raises(ValueError) as error:
        pretrained.fetch_weights(NAME)
    message = str(error.value)
    assert "\n" not in message and f"SHA-256 {good}, not the {'0' * 64} recorded for {NAME}" in message
    assert "nothing was kept" in message
    assert [entry for entry in _cache_entries(tmp_path) if entry.endswith((".npz", ".sha256")) or "tmp" in entry] == []

    monkeypatch.setitem(pretrained.WEIGHTS, NAME, dict(pretrained.WEIGHTS[NAME], sha256=good))
    path = pretrained.fetch_weights(NAME)
    assert _sha256(path) == good
    assert _cache_entries(tmp_path) == [f"vit_models/{PATH_IN_BUCKET}"]  # a recorded digest needs no sidecar


def test_a_changed_cached_file_is_refused_and_kept(mirror, tmp_path, monkeypatch):
    path = pretrained.fetch_weights(NAME)
    with open(path, "r+b") as file:  # one flipped byte in the middle
        file.seek(os.path.getsize(path) // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))
    pretrained._checked.clear()
    _offline(monkeypatch)
    with pytest.raises(ValueError, match=r"has SHA-256 [0-9a-f]{64}, not the [0-9a-f]{64} written at its download"):
        pretrained.fetch_weights(NAME)
    assert os.path.exists(path)  # the user's cache is not deleted behind their back


def test_offline_without_the_file_names_the_address_and_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    _offline(monkeypatch)
    with pytest.raises(pretrained.WeightsUnavailableError) as error:
        pretrained.fetch_weights(NAME)
    message = str(error.value)
    assert "\n" not in message
    assert pretrained.weights_url(NAME) in message
    assert f"put the file at {tmp_path / 'keras_home' / 'vit_models' / PATH_IN_BUCKET}" in message
    assert pretrained.MIRROR_ENV in message
    assert _cache_entries(tmp_path) == []


def test_the_bucket_is_the_default_address(monkeypatch):
    monkeypatch.delenv(pretrained.MIRROR_ENV, raising=False)
    assert pretrained.weights_url(NAME) == "https://storage.googleapis.com/vit_models/" + PATH_IN_BUCKET
    monkeypatch.setenv(pretrained.MIRROR_ENV, "https://mirror.example/vit")
    assert pretrained.weights_url(NAME) == "https://mirror.example/vit/" + PATH_IN_BUCKET


def test_weights_of_another_architecture_are_refused():
    from keras_vit import ViT

    with pytest.raises(ValueError, match="weights vit_ti16.augreg_in21k_ft_in1k are for preset vit_ti16, not vit_s16"):
        ViT.from_preset("vit_s16", weights=NAME)


def test_a_file_of_another_architecture_at_the_path_is_refused(tmp_path, monkeypatch):
    from keras_vit import ViT

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    pretrained._checked.clear()
    small = random_checkpoint(image_size=224, patch_size=16, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64)
    path = tmp_path / "keras_home" / "vit_models" / PATH_IN_BUCKET
    os.makedirs(path.parent)
    write_npz(path, small)  # put there by hand, no digest beside it
    with pytest.raises(ValueError, match=r"is not the expected architecture: it has hidden_dim=32 where 192"):
        ViT.from_preset("vit_ti16", weights="augreg_in21k_ft_in1k")


def test_presets_command_lists_the_weights(capsys):
    from keras_vit.training.cli import main

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(NAME))
    assert "224 px" in line and "5.7M params" in line and "75.45%" in line and "1,000 classes" in line
    assert "vit_l16.augreg_in21k " in out and "21,843 classes" in out


def _photos_npz(path, size=64, count=48, seed=0):
    """Two classes of `size`-pixel RGB images a linear model separates (red against blue)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = rng.integers(40, 120, size=(count, size, size, 3)).astype("uint8")
    images[labels == 0, ..., 0] += 100
    images[labels == 1, ..., 2] += 100
    np.savez(path, x_train=images[: count * 3 // 4], y_train=labels[: count * 3 // 4],
             x_test=images[count * 3 // 4:], y_test=labels[count * 3 // 4:])
    return str(path)


def test_train_fine_tunes_named_weights_with_the_papers_recipe(mirror, tmp_path, capsys):
    import json

    from keras_vit.training.cli import main

    dataset = _photos_npz(tmp_path / "photos.npz")
    output = tmp_path / "run"
    status = main(["train", "--dataset", f"npz:{dataset}", "--pretrained", NAME, "--image-size", "32",
                   "--epochs", "1", "--batch-size", "12", "--precision", "float32", "--output", str(output)])
    assert status == 0
    first = capsys.readouterr().out.splitlines()
    model_line = next(line for line in first if line.startswith("model: "))
    assert model_line.startswith(f"model: {NAME} fine-tuned (--pretrained) for 32 training images of 64x64x3 "
                                 "resized to 32x32: 1 epoch of batch 12, SGD at 0.01")
    record = json.loads((output / "config.json").read_text())
    assert record["init_from"] == NAME
    assert (record["optimizer"], record["learning_rate"], record["weight_decay"], record["label_smoothing"],
            record["flip"], record["mixup"]) == ("sgd", 0.01, 0.0, 0.0, True, 0.0)
    assert record["model_config"]["hidden_dim"] == 192 and record["model_config"]["num_classes"] == 2
    assert mirror.requests == ["/" + PATH_IN_BUCKET]


def test_train_picks_cached_weights_for_photos_and_says_how_to_get_them_otherwise(mirror, tmp_path, capsys,
                                                                                  monkeypatch):
    from keras_vit.training.cli import main

    dataset = _photos_npz(tmp_path / "photos.npz")
    common = ["--dataset", f"npz:{dataset}", "--image-size", "32", "--epochs", "1", "--precision", "float32"]
    # Nothing cached: from scratch, with the way to the weights in the model line.
    assert main(["train", *common, "--output", str(tmp_path / "scratch")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model: "))
    assert line.startswith("model: auto for 32 training images of 64x64x3 resized to 32x32")
    assert f"no pre-trained weights in the cache; --pretrained {NAME} downloads ViT-Ti/16 (5.7M parameters, " \
           "75.45% ImageNet top-1)" in line
    assert mirror.requests == []

    pretrained.fetch_weights(NAME)
    assert main(["train", *common, "--output", str(tmp_path / "tuned")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model: "))
    assert line.startswith(f"model: {NAME} fine-tuned (found in the Keras cache; images of 64 pixels and more)")


def test_the_automatic_choice_leaves_small_images_and_shaped_models_from_scratch(mirror, monkeypatch):
    from keras_vit.training.config import TrainConfig
    from keras_vit.training.data import DatasetInfo
    from keras_vit.training.fit import automatic_pretrained

    pretrained.fetch_weights(NAME)
    photos = DatasetInfo("npz:photos.npz", 2, ["a", "b"], image_shape=(64, 48, 3))
    config, words = automatic_pretrained(TrainConfig(dataset="npz:photos.npz"), photos)
    assert config.init_from == NAME and config.model == {"image_size": 160} and "found in the Keras cache" in words
    chosen = [
        automatic_pretrained(TrainConfig(**options), info)[0].init_from
        for options, info in [
            ({"pretrained": "none"}, photos),
            ({"preset": "vit_s16"}, photos),
            ({"model": {"hidden_dim": 96}}, photos),
            ({}, DatasetInfo("npz:small.npz", 2, ["a", "b"], image_shape=(32, 63, 3))),
        ]
    ]
    assert chosen == [None, None, None, None]


def test_train_with_unavailable_weights_is_one_line(tmp_path, monkeypatch, capsys):
    from keras_vit.training.cli import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    _offline(monkeypatch)
    dataset = _photos_npz(tmp_path / "photos.npz")
    output = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{dataset}", "--pretrained", NAME, "--output", str(output)]) != 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "could not be downloaded from" in lines[0] and "put the file at" in lines[0]
    assert not output.exists()
    assert main(["train", "--dataset", f"npz:{dataset}", "--pretrained", "vit_ti16.typo", "--output",
                 str(output)]) != 0
    assert "unknown weights 'vit_ti16.typo'; known: vit_ti16.augreg_in21k" in capsys.readouterr().err
    assert main(["train", "--dataset", f"npz:{dataset}", "--init-from", "vit_s16.augreg", "--output",
                 str(output)]) != 0
    assert ("--init-from vit_s16.augreg is neither a file nor known weights; known: vit_s16.augreg_in21k, "
            "vit_s16.augreg_in21k_ft_in1k") in capsys.readouterr().err
    assert not output.exists()


def test_from_preset_with_unknown_weights_lists_the_presets_weights():
    from keras_vit import ViT

    with pytest.raises(ValueError, match=r"unknown weights 'vit_b16.imagenet'; known: vit_b16.augreg_in21k, "
                                         r"vit_b16.augreg_in21k_ft_in1k, vit_b16.orig_in21k"):
        ViT.from_preset("vit_b16", weights="imagenet")

