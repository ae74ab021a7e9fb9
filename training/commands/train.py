"""`keras-vit train`: train a ViT on a dataset spec and write an output folder."""

import argparse
import dataclasses

from keras_vit.console import is_quiet
from keras_vit.training.choices import (
    CROP_FILLS,
    INPUT_SCALINGS,
    JIT_COMPILE,
    KEEP_MODELS,
    OPTIMIZERS,
    POOLING_MODES,
    PRECISIONS,
    STRATEGIES,
)
from keras_vit.training.command_line import add_command, show_defaults
from keras_vit.training.config import TrainConfig, merge_config, read_config_file


def _size(text):
    """`32` or `32,48` -> int or (height, width)."""
    parts = [int(p) for p in str(text).replace("x", ",").split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _channels(text):
    """`32,64` -> (32, 64); `none` -> () (no stem: the linear patch embedding)."""
    if str(text).strip().lower() in ("none", ""):
        return ()
    try:
        channels = tuple(int(p) for p in str(text).split(","))
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"expected positive channel counts like 32,64 or 'none', got {text!r}")
    return channels


def register(subparsers):
    defaults = TrainConfig()
    parser = add_command(
        subparsers, "train",
        help="train a ViT",
        description="Train a ViT with model.fit and write an output folder (model.keras, config.json, "
        "history.csv, metrics.json). Every option may also come from --config FILE; options on the command "
        "line win. Without --preset the model is chosen from the data, and the first line says what was "
        "chosen. Run again with the same --output to resume a killed run.",
        examples=[
            "keras-vit train --export-tflite --output runs/digits          # bundled digits, offline",
            "keras-vit train --dataset folder:PHOTOS --output runs/photos   # one sub-folder per class",
            "keras-vit train --dataset npz:cifar10.npz --time-budget 60 --output runs/cifar",
            "keras-vit train --config configs/finetune_vit_b16.yaml --dataset folder:PHOTOS \\",
            "    --init-from ViT-B_16.npz --output runs/photos_b16",
        ],
    )
    parser.add_argument("--config", metavar="FILE", help="JSON or YAML file of training options")
    parser.add_argument("--dataset", metavar="SPEC",
                        help="digits | npz:PATH | tfds:NAME[:TRAIN[:TEST]] | folder:PATH")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="TensorFlow Datasets data directory")
    parser.add_argument("--manual-dir", dest="manual_dir", metavar="DIR",
                        help="TensorFlow Datasets' folder of files downloaded by hand (ImageNet's tars; "
                        "default DATA_DIR/downloads/manual)")
    parser.add_argument("--verify-images", dest="verify_images", action="store_true", default=None,
                        help="decode every image of a folder before training and skip (naming them) the ones "
                        "that fail; without it, headers and file ends are checked")
    parser.add_argument("--output", metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished run in --output (or discard its crash backup), or write into a "
                        "folder of other files (they are kept)")
    parser.add_argument("--preset", help="model preset (`keras-vit presets`); auto: chosen from the dataset's "
                        "image size and number of images, and printed")
    parser.add_argument("--pretrained", metavar="NAME|auto|none",
                        help="official weights to fine-tune (`keras-vit presets` lists them), downloaded once into "
                        "the Keras cache, at 160x160 on a CPU and 224x224 on a GPU unless --image-size; auto: "
                        "fine-tune weights already in the cache for images of 64 pixels and more; none: from scratch")
    parser.add_argument("--init-from", dest="init_from", metavar="NPZ|NAME",
                        help="an official ViT .npz checkpoint (or weights by name) to fine-tune from, at the "
                        "checkpoint's resolution unless --image-size")
    model = parser.add_argument_group("model overrides (default: the preset's)")
    model.add_argument("--image-size", dest="image_size", type=_size, metavar="N|H,W",
                       help="images are resized to this (default: the dataset's size)")
    model.add_argument("--patch-size", dest="patch_size", type=_size, metavar="N|PH,PW",
                       help="pixels per token; the image size must be a multiple of it")
    model.add_argument("--channels", type=int, help="image channels: 1 (gray) or 3 (RGB) (default: the dataset's)")
    model.add_argument("--num-layers", dest="num_layers", type=int, metavar="N", help="transformer blocks")
    model.add_argument("--num-heads", dest="num_heads", type=int, metavar="N",
                       help="attention heads per block (must divide --hidden-dim)")
    model.add_argument("--hidden-dim", dest="hidden_dim", type=int, metavar="D", help="token width")
    model.add_argument("--mlp-dim", dest="mlp_dim", type=int, metavar="D", help="width of each block's MLP")
    model.add_argument("--representation-size", dest="representation_size", type=int, metavar="D",
                       help="a tanh pre-logits layer of this width before the head (the paper's pre-training)")
    model.add_argument("--dropout-rate", dest="dropout_rate", type=float, metavar="RATE",
                       help="dropout after the embedding and in each MLP")
    model.add_argument("--attention-dropout-rate", dest="attention_dropout_rate", type=float, metavar="RATE",
                       help="dropout of the attention weights")
    model.add_argument("--drop-path-rate", dest="drop_path_rate", type=float, metavar="RATE",
                       help="stochastic depth: the rate of dropping a block's residual branch, rising to this "
                       "in the last block")
    model.add_argument("--stem-channels", dest="stem_channels", type=_channels, metavar="C1,C2,...",
                       help="a convolutional stem (hybrid ViT): one 3x3 stride-2 conv + BatchNorm + ReLU per "
                       "entry, before the patches; 'none' for the linear patch embedding")
    model.add_argument("--pooling", choices=POOLING_MODES,
                       help="token: the class token feeds the head; gap: the average of the patch tokens")
    model.add_argument("--no-class-token", dest="use_class_token", action="store_false", default=None,
                       help="no class token (with --pooling gap: the head averages the patch tokens alone)")
    model.add_argument("--input-scaling", dest="input_scaling", choices=tuple(INPUT_SCALINGS),
                       help="how raw 0..255 pixels are scaled inside the model: unit [0, 1], symmetric [-1, 1] "
                       "(the official checkpoints'), none")
    fit = parser.add_argument_group("fit")
    fit.add_argument("--epochs", type=int, help="(default: about 300,000 training images seen, 5 to 100 epochs; "
                     "10,000 to 100,000 training images: 2.7 million, within --time-budget; fine-tuning: about "
                     "85,000, 2 to 20)")
    fit.add_argument("--batch-size", dest="batch_size", type=int,
                     help="per replica (default: 64 up to 10,000 training images, else 128; fine-tuning: 64)")
    fit.add_argument("--optimizer", choices=OPTIMIZERS,
                     help="AdamW, or SGD with momentum (the ViT paper's fine-tuning) (default: adamw from scratch, "
                     "sgd when fine-tuning)")
    fit.add_argument("--momentum", type=float, help="SGD momentum")
    fit.add_argument("--learning-rate", dest="learning_rate", type=float, metavar="LR",
                     help="peak learning rate, after the warm-up, before the cosine decay (default: 0.002 from "
                     "scratch, 0.0028 for 10,000 to 100,000 training images, 0.01 when fine-tuning)")
    fit.add_argument("--weight-decay", dest="weight_decay", type=float, metavar="DECAY", help="decoupled weight decay (default: 0.1 from scratch, 0 "
                     "when fine-tuning)")
    fit.add_argument("--warmup-epochs", dest="warmup_epochs", type=float, metavar="EPOCHS",
                     help="linear warm-up (default: a tenth of the epochs, at most 3)")
    fit.add_argument("--clipnorm", type=float, metavar="NORM", help="global gradient-norm clip")
    fit.add_argument("--time-budget", dest="time_budget_minutes", type=float, metavar="MINUTES",
                     help="stop after this much training time, with the learning-rate schedule spread over it "
                     "(--epochs is then the most epochs run; default: 28 for 10,000 to 100,000 training images "
                     "when --epochs is not set, else off; 0: off)")
    fit.add_argument("--ema", type=float, metavar="MOMENTUM",
                     help="evaluate and save an exponential moving average of the weights (e.g. 0.99; 0: off)")
    fit.add_argument("--label-smoothing", dest="label_smoothing", type=float, metavar="EPSILON",
                     help="share of each label's probability spread over the other classes (default: 0.1 from "
                     "scratch, 0 when fine-tuning)")
    fit.add_argument("--validation-fraction", dest="validation_fraction", type=float, metavar="FRACTION",
                     help="training data held out for validation (0: train on all of it and keep the last model)")
    fit.add_argument("--seed", type=int, help="seed of the split, the initial weights and the augmentation")
    fit.add_argument("--strategy", choices=STRATEGIES,
                     help="tf.distribute strategy: auto picks the GPUs, a TPU or TF_CONFIG's workers it finds")
    fit.add_argument("--precision", choices=PRECISIONS,
                     help="auto: bfloat16 where the CPU/GPU/TPU computes it natively, float16 on "
                     "Volta/Turing GPUs, else float32; or one of them by name")
    fit.add_argument("--jit-compile", dest="jit_compile", choices=JIT_COMPILE,
                     help="XLA-compile the training step (auto: where it is faster: GPUs and TPUs)")
    fit.add_argument("--steps-per-execution", dest="steps_per_execution", type=int, metavar="N",
                     help="training steps per compiled call (Keras `compile`), for TPUs: no faster on CPU "
                     "(BENCHMARKS.md); batch callbacks then run every N steps")
    fit.add_argument("--backup-every", dest="backup_every", type=int, metavar="STEPS",
                     help="steps between crash backups")
    fit.add_argument("--backup-seconds", dest="backup_seconds", type=float, metavar="SECONDS",
                     help="at least this long between crash backups, and between writes of model.keras "
                     "(0: every --backup-every steps, and each better model at once)")
    fit.add_argument("--keep-model", dest="keep_model", choices=KEEP_MODELS,
                     help="model.keras: the best validation accuracy (ties go to the later epoch) or the last epoch")
    fit.add_argument("--early-stopping", dest="early_stopping", type=int, metavar="PATIENCE",
                     help="stop after this many epochs without a better validation accuracy (0: off)")
    fit.add_argument("--cache-memory-mb", dest="cache_memory_mb", type=float, metavar="MB",
                     help="keep the decoded images (uint8, at the model's size) in memory when a split fits in "
                     "this many MB (0: decode every epoch)")
    fit.add_argument("--cache-file", dest="cache_file", metavar="PATH",
                     help="cache the decoded images in files at PATH (a local disk) instead")
    fit.add_argument("--limit-train", dest="limit_train", type=int, metavar="N",
                     help="train on a seeded sample of N training images")
    fit.add_argument("--limit-test", dest="limit_test", type=int, metavar="N",
                     help="test on a seeded sample of N test images")
    augment = parser.add_argument_group("augmentation")
    augment.add_argument("--crop-padding", dest="crop_padding", type=int, metavar="PIXELS",
                         help="pad by PIXELS, then crop each image back at a random offset (default: chosen "
                         "with the model)")
    augment.add_argument("--crop-fill", dest="crop_fill", choices=CROP_FILLS,
                         help="what fills the crop's padding: the mirrored image or zeros")
    augment.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                         help="random horizontal flips (default: on for colour images and when fine-tuning, off for "
                         "gray ones: characters and digits change meaning in a mirror)")
    augment.add_argument("--randaugment", action="store_true", default=None,
                         help="RandAugment (Keras' RandAugment layer) on every training image")
    augment.add_argument("--mixup", type=float, metavar="ALPHA",
                         help="MixUp's Beta(ALPHA, ALPHA) (default: 0.2 under 10,000 training images, else off)")
    augment.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix's Beta(ALPHA, ALPHA) (0: off)")
    parser.add_argument(
        "--export-tflite", dest="export_tflite", action="store_true", default=None,
        help="export the best model to TFLite (float32, float16 for the GPU, dynamic, int8) at the end and report it",
    )
    # The parser's defaults stay None, so that a --config file can set what the command line
    # does not; the help shows TrainConfig's.
    show_defaults(parser, {name: value for name, value in dataclasses.asdict(defaults).items() if name != "model"})
    parser.set_defaults(func=run)


def config_from_args(args):
    file_options = read_config_file(args.config) if args.config else {}
    cli_options = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command", "verbose", "quiet",
                                                                         "overwrite")}
    return merge_config(file_options, cli_options)


def run(args):
    from keras_vit.training.fit import train

    config = config_from_args(args)
    # A decision of this command, not a training option: config.json does not record it.
    # --quiet: no model line, progress bars or export progress; the results below still print.
    metrics = train(config, verbose=0 if is_quiet() else 1, overwrite=args.overwrite)
    if not metrics:
        return 0
    print()
    print(f"{'output':<16}{config.output}")
    for key in ("test_accuracy", "test_loss", "num_params", "train_seconds", "epochs_run"):
        value = metrics[key]
        print(f"{key:<16}{value:.4f}" if isinstance(value, float) else f"{key:<16}{value}")
    if metrics["stopped_by_time_budget"]:
        # The budget of the run, which may be the automatic one (config here has None).
        print(f"{'stopped':<16}time budget of {metrics['time_budget_minutes']:g} minutes spent")
    return 0
