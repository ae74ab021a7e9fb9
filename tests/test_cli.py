"""The `keras-vit` command line: help, presets, and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_vit.training.cli import main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*argv):
    """Runs `python -m keras_vit.training ...` in a subprocess; returns (exit code, stdout, stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    env.pop("KERAS_VIT_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "keras_vit.training", *argv], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
    )
    return done.returncode, done.stdout, done.stderr


def error_lines(stderr):
    """stderr lines that are not TensorFlow/absl start-up noise."""
    noise = ("WARNING: All log messages", "I0000", "W0000", "E0000", "oneDNN", "cuda")
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]


def test_help_and_presets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train" in capsys.readouterr().out
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "vit_ti16" in out and "hidden_dim=192" in out and "vit_h14" in out


def test_console_script_entry_point_reports_one_line_errors():
    code, _, stderr = run_cli("train", "--dataset", "imagenet", "--output", "/tmp/kv-never")
    lines = error_lines(stderr)
    assert code == 2, stderr
    assert len(lines) == 1 and "Unknown dataset spec 'imagenet'" in lines[0], stderr
    assert "Traceback" not in stderr


def _bad_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown_dataset", "Unknown dataset spec"),
        ("unknown_preset", "Unknown preset 'vit_q99'; known presets:"),
        ("npz_missing_keys", "is missing x_test, y_test"),
        ("npz_length_mismatch", "x_train has 6 images but y_train has 5 labels"),
        ("labels_out_of_range", "labels outside [0,"),
        ("not_divisible", "not divisible by patch"),
        ("stem_stride_too_large", "patch_size (2, 2) must be divisible by the stem's stride 4"),
        ("bad_stem_channels", "expected positive channel counts like 32,64 or 'none', got '32,x'"),
        ("crop_padding_too_large", "crop_padding must be between 1 and 7 for 8x8 images"),
        ("negative_backup_seconds", "backups need backup_every >= 1 step and backup_seconds >= 0, got 50 and -1.0"),
        ("no_steps_per_execution", "steps_per_execution must be at least 1, got 0"),
        ("empty_folder", "no class sub-folders"),
        ("bad_tf_config", "TF_CONFIG is not valid JSON"),
        ("tf_config_index_out_of_range", "TF_CONFIG's task index 2 is not one of the 2 worker addresses (0..1)"),
        ("tf_config_task_not_in_cluster", "TF_CONFIG's task type 'chief' is not a job of its cluster (worker)"),
        ("config_unknown_precision", "precision must be one of float32, mixed_float16, mixed_bfloat16, auto, got 'fp8'"),
        ("config_unknown_strategy", "strategy must be one of auto, cpu, gpu, mirrored, multiworker, tpu, got 'horovod'"),
        ("tf_config_not_an_object", "TF_CONFIG must be a JSON object like"),
        ("tf_config_cluster_not_lists", "TF_CONFIG's cluster must map job names to lists of host:port"),
        ("bad_config_file", "cannot parse config file"),
        ("config_value_of_wrong_type", "epochs must be a whole number, got 'many'"),
        ("config_flag_not_boolean", "flip must be true or false, got 'yes'"),
        ("config_model_size_not_whole", "num_layers must be a whole number, got 2.5"),
        ("early_stopping_without_validation", "early_stopping watches validation accuracy: it needs validation_fraction"),
        ("no_class_token_with_token_pooling", "no class token (--no-class-token) needs average pooling (--pooling gap)"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, monkeypatch, capsys, case, expected):
    images = np.zeros((6, 8, 8), "uint8")
    args = ["train", "--output", str(tmp_path / "out"), "--epochs", "1"]
    if case == "unknown_dataset":
        args += ["--dataset", "imagenet"]
    elif case == "unknown_preset":
        args += ["--preset", "vit_q99"]
    elif case == "npz_missing_keys":
        args += ["--dataset", _bad_npz(tmp_path, x_train=images, y_train=np.zeros(6, "int64"))]
    elif case == "npz_length_mismatch":
        args += ["--dataset", _bad_npz(tmp_path, x_train=images, y_train=np.zeros(5, "int64"),
                                       x_test=images, y_test=np.zeros(6, "int64"))]
    elif case == "labels_out_of_range":
        args += ["--dataset", _bad_npz(tmp_path, x_train=images, y_train=np.array([0, 1, 2, -3, 1, 0]),
                                       x_test=images, y_test=np.zeros(6, "int64"))]
    elif case == "not_divisible":
        args += ["--image-size", "9", "--patch-size", "2"]
    elif case == "stem_stride_too_large":
        args += ["--stem-channels", "8,8"]
    elif case == "bad_stem_channels":
        args += ["--stem-channels", "32,x"]
    elif case == "crop_padding_too_large":
        args += ["--crop-padding", "8"]
    elif case == "no_steps_per_execution":
        args += ["--steps-per-execution", "0"]
    elif case == "negative_backup_seconds":
        args += ["--backup-seconds", "-1"]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args += ["--dataset", f"folder:{tmp_path / 'empty'}"]
    elif case == "bad_tf_config":
        monkeypatch.setenv("TF_CONFIG", "{not json")
    elif case == "tf_config_index_out_of_range":  # once an IndexError printed as "error: index"
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": 2}}))
    elif case == "tf_config_task_not_in_cluster":
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "chief", "index": 0}}))
    elif case == "config_unknown_strategy":
        (tmp_path / "c.yaml").write_text("strategy: horovod\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    elif case == "tf_config_not_an_object":
        monkeypatch.setenv("TF_CONFIG", "[1, 2]")
    elif case == "tf_config_cluster_not_lists":
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}))
    elif case == "config_unknown_precision":
        (tmp_path / "c.yaml").write_text("precision: fp8\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    elif case == "bad_config_file":
        (tmp_path / "c.yaml").write_text("epochs: [unclosed\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    elif case == "config_value_of_wrong_type":
        (tmp_path / "c.yaml").write_text("epochs: many\n")
        args = ["train", "--output", str(tmp_path / "out"), "--config", str(tmp_path / "c.yaml")]
    elif case == "config_flag_not_boolean":
        (tmp_path / "c.yaml").write_text("flip: 'yes'\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    elif case == "config_model_size_not_whole":  # the ViT would silently build int(2.5) layers
        (tmp_path / "c.yaml").write_text("model:\n  num_layers: 2.5\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    elif case == "early_stopping_without_validation":
        args += ["--validation-fraction", "0", "--early-stopping", "3"]
    elif case == "no_class_token_with_token_pooling":
        args += ["--no-class-token"]
    monkeypatch.delenv("KERAS_VIT_DEBUG", raising=False)
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse rejects a malformed option value itself
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert err.startswith("keras-vit train: error:")
    assert not (tmp_path / "out").exists()  # a refused run leaves no empty output folder behind


def test_a_bug_shows_its_traceback_and_input_errors_do_not(monkeypatch, capsys):
    import keras_vit.training.commands.presets as presets

    def broken(args):
        return {}["missing"]  # a KeyError inside keras-vit is a bug, not bad input

    monkeypatch.setattr(presets, "run", broken)
    monkeypatch.delenv("KERAS_VIT_DEBUG", raising=False)
    with pytest.raises(KeyError, match="missing"):
        main(["presets"])

    def bad_input(args):
        raise ValueError("unknown preset 'x'\nsecond line")

    monkeypatch.setattr(presets, "run", bad_input)
    assert main(["presets"]) == 2
    assert capsys.readouterr().err == "keras-vit presets: error: unknown preset 'x'\n"
    monkeypatch.setenv("KERAS_VIT_DEBUG", "1")  # the documented switch: the traceback of input errors too
    with pytest.raises(ValueError, match="unknown preset"):
        main(["presets"])


def test_evaluate_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.keras"), "--dataset", "digits"]) == 2
    assert "model not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"\x00" * 100)
    assert main(["evaluate", str(corrupt), "--dataset", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a valid .keras file" in err and len(err.splitlines()) == 1
    assert main(["evaluate", str(tmp_path / "model.tflite"), "--dataset", "digits", "--tta", "flip"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--tta flip evaluates a .keras model or training folder, not a .tflite file" in err
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "model.keras"), "--dataset", "digits", "--tta", "mirror"])
    assert exit_info.value.code == 2 and "argument --tta: invalid choice: 'mirror'" in capsys.readouterr().err


def test_command_line_tta_modes_are_the_librarys():
    from keras_vit.training.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["export", "m.keras", "--output", "x.tflite", "--tta", "flip"]).tta == "flip"
    assert parser.parse_args(["export", "m.keras", "--output", "x.tflite"]).tta == "none"


def test_config_file_and_overrides(tmp_path):
    from keras_vit.training.commands.train import config_from_args
    from keras_vit.training.cli import build_parser

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": 7, "hidden_dim": 32, "dataset": "digits", "learning_rate": 0.01}))
    args = build_parser().parse_args(
        ["train", "--config", str(path), "--epochs", "3", "--patch-size", "4", "--stem-channels", "16,32"]
    )
    config = config_from_args(args)
    assert config.epochs == 3 and config.learning_rate == 0.01
    assert config.model == {"hidden_dim": 32, "patch_size": 4, "stem_channels": (16, 32)}
    args = build_parser().parse_args(["train", "--stem-channels", "none"])
    assert config_from_args(args).model == {"stem_channels": ()}
    args = build_parser().parse_args(["train", "--pooling", "gap", "--no-class-token"])
    assert config_from_args(args).model == {"pooling": "gap", "use_class_token": False}
    path.write_text(json.dumps({"pooling": "gap", "use_class_token": "no"}))
    with pytest.raises(ValueError, match="use_class_token must be true or false, got 'no'"):
        config_from_args(build_parser().parse_args(["train", "--config", str(path)]))
    # PyYAML reads 2e-3 (no dot) as a string and JSON files may quote numbers: both become numbers.
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 2e-3\nepochs: '5'\njit_compile: true\nhidden_dim: '48'\nimage_size: [32, 24]\n")
    config = config_from_args(build_parser().parse_args(["train", "--config", str(path)]))
    assert (config.learning_rate, config.epochs, config.jit_compile) == (0.002, 5, "true")
    assert config.model == {"hidden_dim": 48, "image_size": (32, 24)}
    path.write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(ValueError, match="Unknown training option 'hidden_size'"):
        config_from_args(build_parser().parse_args(["train", "--config", str(path)]))
