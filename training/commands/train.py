"""`keras-vit train`: train a ViT on a dataset spec and write an output folder."""

import argparse

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
    parser = subparsers.add_parser(
        "train",
        help="train a ViT",
        description="Train a ViT with model.fit. Every option may also come from --config FILE; "
        "options on the command line win. Run again with the same --output to resume a killed run.",
    )
    parser.add_argument("--config", help="JSON or YAML file of training options")
    parser.add_argument("--dataset", help=f"digits | npz:PATH | tfds:NAME[:TRAIN[:TEST]] | folder:PATH (default {defaults.dataset})")
    parser.add_argument("--data-dir", dest="data_dir", help="TensorFlow Datasets data directory")
    parser.add_argument("--manual-dir", dest="manual_dir", metavar="DIR",
                        help="TensorFlow Datasets' folder of files downloaded by hand (ImageNet's tars; "
                        "default DATA_DIR/downloads/manual)")
    parser.add_argument("--verify-images", dest="verify_images", action="store_true", default=None,
                        help="decode every image of a folder before training and skip (naming them) the ones "
                        "that fail; without it, headers and file ends are checked")
    parser.add_argument("--output", help=f"output folder (default {defaults.output})")
    parser.add_argument("--preset", help="model preset, see `keras-vit presets` (default auto: chosen from the "
                        "dataset's image size and number of images, and printed)")
    parser.add_argument("--init-from", dest="init_from", help="official ViT .npz checkpoint to fine-tune from")
    model = parser.add_argument_group("model overrides")
    model.add_argument("--image-size", dest="image_size", type=_size, help="N or H,W")
    model.add_argument("--patch-size", dest="patch_size", type=_size, help="N or PH,PW")
    for name in ("channels", "num_layers", "num_heads", "hidden_dim", "mlp_dim", "representation_size"):
        model.add_argument("--" + name.replace("_", "-"), dest=name, type=int)
    for name in ("dropout_rate", "attention_dropout_rate", "drop_path_rate"):
        model.add_argument("--" + name.replace("_", "-"), dest=name, type=float)
    model.add_argument("--stem-channels", dest="stem_channels", type=_channels, metavar="C1,C2,...",
                       help="a convolutional stem (hybrid ViT): one 3x3 stride-2 conv + BatchNorm + ReLU per "
                       "entry, before the patches; 'none' for the linear patch embedding")
    model.add_argument("--pooling", choices=POOLING_MODES)
    model.add_argument("--no-class-token", dest="use_class_token", action="store_false", default=None,
                       help="no class token (with --pooling gap: the head averages the patch tokens alone)")
    model.add_argument("--input-scaling", dest="input_scaling", choices=tuple(INPUT_SCALINGS))
    fit = parser.add_argument_group("fit")
    fit.add_argument("--epochs", type=int, help="(default: about 300,000 training images seen, 5 to 60 epochs)")
    fit.add_argument("--batch-size", dest="batch_size", type=int, help="per replica (default 64 under 10,000 training images, else 128)")
    fit.add_argument("--optimizer", choices=OPTIMIZERS,
                     help="AdamW (default) or SGD with momentum (the ViT paper's fine-tuning)")
    fit.add_argument("--momentum", type=float, help=f"SGD momentum (default {defaults.momentum})")
    fit.add_argument("--learning-rate", dest="learning_rate", type=float, help=f"(default {defaults.learning_rate})")
    fit.add_argument("--weight-decay", dest="weight_decay", type=float, help=f"(default {defaults.weight_decay})")
    fit.add_argument("--warmup-epochs", dest="warmup_epochs", type=float,
                     help="(default a tenth of the epochs, at most 3)")
    fit.add_argument("--clipnorm", type=float, help=f"global gradient-norm clip (default {defaults.clipnorm})")
    fit.add_argument("--time-budget", dest="time_budget_minutes", type=float, metavar="MINUTES",
                     help="stop after this much training time, with the learning-rate schedule spread over it "
                     "(--epochs is then the most epochs run)")
    fit.add_argument("--ema", type=float, metavar="MOMENTUM",
                     help="evaluate and save an exponential moving average of the weights (e.g. 0.99; default off)")
    fit.add_argument("--label-smoothing", dest="label_smoothing", type=float, help=f"(default {defaults.label_smoothing})")
    fit.add_argument("--validation-fraction", dest="validation_fraction", type=float, metavar="FRACTION",
                     help=f"training data held out for validation (default {defaults.validation_fraction}; "
                     "0: train on all of it and keep the last model)")
    fit.add_argument("--seed", type=int)
    fit.add_argument("--strategy", choices=STRATEGIES)
    fit.add_argument("--precision", choices=PRECISIONS,
                     help="auto (default): bfloat16 where the CPU/GPU/TPU computes it natively, float16 on "
                     "Volta/Turing GPUs, else float32; or one of them by name")
    fit.add_argument("--jit-compile", dest="jit_compile", choices=JIT_COMPILE)
    fit.add_argument("--steps-per-execution", dest="steps_per_execution", type=int, metavar="N",
                     help="training steps per compiled call (Keras `compile`), for TPUs: no faster on CPU "
                     "(BENCHMARKS.md); batch callbacks then run every N steps "
                     f"(default {defaults.steps_per_execution})")
    fit.add_argument("--backup-every", dest="backup_every", type=int, metavar="STEPS",
                     help="steps between crash backups (default 50)")
    fit.add_argument("--backup-seconds", dest="backup_seconds", type=float, metavar="SECONDS",
                     help="at least this long between crash backups, and between writes of model.keras "
                     "(default 30; 0: every --backup-every steps, and each better model at once)")
    fit.add_argument("--keep-model", dest="keep_model", choices=KEEP_MODELS,
                     help="model.keras: the best validation accuracy (default; ties go to the later epoch) or the last epoch")
    fit.add_argument("--early-stopping", dest="early_stopping", type=int, metavar="PATIENCE")
    fit.add_argument("--cache-memory-mb", dest="cache_memory_mb", type=float, metavar="MB",
                     help="keep the decoded images (uint8, at the model's size) in memory when a split fits in "
                     f"this many MB (default {defaults.cache_memory_mb:g}; 0: decode every epoch)")
    fit.add_argument("--cache-file", dest="cache_file", metavar="PATH",
                     help="cache the decoded images in files at PATH (a local disk) instead")
    fit.add_argument("--limit-train", dest="limit_train", type=int, help="train on a seeded sample of N training images")
    fit.add_argument("--limit-test", dest="limit_test", type=int, help="test on a seeded sample of N test images")
    augment = parser.add_argument_group("augmentation")
    augment.add_argument("--crop-padding", dest="crop_padding", type=int, metavar="PIXELS",
                         help="pad by PIXELS, then crop each image back at a random offset")
    augment.add_argument("--crop-fill", dest="crop_fill", choices=CROP_FILLS,
                         help="what fills the crop's padding: the mirrored image (default) or zeros")
    augment.add_argument("--flip", action="store_true", default=None, help="random horizontal flips")
    augment.add_argument("--randaugment", action="store_true", default=None)
    augment.add_argument("--mixup", type=float, metavar="ALPHA",
                         help="MixUp (default 0.2 under 10,000 training images, else off)")
    augment.add_argument("--cutmix", type=float, metavar="ALPHA")
    parser.add_argument(
        "--export-tflite", dest="export_tflite", action="store_true", default=None,
        help="export the best model to TFLite (float32, float16 for the GPU, dynamic, int8) at the end and report it",
    )
    parser.set_defaults(func=run)


def config_from_args(args):
    file_options = read_config_file(args.config) if args.config else {}
    cli_options = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command")}
    return merge_config(file_options, cli_options)


def run(args):
    from keras_vit.training.fit import train

    config = config_from_args(args)
    metrics = train(config)
    if not metrics:
        return 0
    print()
    print(f"{'output':<16}{config.output}")
    for key in ("test_accuracy", "test_loss", "num_params", "train_seconds", "epochs_run"):
        value = metrics[key]
        print(f"{key:<16}{value:.4f}" if isinstance(value, float) else f"{key:<16}{value}")
    if metrics["stopped_by_time_budget"]:
        print(f"{'stopped':<16}time budget of {config.time_budget_minutes:g} minutes spent")
    return 0
