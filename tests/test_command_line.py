"""The command line as a user meets it: help and argument errors without TensorFlow, `--version`,
help text and examples on every option and command, defaults shown from the code that applies
them, and a console free of TensorFlow's and LiteRT's native logging unless `--verbose`."""

import argparse
import dataclasses
import os
import subprocess
import sys

import pytest

import keras_vit
from keras_vit import console
from keras_vit.training.cli import COMMANDS, build_parser
from keras_vit.training.config import MODEL_FIELDS, TrainConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    """Runs `code` in a fresh interpreter (nothing imported yet); returns (exit code, stdout, stderr)."""
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, **env)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_VIT_DEBUG"):
        if name not in env:
            environment.pop(name, None)  # what a user's shell has: no level set
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          cwd=REPO_ROOT, timeout=300)
    return done.returncode, done.stdout, done.stderr


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["export", "--help"], ["predict", "--help"],
                                  ["evaluate", "--help"], ["explain", "--help"], ["--version"],
                                  ["train", "--epochs", "many"], ["export"]])
def test_help_version_and_argument_errors_never_import_tensorflow(argv):
    code, stdout, stderr = run_python(
        "import sys\nfrom keras_vit.training.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow', code)"
    )
    assert code == 0, stderr
    assert stdout.splitlines()[-1].startswith("no tensorflow"), stdout
    expected_exit = "2" if argv in (["train", "--epochs", "many"], ["export"]) else "0"
    assert stdout.split()[-1] == expected_exit


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-vit {keras_vit.__version__}"


def test_every_command_has_examples_and_every_option_a_help_text():
    parser, commands = subparsers()
    assert set(commands) == set(COMMANDS)
    assert "examples:\n  keras-vit train" in parser.format_help()
    for name, command in commands.items():
        text = command.format_help()
        assert f"examples:\n  keras-vit {name}" in text or "examples:\n  keras-vit" in text, name
        missing = [action.option_strings or action.dest for action in command._actions if not action.help]
        assert missing == [], f"{name}: options without help: {missing}"


def test_train_help_shows_the_defaults_that_training_applies():
    _, commands = subparsers()
    train = commands["train"]
    defaults = TrainConfig()
    help_text = " ".join(train.format_help().split())  # unwrapped
    def entry(option):
        start = help_text.index(option, help_text.index("options:"))  # past the usage line
        return help_text[start:help_text.index(" --", start + len(option))]

    for option, field in (("--clipnorm NORM", "clipnorm"), ("--output DIR", "output"), ("--dataset SPEC", "dataset")):
        assert f"(default: {getattr(defaults, field)})" in entry(option), entry(option)
    # Options whose default depends on the run: from scratch or fine-tuning a checkpoint (model_choice).
    from keras_vit.training.model_choice import FINE_TUNE_RECIPE, SCRATCH_RECIPE

    for option, field in (("--weight-decay DECAY", "weight_decay"),
                          ("--label-smoothing EPSILON", "label_smoothing"), ("--optimizer", "optimizer")):
        assert getattr(defaults, field) is None
        words = f"(default: {SCRATCH_RECIPE[field]:g} from scratch, {FINE_TUNE_RECIPE[field]:g} when fine-tuning)" \
            if field != "optimizer" else f"(default: {SCRATCH_RECIPE[field]} from scratch, {FINE_TUNE_RECIPE[field]} when fine-tuning)"
        assert words in entry(option).replace("fine- tuning", "fine-tuning"), entry(option)  # argparse's hyphen wrap
    # The learning rate and batch from scratch depend on the size tier too.
    from keras_vit.training.model_choice import SIZE_TIERS

    rates = {tier["learning_rate"] for tier in SIZE_TIERS}
    usual = next(tier["learning_rate"] for tier in SIZE_TIERS if tier["max_images"] is None)
    (other,) = [tier for tier in SIZE_TIERS if tier["learning_rate"] != usual]
    low = max(t["max_images"] for t in SIZE_TIERS if t["max_images"] and t["max_images"] < other["max_images"])
    assert len(rates) == 2 and defaults.learning_rate is None
    assert (f"(default: {usual:g} from scratch, {other['learning_rate']:g} for {low:,} to {other['max_images']:,} "
            f"training images, {FINE_TUNE_RECIPE['learning_rate']:g} when fine-tuning)"
            ) in entry("--learning-rate LR").replace("fine- tuning", "fine-tuning"), entry("--learning-rate LR")
    first = SIZE_TIERS[0]
    assert all(t["batch_size"] == SIZE_TIERS[1]["batch_size"] for t in SIZE_TIERS[1:])
    assert (f"(default: {first['batch_size']} up to {first['max_images']:,} training images, else "
            f"{SIZE_TIERS[1]['batch_size']}; fine-tuning: {FINE_TUNE_RECIPE['batch_size']})") in entry("--batch-size")
    # The automatic time budget, as the tier that applies it holds it.

    budgeted = [tier for tier in SIZE_TIERS if tier["time_budget_minutes"]]
    assert len(budgeted) == 1
    low = next(t["max_images"] for t in SIZE_TIERS if t["max_images"] < budgeted[0]["max_images"])
    assert (f"default: {budgeted[0]['time_budget_minutes']:g} for {low:,} to {budgeted[0]['max_images']:,} training "
            "images when --epochs is not set") in help_text.replace("learning- rate", "learning-rate")
    # The parser itself sets nothing: a --config file must still be able to set every option.
    args = train.parse_args([])
    options = {key: value for key, value in vars(args).items() if key not in ("func", "verbose", "quiet", "overwrite")}
    assert {key: value for key, value in options.items() if value is not None} == {}
    # Every option is a TrainConfig field or a model option (or --config itself).
    assert set(options) - {field.name for field in dataclasses.fields(TrainConfig)} <= {*MODEL_FIELDS, "config"}


