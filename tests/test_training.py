"""Training end to end: learning on real data, crash and resume, optimizer, evaluation."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.training.cli import main
from keras_vit.training.config import TrainConfig
from keras_vit.training.fit import train
from keras_vit.training.optimization import ProgressWarmupCosine, make_optimizer, warmup_cosine

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tiny_vit_learns_mnist_from_2000_images(mnist_small, tmp_path):
    x_train, y_train, x_test, y_test = mnist_small
    path = tmp_path / "mnist2k.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = TrainConfig(
        dataset=f"npz:{path}",
        output=str(tmp_path / "run"),
        preset="vit_digits",
        # A hybrid: a (16, 32) stem on images resized to 32x32, then 16 tokens of 8x8 pixels.
        # It learns in 25 epochs what the plain ViT (7x7 patches) needed 60 for (93% on this
        # CPU), in under half the time; per-image random shifts keep it from memorizing.
        model=dict(
            image_size=32, patch_size=8, stem_channels=(16, 32), hidden_dim=64, num_layers=4, num_heads=4,
            mlp_dim=128, pooling="gap", dropout_rate=0.0,
        ),
        epochs=25,
        batch_size=64,
        learning_rate=3e-3,
        crop_padding=2,
        label_smoothing=0.1,
        weight_decay=0.05,
        mixup=0.0,
        backup_every=1000,
    )
    metrics = train(config, verbose=0)
    assert metrics["test_accuracy"] >= 0.90, metrics
    for name in ("config.json", "model.keras", "history.csv", "curves.png", "metrics.json"):
        assert os.path.exists(tmp_path / "run" / name), name
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["num_params"] == metrics["num_params"] and saved["train_seconds"] > 0


def _train_command(output):
    # The README's main job (`keras-vit train --export-tflite`), with a backup every 5 steps besides
    # the one at every epoch's end. With a time floor between backups, a digits epoch (about a
    # second) never reached one mid-epoch, and the fixture found no mid-epoch moment to kill it.
    return [sys.executable, "-m", "keras_vit.training", "train", "--export-tflite", "--output", str(output), "--backup-every", "5",
            "--backup-seconds", "0"]


@pytest.fixture(scope="module")
def resumed_digits_run(tmp_path_factory):
    """The README's default job (digits), killed with SIGKILL mid-run, then run again."""
    output = tmp_path_factory.mktemp("digits_run")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    metadata = output / "backup" / "training_metadata.json"
    process = subprocess.Popen(_train_command(output), env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and process.poll() is None:
        if metadata.exists():
            try:
                state = json.loads(metadata.read_text())
            except ValueError:
                state = {}
            if state.get("epoch", 0) >= 3 and state.get("batch", 0) > 0:
                process.send_signal(signal.SIGKILL)
                killed_at = state
                break
        time.sleep(0.2)
    process.wait()
    assert killed_at is not None, "the run was not killed mid-epoch (it finished or never wrote a backup)"
    second = subprocess.run(_train_command(output), env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    return output, killed_at, second


def test_killed_run_resumes_and_defaults_reach_95_percent(resumed_digits_run):
    output, killed_at, second = resumed_digits_run
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from the backup" in second.stdout
    resumed_epoch = int(second.stdout.split("Resuming from the backup in ")[1].split("epoch ")[1].split()[0])
    assert resumed_epoch >= 4  # 1-based: did not restart from the first epoch
    with open(output / "history.csv") as file:
        epochs = [int(row["epoch"]) for row in csv.DictReader(file)]
    # Epochs before the kill come from the first process, the rest from the second: each once.
    planned = json.loads((output / "config.json").read_text())["epochs"]
    assert planned == 100  # the digits recipe, chosen from the data
    assert epochs == list(range(planned))
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95, metrics
    assert not (output / "backup").exists()  # finished runs leave no backup behind
    assert "test_accuracy" in second.stdout  # the closing table


def test_the_main_job_trains_on_one_intra_op_thread(resumed_digits_run):
    # A child process: TensorFlow starts after the thread choice (training.threads).
    output, _, second = resumed_digits_run
    assert json.loads((output / "config.json").read_text())["intra_op_threads"] == 1
    assert "1 intra-op thread (a small step" in second.stdout


def test_main_job_exports_tflite_models_that_match_keras(resumed_digits_run):
    output, _, second = resumed_digits_run
    folder = output / "tflite"
    for mode in ("float32", "float16", "dynamic", "int8"):
        assert (folder / f"model_{mode}.tflite").stat().st_size > 0, mode
        assert (folder / f"model_{mode}.labels.txt").read_text().split() == [str(i) for i in range(10)]
        assert f"tflite {mode}" in second.stdout
    report = json.loads((folder / "report.json").read_text())
    rows = {row["mode"]: row for row in report["rows"]}
    keras_accuracy = json.loads((output / "metrics.json").read_text())["test_accuracy"]
    assert rows["float32"]["accuracy"] == pytest.approx(keras_accuracy, abs=1e-6)
    assert rows["int8"]["accuracy"] >= keras_accuracy - 0.01
    assert rows["int8"]["fully_integer"] and rows["int8"]["agreement_with_keras"] >= 0.97
    assert rows["float16"]["accuracy"] == pytest.approx(keras_accuracy, abs=0.005)
    # The report names the file for the GPU accelerator: float16, unless it did not run there.
    assert report["recommendation"]["gpu"]["mode"] == "float16", report["recommendation"]
    assert (folder / "report.md").exists()


def test_evaluate_command_matches_training_metrics(resumed_digits_run, capsys):
    output = resumed_digits_run[0]
    assert main(["evaluate", str(output)]) == 0
    printed = capsys.readouterr().out
    evaluated = json.loads((output / "metrics_eval.json").read_text())
    trained = json.loads((output / "metrics.json").read_text())
    assert "test_accuracy" in printed
    assert evaluated["test_accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)


def test_evaluate_with_flip_averaging_matches_numpy(resumed_digits_run, capsys):
    from numpy_reference import softmax

    from keras_vit.training.artifacts import load_keras_model
    from keras_vit.training.data import load_splits

    output = resumed_digits_run[0]
    assert main(["evaluate", str(output), "--tta", "flip"]) == 0
    assert "trained without --flip" in capsys.readouterr().err
    evaluated = json.loads((output / "metrics_eval_tta_flip.json").read_text())
    assert evaluated["tta"] == "flip"
    model = load_keras_model(str(output))
    images, labels = zip(*load_splits("digits").test.as_numpy_iterator())
    images = np.stack(images).astype("float32")  # [360, 8, 8, 1]
    probabilities = [softmax(model.predict(x, verbose=0).astype("float64")) for x in (images, images[:, :, ::-1])]
    expected = np.mean(np.argmax(probabilities[0] + probabilities[1], axis=-1) == np.array(labels))
    assert evaluated["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    # Digits are not mirror-symmetric: averaging with mirrored digits changes some predictions, so
    # the figure above is not the plain accuracy.
    assert np.any(np.argmax(probabilities[0], -1) != np.argmax(probabilities[0] + probabilities[1], -1))
    status = main(["evaluate", str(output / "model.keras"), "--tta", "flip", "--output", str(output / "x.json")])
    assert status == 0 and json.loads((output / "x.json").read_text())["test_accuracy"] == evaluated["test_accuracy"]


def test_a_runs_config_json_trains_that_run_again(resumed_digits_run):
    from keras_vit.training.commands.train import config_from_args
    from keras_vit.training.cli import build_parser

    output = resumed_digits_run[0]
    args = build_parser().parse_args(["train", "--config", str(output / "config.json")])
    # The options of `_train_command` and the defaults chosen for the data (1,295 training images
    # of 8x8), and nothing of what `train` recorded beside them.
    expected = TrainConfig(output=str(output), export_tflite=True, backup_every=5, backup_seconds=0).resolve(1295, (8, 8))
    assert expected.epochs == 100 and expected.batch_size == 64
    assert config_from_args(args) == expected


def test_weight_decay_skips_biases_norms_class_token_and_positions():
    from keras_vit import ViT

    model = ViT(image_size=8, channels=1, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)
    optimizer = make_optimizer(model, 1e-3, total_steps=100, warmup_steps=10, weight_decay=0.1)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    skipped = {v.path for v in model.trainable_variables} - decayed
    assert all(path.endswith("kernel") for path in decayed)
    assert any("class_token" in p for p in skipped) and any("position_embedding" in p for p in skipped)
    assert any(p.endswith("bias") for p in skipped) and any(p.endswith("gamma") for p in skipped)
    assert len(decayed) == 1 + 4 + 1  # patch projection, qkv/out/mlp1/mlp2, head


def test_warmup_then_cosine():
    schedule = warmup_cosine(1e-3, total_steps=110, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    assert values[0] == pytest.approx(0.0, abs=1e-9)
    assert values[1] == pytest.approx(5e-4, rel=1e-4)
    assert values[2] == pytest.approx(1e-3, rel=1e-4)
    assert values[3] == pytest.approx(5e-4, rel=1e-3)  # half-way through the cosine
    assert values[4] == pytest.approx(0.0, abs=1e-8)


def test_progress_schedule_follows_time_or_steps_whichever_is_further():
    schedule = ProgressWarmupCosine(1e-3, total_steps=100, warmup_fraction=0.1)

    def rate(step, time_share):
        schedule.time_progress.assign(time_share)
        return float(schedule(step))

    assert rate(0, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert rate(5, 0.0) == pytest.approx(5e-4, rel=1e-4)  # warm-up by steps
    assert rate(0, 0.05) == pytest.approx(5e-4, rel=1e-4)  # warm-up by time
    assert rate(10, 0.0) == pytest.approx(1e-3, rel=1e-4)
    # p = 0.55: half-way through the cosine, reached by steps or by time.
    assert rate(55, 0.2) == pytest.approx(5e-4, rel=1e-3)
    assert rate(10, 0.55) == pytest.approx(5e-4, rel=1e-3)
    assert rate(10, 1.0) == pytest.approx(0.0, abs=1e-9)
    assert rate(100, 0.0) == pytest.approx(0.0, abs=1e-9)
    restored = ProgressWarmupCosine.from_config(schedule.get_config())
    schedule.time_progress.assign(0.0)
    assert float(restored(30)) == pytest.approx(float(schedule(30)), rel=1e-6)


def test_time_budget_stops_training_and_anneals(tmp_path):
    # 30 seconds: 4 to 12 epochs, depending on the CPU. The budget includes ~20 s of tracing on a slow
    # host, where 24 s left 2-3 epochs and 0.27 accuracy.
    config = TrainConfig(output=str(tmp_path / "run"), epochs=1000, time_budget_minutes=0.5, backup_every=1000)
    metrics = train(config, verbose=0)
    assert metrics["stopped_by_time_budget"]
    assert 1 <= metrics["epochs_run"] < 1000
    assert 30.0 <= metrics["train_seconds"] < 86.0
    assert metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    with open(tmp_path / "run" / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == metrics["epochs_run"]
    if "learning_rate" in rows[-1]:
        assert float(rows[-1]["learning_rate"]) < 0.05 * config.learning_rate


def test_the_automatic_budget_stops_a_run_and_says_which(tmp_path, monkeypatch, capsys):
    """Automatic epochs under their tier's budget (patched to 15 s for the digits' tier): the run
    stops there, config.json records the budget, and the result names it."""
    from keras_vit.training import model_choice

    tiers = tuple(dict(tier, time_budget_minutes=0.25) if tier["max_images"] == 10_000 else tier
                  for tier in model_choice.SIZE_TIERS)
    monkeypatch.setattr(model_choice, "SIZE_TIERS", tiers)
    assert main(["train", "--output", str(tmp_path / "run"), "--quiet", "--backup-every", "1000"]) == 0
    out = capsys.readouterr().out
    assert "time budget of 0.25 minutes spent" in out, out
    with open(tmp_path / "run" / "config.json") as file:
        saved = json.load(file)
    assert (saved["time_budget_minutes"], saved["epochs"]) == (0.25, 100)
    with open(tmp_path / "run" / "history.csv") as file:
        assert 1 <= len(list(csv.DictReader(file))) < 100


def test_auto_precision_picks_native_low_precision_only():
    from keras_vit.training.strategy import resolve_precision

    assert resolve_precision("auto", gpu_capabilities=[], flags={"avx2", "avx512f", "avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpu_capabilities=[], flags={"avx2", "amx_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpu_capabilities=[], flags={"avx2", "fma"}) == "float32"
    assert resolve_precision("auto", gpu_capabilities=[(8, 0), (9, 0)], flags=set()) == "mixed_bfloat16"
    assert resolve_precision("auto", gpu_capabilities=[(7, 5)], flags={"avx512_bf16"}) == "mixed_float16"
    assert resolve_precision("auto", gpu_capabilities=[(6, 1)], flags={"avx512_bf16"}) == "float32"
    assert resolve_precision("mixed_float16", gpu_capabilities=[], flags=set()) == "mixed_float16"
    # Narrow models (the digits default, hidden 64) gain nothing from low precision: float32.
    bf16_cpu = {"avx2", "avx512f", "avx512_bf16"}
    assert resolve_precision("auto", gpu_capabilities=[], flags=bf16_cpu, hidden_dim=64) == "float32"
    assert resolve_precision("auto", gpu_capabilities=[], flags=bf16_cpu, hidden_dim=128) == "mixed_bfloat16"
    assert resolve_precision("mixed_bfloat16", gpu_capabilities=[], flags=set(), hidden_dim=64) == "mixed_bfloat16"
    with pytest.raises(ValueError, match="Unknown precision 'half'"):
        resolve_precision("half")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_keeps_float32_logits(tmp_path, precision):
    config = TrainConfig(
        output=str(tmp_path / precision), epochs=1, limit_train=256, precision=precision, backup_every=1000,
        model=dict(num_layers=1, hidden_dim=32, mlp_dim=64),
    )
    metrics = train(config, verbose=0)
    model = keras.saving.load_model(tmp_path / precision / "model.keras")
    assert model.get_layer("encoder_block_0").compute_dtype == precision.split("_")[1]
    assert model.output.dtype == "float32"
    assert np.isfinite(metrics["test_loss"])
    keras.config.set_dtype_policy("float32")
    # Exports use the same weights computing in float32.
    exact = model.as_float32()
    assert exact.get_layer("encoder_block_0").compute_dtype == "float32"
    for mixed_weight, float_weight in zip(model.get_weights(), exact.get_weights()):
        np.testing.assert_array_equal(mixed_weight, float_weight)
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype("float32")
    mixed_logits, float_logits = np.asarray(model(images)), np.asarray(exact(images))
    assert np.abs(mixed_logits - float_logits).max() < 0.1 * max(1.0, np.abs(float_logits).max())
    assert exact.as_float32() is exact
    from keras_vit.training.artifacts import load_keras_model

    loaded = load_keras_model(str(tmp_path / precision), float32=True)
    assert loaded.get_layer("encoder_block_0").compute_dtype == "float32"
    np.testing.assert_allclose(np.asarray(loaded(images)), float_logits, atol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ema": 1.5}, r"ema must be in \[0, 1\)"),
        ({"time_budget_minutes": -1}, "time_budget_minutes must be positive"),
        ({"keep_model": "worst"}, "keep_model must be 'best' or 'last'"),
        ({"crop_fill": "edge"}, "crop_fill must be 'reflect' or 'zeros', got 'edge'"),
        ({"model": [1]}, r"model must be a mapping of model options, got \[1\]"),
        ({"learning_rate": True}, "learning_rate must be a number, got True"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\), got 1.0"),
        ({"steps_per_execution": 0}, "steps_per_execution must be at least 1, got 0"),
        (
            {"early_stopping": 3, "validation_fraction": 0},
            "early_stopping watches validation accuracy: it needs validation_fraction above 0",
        ),
    ],
)
def test_new_training_options_reject_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_no_validation_split_trains_on_all_and_keeps_the_last_model(tmp_path):
    output = tmp_path / "run"
    config = TrainConfig(output=str(output), epochs=3, validation_fraction=0.0, backup_every=1000)
    metrics = train(config, verbose=0)
    with open(output / "history.csv") as file:
        rows = list(csv.DictReader(file))
    # Keras' CSVLogger adds validation columns whatever the run; here they hold no scores.
    assert len(rows) == 3 and {row["val_accuracy"] for row in rows} == {"NA"}
    # keep_model is "best" by default, but without validation scores the final epoch is kept.
    assert json.loads((output / "model.keras.best.json").read_text())["epoch"] == 3
    assert (output / "curves.png").stat().st_size > 0
    assert metrics["epochs_run"] == 3 and metrics["test_accuracy"] > 0.2  # chance is 0.1


def test_a_repeated_pipeline_is_one_pass_per_epoch_and_a_finite_one_is_left_as_it_is():
    from keras_vit.training.fit import _repeated

    dataset = tf.data.Dataset.range(10).batch(4)  # batches of 4, 4, 2
    repeated = _repeated(dataset, 3)
    assert int(repeated.cardinality()) == tf.data.INFINITE_CARDINALITY
    batches = [list(batch.numpy()) for batch in repeated.take(6)]
    assert batches[:3] == batches[3:] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert _repeated(dataset, 2) is dataset  # not one pass per epoch
    unknown = dataset.filter(lambda batch: True)  # unknown length: as it is
    assert _repeated(unknown, 3) is unknown
    assert _repeated(dataset, None) is dataset and _repeated(None, 3) is None
    # Calls of 2 steps would run 4 a pass, the last past the end: as it is; calls of 3 fit.
    assert _repeated(dataset, 3, steps_per_execution=2) is dataset
    assert int(_repeated(dataset, 3, steps_per_execution=3).cardinality()) == tf.data.INFINITE_CARDINALITY


def test_training_keeps_one_training_iterator_across_epochs(tmp_path, monkeypatch):
    created = []
    dataset_iter = tf.data.Dataset.__iter__

    def counted_iter(self):
        created.append(int(self.cardinality()))
        return dataset_iter(self)

    monkeypatch.setattr(tf.data.Dataset, "__iter__", counted_iter)
    config = TrainConfig(output=str(tmp_path / "run"), epochs=4, backup_every=1000)
    metrics = train(config, verbose=0)
    # Training: one iterator for 4 epochs, repeated (infinite cardinality), before any other;
    # the finite ones are validation's (evaluate resets its iterator at every call) and the test's.
    assert created[0] == tf.data.INFINITE_CARDINALITY
    assert created.count(tf.data.INFINITE_CARDINALITY) == 1
    with open(tmp_path / "run" / "history.csv") as file:
        assert len(list(csv.DictReader(file))) == 4
    assert metrics["epochs_run"] == 4


def test_several_steps_per_execution_train_the_same_model(tmp_path, monkeypatch):
    """Running 4 steps per compiled call changes the dispatch, not the arithmetic: the
    same data order, learning rates and updates (including the last call of each
    epoch, which has only 3 of its 4 steps: 15 steps of 32 images)."""
    compiled_with = []
    compile_model = keras.Model.compile

    def recording_compile(model, *args, **kwargs):
        compiled_with.append(kwargs.get("steps_per_execution", 1))
        return compile_model(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", recording_compile)
    weights = {}
    for steps in (1, 4):
        output = tmp_path / f"steps{steps}"
        config = TrainConfig(output=str(output), epochs=2, batch_size=32, limit_train=480, steps_per_execution=steps,
                             backup_every=1000)
        train(config, verbose=0)
        assert compiled_with[0] == steps  # the training compile (the final evaluation compiles again)
        weights[steps] = keras.saving.load_model(output / "model.keras").get_weights()
        compiled_with.clear()
        assert json.loads((output / "config.json").read_text())["steps_per_execution"] == steps
    assert len(weights[1]) == len(weights[4])
    for single, grouped in zip(weights[1], weights[4]):
        np.testing.assert_allclose(grouped, single, rtol=1e-4, atol=1e-5)


def test_another_runs_backup_is_not_resumed(tmp_path):
    output = tmp_path / "run"
    (output / "backup").mkdir(parents=True)
    (output / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 2, "batch": 5}))
    previous = TrainConfig(output=str(output), model={"stem_channels": (16, 32)})
    (output / "config.json").write_text(json.dumps(previous.to_dict()))
    with pytest.raises(ValueError, match=r"holds the crash backup of a different run \(model \{'stem_channels': \[16, 32\]\} there, \{'hidden_dim': 32\} now\)"):
        train(TrainConfig(output=str(output), model={"hidden_dim": 32}), verbose=0)
    # Nothing of the killed run was touched: its config and backup are still there to resume.
    assert json.loads((output / "config.json").read_text()) == json.loads(json.dumps(previous.to_dict()))
    assert (output / "backup" / "training_metadata.json").exists()


def test_time_budget_is_refused_across_workers(tmp_path, monkeypatch):
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    with pytest.raises(ValueError, match="--time-budget needs a single worker"):
        train(TrainConfig(output=str(tmp_path / "run"), time_budget_minutes=1.0), verbose=0)


def test_callbacks_reject_bad_arguments():
    from keras_vit.training.callbacks import AtomicBestModel, PeriodicBackup, TimeBudget

    with pytest.raises(ValueError, match="every_steps must be at least 1"):
        PeriodicBackup("backup", every_steps=0)
    with pytest.raises(ValueError, match="keep must be one of"):
        AtomicBestModel("model.keras", keep="worst")
    with pytest.raises(ValueError, match="min_seconds must be 0 or more"):
        AtomicBestModel("model.keras", min_seconds=-1)
    with pytest.raises(ValueError, match="the time budget must be positive"):
        TimeBudget(0, elapsed=None, time_progress=None)


@pytest.mark.parametrize(
    "every_steps, min_seconds, steps_per_execution, expected",
    [(1, 0.0, 1, 33), (4, 0.0, 1, 9), (1, 3600.0, 1, 0), (10, 0.0, 5, 6), (4, 0.0, 5, 9)],
)
def test_periodic_backup_counts_steps_and_waits_its_seconds(
    tmp_path, every_steps, min_seconds, steps_per_execution, expected
):
    """30 steps over 3 epochs: a backup at every epoch's end and every N steps within an epoch,
    each once the floor has passed since the last backup (with an hour's floor: none at all).
    With 5 steps per call the hook runs twice an epoch, and the count is still in steps:
    every 10 steps is one backup an epoch besides its end."""
    from keras_vit.training.callbacks import PeriodicBackup

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    flushes = []
    backup = PeriodicBackup(str(tmp_path / "backup"), every_steps, min_seconds, delete_checkpoint=False,
                            before_backup=lambda: flushes.append(backup.backups_written))
    model.fit(np.zeros((40, 4)), np.zeros((40, 2)), batch_size=4, epochs=3, callbacks=[backup], verbose=0)
    assert backup.backups_written == expected
    # before_backup ran before each backup was written, and once more at the end of training.
    assert flushes == list(range(expected)) + [expected]
    metadata = tmp_path / "backup" / "training_metadata.json"
    if expected:
        # The last backup, at the third epoch's end: a resumed run would start after it.
        assert json.loads(metadata.read_text()) == {"epoch": 3, "batch": 0}
    else:
        assert not metadata.exists()


@pytest.mark.parametrize("min_seconds, writes_during_epochs", [(3600.0, 1), (0.0, 2)])
def test_best_model_held_in_memory_is_written_with_its_own_state(tmp_path, min_seconds, writes_during_epochs):
    """Within the time floor, a better model is held in memory; flush() (at train end)
    writes that epoch's weights and optimizer state, not the current ones, and leaves the
    model as it was. Without a floor each better model is written at once."""
    from keras_vit.training.callbacks import AtomicBestModel

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)  # builds the optimizer's variables
    kernel, iterations = model.layers[0].kernel, model.optimizer.iterations
    path = tmp_path / "model.keras"
    scores = tmp_path / "model.keras.best.json"
    best = AtomicBestModel(str(path), min_seconds=min_seconds)
    best.set_model(model)
    best.on_train_begin()

    best.on_epoch_end(0, {"val_accuracy": 0.5, "val_loss": 1.0})  # the first model is written at once
    assert best.files_written == 1
    kernel.assign(np.full((3, 2), 1.0))
    iterations.assign(11)
    best.on_epoch_end(1, {"val_accuracy": 0.9, "val_loss": 0.5})  # better
    assert best.files_written == writes_during_epochs
    assert json.loads(scores.read_text())["epoch"] == writes_during_epochs
    kernel.assign(np.full((3, 2), 2.0))
    iterations.assign(22)
    best.on_epoch_end(2, {"val_accuracy": 0.8, "val_loss": 0.6})  # worse: nothing to write
    best.on_train_end()

    assert best.files_written == 2
    assert json.loads(scores.read_text()) == {"val_accuracy": 0.9, "val_loss": 0.5, "epoch": 2}
    saved = keras.saving.load_model(path)
    np.testing.assert_array_equal(saved.layers[0].kernel.numpy(), np.full((3, 2), 1.0))
    assert int(saved.optimizer.iterations.numpy()) == 11
    np.testing.assert_array_equal(kernel.numpy(), np.full((3, 2), 2.0))  # the run goes on where it was
    assert int(iterations.numpy()) == 22


def test_resumed_history_keeps_each_epoch_once(tmp_path):
    """A run killed after logging epoch 3 but before its epoch-end backup resumes at epoch 3:
    its row goes, and the rows before it stay as written."""
    from keras_vit.training.artifacts import truncate_history

    path = tmp_path / "history.csv"
    rows = ["epoch,accuracy,loss\n"] + [f"{epoch},0.{epoch},{1 / (epoch + 1):.3f}\n" for epoch in range(4)]
    path.write_text("".join(rows))
    truncate_history(str(path), 3)
    assert path.read_text() == "".join(rows[:4])
    truncate_history(str(path), 3)  # nothing more to drop
    assert path.read_text() == "".join(rows[:4])
