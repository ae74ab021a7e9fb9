"""Accuracy recipes on real data, trained with `training.fit.train` and recorded as JSON.

    python -m bench.train_accuracy digits            # ~2 minutes
    python -m bench.train_accuracy mnist --data ../shared/data
    python -m bench.train_accuracy cifar10 --data ../shared/data   # 115 minutes
    python -m bench.train_accuracy cifar10 --set pooling=gap --set use_class_token=false --name cifar10_gap

`--set OPTION=VALUE` (a training or model option, the value read as YAML) runs a trial of a
recipe without editing its file; `--name` keeps the trial's output and result apart.
Recipes trained with flips also record `test_accuracy_flip_tta`: the final model scored on the
mean probabilities of each test image and its mirror image (`keras-vit evaluate --tta flip`).

Each recipe is a `keras-vit train` config file, `configs/NAME.yaml`; the result lands in
`bench/results/train_<name>.json` with the recipe, the metrics and the machine.
"""

import argparse
import json
import os
import platform
import time

import yaml

# The recipes are the `keras-vit train` config files in configs/, with the choices behind each;
# finetune_*.yaml need your own photos and a downloaded checkpoint: templates, not benchmarks.
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
RECIPES = sorted(
    name[: -len(".yaml")] for name in os.listdir(CONFIGS) if name.endswith(".yaml") and not name.startswith("finetune_")
)


def load_recipe(name, data_dir):
    """configs/NAME.yaml as a dict, its npz file looked up in `data_dir`."""
    from keras_vit.training.config import read_config_file

    recipe = read_config_file(os.path.join(CONFIGS, name + ".yaml"))
    if recipe["dataset"].startswith("npz:"):
        file_name = os.path.basename(recipe["dataset"][len("npz:"):])
        recipe["dataset"] = "npz:" + os.path.join(os.path.abspath(data_dir), file_name)
    return recipe


def parse_overrides(items):
    """`["pooling=gap", "crop_padding=1"]` -> `{"pooling": "gap", "crop_padding": 1}` (values read as YAML).

    Raises ValueError naming an item without `=`; unknown or mistyped options are left to
    `merge_config`, which names them.
    """
    overrides = {}
    for item in items:
        option, equals, value = item.partition("=")
        if not equals or not option.strip():
            raise ValueError(f"--set expects OPTION=VALUE, got {item!r}")
        overrides[option.strip()] = yaml.safe_load(value)
    return overrides


def run(name, data_dir, output_root, epochs=None, time_budget_minutes=None, overrides=None, run_name=None):
    from keras_vit.training.config import merge_config
    from keras_vit.training.fit import train

    recipe = load_recipe(name, data_dir)
    if epochs:
        recipe["epochs"] = epochs
    if time_budget_minutes:
        recipe["time_budget_minutes"] = time_budget_minutes
    name = run_name or name
    recipe["output"] = os.path.join(output_root, name)
    overrides = overrides or {}
    config = merge_config(recipe, overrides)
    start = time.perf_counter()
    metrics = train(config, verbose=2)
    wall_seconds = time.perf_counter() - start
    result = {
        "recipe": recipe,
        "overrides": overrides,
        "metrics": metrics,
        "wall_seconds": wall_seconds,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    if config.flip:
        # Recorded beside, never instead of, the plain test accuracy: it costs two forward passes.
        from keras_vit import flip_averaged
        from keras_vit.images import model_image_shape
        from keras_vit.training.artifacts import load_keras_model
        from keras_vit.training.evaluation import evaluate_keras, model_data

        averaged = flip_averaged(load_keras_model(config.output))
        data = model_data(config.output, model_image_shape(averaged), config.dataset)
        result["test_accuracy_flip_tta"] = evaluate_keras(averaged, data)["test_accuracy"]
    os.makedirs("bench/results", exist_ok=True)
    path = f"bench/results/train_{name}.json"
    with open(path + ".tmp", "w") as file:
        json.dump(result, file, indent=2)
    os.replace(path + ".tmp", path)
    print(json.dumps({
        **{k: metrics[k] for k in ("test_accuracy", "num_params", "train_seconds")},
        **{k: result[k] for k in ("test_accuracy_flip_tta",) if k in result},
    }))
    return result


def main():
    from keras_vit.training.config import merge_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--data", default="../shared/data", help="folder with mnist.npz and cifar10_jpeg.npz")
    parser.add_argument("--output", default="runs/bench", help="training output folders")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--time-budget", type=float, help="override the recipe's training-time budget, minutes")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="override one training or model option (value read as YAML); repeatable")
    parser.add_argument("--name", help="output folder and result name (default: the recipe's)")
    args = parser.parse_args()
    try:  # a bad --set is one line before training starts, not a traceback
        overrides = parse_overrides(args.set)
        merge_config(load_recipe(args.recipe, args.data), overrides)
    except ValueError as error:
        parser.error(str(error))
    run(args.recipe, args.data, args.output, args.epochs, args.time_budget, overrides, args.name)


if __name__ == "__main__":
    main()