def test_no_default_is_written_twice():
    """A default written by hand in a help text beside the formatter's would say it twice."""
    _, commands = subparsers()
    for name, command in commands.items():
        for action in command._actions:
            formatted = command._get_formatter()._expand_help(action) if action.help else ""
            assert formatted.count("(default") <= 1, f"{name} {action.option_strings}: {formatted}"


def test_the_command_line_reads_the_exporters_choices_from_the_modules_that_act_on_them():
    from keras_vit.export import choices, graph, savedmodel, tflite

    assert (choices.MODES, choices.QUANTIZED_MODES, choices.IO_TYPES, choices.WEIGHT_GRANULARITIES) == (
        tflite.MODES, tflite.QUANTIZED_MODES, tflite.IO_TYPES, tflite.WEIGHT_GRANULARITIES)
    assert choices.GRAPHS == graph.GRAPHS and choices.INPUT_DTYPES == savedmodel.INPUT_DTYPES


def test_the_lazy_package_registers_every_layer_on_first_use():
    code, stdout, stderr = run_python(
        "import sys, keras_vit\n"
        "assert 'tensorflow' not in sys.modules\n"
        "keras_vit.ViT\n"
        "import keras\n"
        "from keras.saving import get_registered_object\n"
        "print(sorted(n for n in ('Patches', 'PatchEncoder', 'TransformerBlock', 'TokenPooling', 'ConvStem', "
        "'ViT', 'MeanProbabilityLogits') if get_registered_object('keras_vit>' + n) is not None))"
    )
    assert code == 0, stderr
    assert stdout.split("\n")[-2] == str(sorted(
        ["ConvStem", "MeanProbabilityLogits", "PatchEncoder", "Patches", "TokenPooling", "TransformerBlock", "ViT"]))


@pytest.mark.parametrize("first_import", ["from keras_vit.layers import Patches",
                                          "import keras_vit.training.model_choice",
                                          "import keras, keras_vit.layers"])
def test_importing_a_submodule_first_registers_every_layer(first_import):
    """The layers imported before the package's lazy names (they import Keras, which loads the
    model, which imports the layers): no circular import, and every layer registered."""
    code, stdout, stderr = run_python(
        f"{first_import}\n"
        "from keras.saving import get_registered_object\n"
        "print(sorted(n for n in ('Patches', 'PatchEncoder', 'TransformerBlock', 'ConvStem', 'ViT', "
        "'MeanProbabilityLogits') if get_registered_object('keras_vit>' + n) is not None))")
    assert code == 0, stderr
    assert stdout.split("\n")[-2] == str(sorted(
        ["ConvStem", "MeanProbabilityLogits", "PatchEncoder", "Patches", "TransformerBlock", "ViT"]))


