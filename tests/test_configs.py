"""The shipped training recipes, configs/*.yaml: valid options, and the models BENCHMARKS.md measured."""

import os

import pytest

from bench.train_accuracy import CONFIGS, RECIPES, load_recipe, parse_overrides
from keras_vit.training.config import merge_config, read_config_file
from keras_vit.training.data import DatasetInfo
from keras_vit.training.fit import build_model, model_config

# Source image shapes of the datasets the recipes name, and the parameter counts BENCHMARKS.md
# reports for each recipe's model: a recipe edit that changes the model must update its figures.
DATASETS = {"digits": (8, 8, 1), "mnist.npz": (28, 28, 1), "cifar10_jpeg.npz": (32, 32, 3)}
PARAMETERS = {"digits": 138_346, "mnist": 555_226, "cifar10": 2_696_554}


def test_every_recipe_is_listed():
    assert RECIPES == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_recipe_builds_the_measured_model(name):
    options = read_config_file(os.path.join(CONFIGS, name + ".yaml"))
    config = merge_config(options)  # unknown or mistyped options raise here
    assert config.output == f"runs/{name}"  # never another recipe's folder (and its backup)
    source = os.path.basename(config.dataset.split(":", 1)[-1])
    info = DatasetInfo(spec=config.dataset, num_classes=10, class_names=[str(i) for i in range(10)],
                       image_shape=DATASETS[source])
    model = build_model(config, model_config(config, info))
    assert model.count_params() == PARAMETERS[name]
    if name == "cifar10":
        assert model.count_params() <= 6_000_000  # the CIFAR-10 recipe's limit


def test_data_folder_replaces_the_recipes_npz_folder(tmp_path):
    recipe = load_recipe("cifar10", str(tmp_path))
    assert recipe["dataset"] == "npz:" + os.path.join(str(tmp_path), "cifar10_jpeg.npz")
    assert load_recipe("digits", str(tmp_path))["dataset"] == "digits"


def test_set_overrides_build_the_trial_model():
    # bench.train_accuracy --set: the average-pooling trial (BENCHMARKS.md: 2,696,170 parameters, the
    # recipe's 2,696,554 less the class token and its position embedding, 2 x 192).
    overrides = parse_overrides(["pooling=gap", "use_class_token=false", "crop_padding=2"])
    assert overrides == {"pooling": "gap", "use_class_token": False, "crop_padding": 2}
    config = merge_config(load_recipe("cifar10", "../shared/data"), overrides)
    assert config.crop_padding == 2 and config.model["pooling"] == "gap"  # the recipe has 1
    info = DatasetInfo(spec=config.dataset, num_classes=10, class_names=[str(i) for i in range(10)],
                       image_shape=DATASETS["cifar10_jpeg.npz"])
    assert build_model(config, model_config(config, info)).count_params() == 2_696_170
    with pytest.raises(ValueError, match="--set expects OPTION=VALUE, got 'pooling'"):
        parse_overrides(["pooling"])
    with pytest.raises(ValueError, match="Unknown training option 'hidden_size'"):
        merge_config(load_recipe("cifar10", "../shared/data"), parse_overrides(["hidden_size=8"]))


def test_every_config_file_parses():
    # The benchmark recipes above and the templates for one's own data (finetune_*.yaml) alike.
    names = sorted(name for name in os.listdir(CONFIGS) if name.endswith(".yaml"))
    assert "finetune_vit_b16.yaml" in names and "finetune_vit_b16" not in RECIPES
    for name in names:
        merge_config(read_config_file(os.path.join(CONFIGS, name)))


def test_fine_tuning_recipe_is_the_vit_papers():
    """SGD momentum 0.9, no weight decay, clipping at norm 1, no MixUp or label smoothing, at 224."""
    config = merge_config(read_config_file(os.path.join(CONFIGS, "finetune_vit_b16.yaml")))
    assert (config.optimizer, config.momentum, config.weight_decay, config.clipnorm) == ("sgd", 0.9, 0.0, 1.0)
    assert config.learning_rate in (0.001, 0.003, 0.01, 0.03)  # the paper's sweep
    assert 0 < config.warmup_epochs < config.epochs / 4
    assert (config.mixup, config.cutmix, config.label_smoothing, config.randaugment) == (0.0, 0.0, 0.0, False)
    assert config.flip and config.crop_padding == 0 and config.validation_fraction == 0.1
    assert config.model == {"image_size": 224, "dropout_rate": 0.0}
    assert config.dataset.startswith("folder:") and config.init_from.endswith(".npz")
    assert config.precision == "auto" and config.output == "runs/finetune_vit_b16"