def test_importing_keras_after_keras_vit_registers_the_layers(tmp_path):
    """`import keras_vit, keras; keras.saving.load_model(path)`, as with an eager package."""
    path = tmp_path / "model.keras"
    keras_vit.ViT.from_preset("vit_ti16", image_size=16, patch_size=8, num_classes=3).save(path)
    code, stdout, stderr = run_python(
        "import sys, keras_vit\n"
        "assert 'keras_vit.model' not in sys.modules\n"
        "import keras\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "print(type(model).__name__, model.output_shape)")
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == "ViT (None, 3)"


def test_native_noise_is_dropped_and_everything_else_kept_in_order(capfd):
    with console.command_console():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796300547.270512    6584 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 00:00:1796300547.270512    6584 cuda.cc:1] a real error\n")
        os.write(2, b"keras-vit: warning: kept\n")
        os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: FLOAT32\n")
        subprocess.run([sys.executable, "-c", "import sys; print('from a child process', file=sys.stderr)"])
        os.write(2, b"no newline at the end")
    assert capfd.readouterr().err.splitlines() == [
        "E0000 00:00:1796300547.270512    6584 cuda.cc:1] a real error", "keras-vit: warning: kept",
        "from a child process", "no newline at the end"]


def test_verbose_filters_nothing(capfd):
    with console.command_console(verbose=True):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert capfd.readouterr().err == "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def test_a_command_prints_one_line_for_bad_input_and_nothing_of_tensorflow():
    code, stdout, stderr = run_python(
        "import sys\nfrom keras_vit.training.cli import main\n"
        "sys.exit(main(['train', '--dataset', 'imagenet', '--output', '/tmp/kv-never']))")
    assert code == 2
    assert stderr.splitlines() == ["keras-vit train: error: Unknown dataset spec 'imagenet'; expected 'digits', "
                                   "'npz:PATH', 'tfds:NAME[:TRAIN[:TEST]]' or 'folder:PATH'"]


def test_verbose_shows_tensorflows_own_logging():
    code, _, stderr = run_python(
        "import sys\nfrom keras_vit.training.cli import main\n"
        "sys.exit(main(['train', '--verbose', '--dataset', 'imagenet', '--output', '/tmp/kv-never']))")
    assert code == 2
    assert "oneDNN custom operations are on" in stderr or "cuda drivers" in stderr, stderr


def test_a_runs_tflite_file_finds_the_runs_training_config(tmp_path):
    """`train --export-tflite` writes RUN/tflite/model_MODE.tflite: evaluate and export find
    the dataset in RUN/config.json, one folder up."""
    from keras_vit.training.evaluation import TFLITE_FOLDER, training_config

    run = tmp_path / "run"
    (run / TFLITE_FOLDER).mkdir(parents=True)
    (run / "config.json").write_text('{"dataset": "npz:photos.npz", "flip": true}')
    (run / TFLITE_FOLDER / "model_float32.tflite").write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model_float32.tflite").write_bytes(b"")
    assert training_config(str(run / TFLITE_FOLDER / "model_float32.tflite"))["dataset"] == "npz:photos.npz"
    assert training_config(str(run))["flip"] is True
    assert training_config(str(elsewhere / "model_float32.tflite")) == {}


def test_the_export_report_takes_a_bounded_seeded_sample_of_a_large_test_split():
    from keras_vit.training.data import load_splits_for_model
    from keras_vit.training.evaluation import ModelData

    data = ModelData("digits", (8, 8, 1), load_splits_for_model("digits", (8, 8, 1), None, False))
    everything, all_labels = data.test_arrays()
    bounded, labels = data.report_arrays(max_bytes=100 * 64)  # 64 bytes per 8x8 gray image
    assert bounded.shape == (100, 8, 8, 1) and labels.shape == (100,)
    assert len(everything) > 100
    # A sample of the real test images, with their own labels.
    rows = {image.tobytes(): label for image, label in zip(everything, all_labels)}
    assert all(rows[image.tobytes()] == label for image, label in zip(bounded, labels))
    assert len(data.report_arrays(limit=30)[0]) == 30
    assert len(data.report_arrays()[0]) == len(everything)  # under the bound: the whole split
