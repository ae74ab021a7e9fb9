"""`keras-vit evaluate`: test metrics of a saved Keras model or a .tflite file."""

import os
import sys

# keras_vit.test_time_augmentation.TTA_MODES (tests/test_cli.py checks), named here so that
# building the parser does not import Keras.
TTA_MODES = ("none", "flip")


def register(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate a .keras model, a training folder or a .tflite file")
    parser.add_argument("model", help=".keras file, training output folder, or .tflite file")
    parser.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--keras-model", dest="keras_model", help="(.tflite) Keras model to measure agreement with")
    parser.add_argument("--limit", type=int, help="evaluate a seeded sample of N test images")
    parser.add_argument("--threads", type=int, help="(.tflite) interpreter threads")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu",
                        help="(.tflite) cpu: the LiteRT interpreter (XNNPACK); gpu: LiteRT's GPU accelerator, run in a "
                        "child process (an abort is reported, not fatal) and compared with the CPU interpreter; "
                        "without a GPU it needs Mesa >= 25's lavapipe Vulkan driver (export.accelerator)")
    parser.add_argument("--resize", action="store_true",
                        help="(.tflite) resize the dataset's images to the model's input as training does (on by "
                        "default for the dataset the model, or --keras-model, was trained on)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="(.keras) test-time augmentation: flip averages the class probabilities of each image "
                        "and its mirror image (two forward passes; for models trained with flips)")
    parser.add_argument("--output", help="metrics JSON to write (default: metrics_eval.json beside the model; "
                        "metrics_eval_tta_flip.json with --tta flip)")
    parser.set_defaults(func=run)


def evaluate_keras(source, spec, data_dir=None, limit=None, batch_size=64, tta="none"):
    """Test accuracy and loss of a Keras model on a dataset spec's test split.

    `tta="flip"` scores the mean class probabilities of each image and its mirror image
    (`keras_vit.flip_averaged`).
    """
    import keras

    from keras_vit.test_time_augmentation import check_tta
    from training.artifacts import load_keras_model
    from training.data import load_splits, make_pipeline, take_sample

    check_tta(tta)
    model = load_keras_model(source)
    if tta == "flip":
        from keras_vit import flip_averaged

        model = flip_averaged(model)
    height, width, channels = model.input_shape[1:]
    splits = load_splits(spec, data_dir=data_dir, image_size=(height, width))
    num_classes = model.output_shape[-1]
    if splits.info.num_classes > num_classes:
        raise ValueError(
            f"dataset {spec} has {splits.info.num_classes} classes, the model only {num_classes}"
        )
    test = take_sample(splits.test, limit)
    data = make_pipeline(test, (height, width), channels, batch_size, num_classes=num_classes)
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    loss, accuracy = model.evaluate(data, verbose=0)
    return {
        "test_accuracy": float(accuracy), "test_loss": float(loss), "num_params": int(model.count_params()),
        "dataset": spec, "tta": tta,
    }


def note_if_trained_without_flip(training_config, tta, command):
    """Notes on stderr that flip averaging is asked of a model trained without `--flip`."""
    if tta == "flip" and training_config.get("flip") is False:
        # Allowed (the data may be mirror-symmetric), but rarely what the user meant.
        print(f"keras-vit {command}: note: the model was trained without --flip; mirror images may score "
              "lower (digits do)", file=sys.stderr)


def run(args):
    from training.artifacts import read_training_config, write_json_atomic

    training_config = read_training_config(args.model)
    trained_on = training_config.get("dataset")
    if args.keras_model and not trained_on:
        trained_on = read_training_config(args.keras_model).get("dataset")
    spec = args.dataset or trained_on
    if not spec:
        raise ValueError("--dataset is needed: no training config.json beside the model names one")
    if args.model.endswith(".tflite"):
        if args.tta != "none":
            raise ValueError(f"--tta {args.tta} evaluates a .keras model or training folder, not a .tflite file "
                             f"(`keras-vit export --tta {args.tta}` puts the averaging into the .tflite)")
        from export.evaluate import evaluate_tflite

        keras_model = None
        if args.keras_model:
            from training.artifacts import load_keras_model

            keras_model = load_keras_model(args.keras_model, float32=True)  # what the export was made from
        if args.accelerator == "gpu":
            from export.accelerator import evaluate_on_gpu

            metrics = evaluate_on_gpu(
                args.model, spec, data_dir=args.data_dir, keras_model=keras_model, limit=args.limit,
                resize=bool(args.resize or spec == trained_on),
            )
        else:
            metrics = evaluate_tflite(
                args.model, spec, data_dir=args.data_dir, keras_model=keras_model, limit=args.limit,
                num_threads=args.threads, resize=bool(args.resize or spec == trained_on),
            )
    else:
        if args.accelerator != "cpu":
            raise ValueError("--accelerator applies to a .tflite file")
        note_if_trained_without_flip(training_config, args.tta, "evaluate")
        metrics = evaluate_keras(args.model, spec, data_dir=args.data_dir, limit=args.limit, tta=args.tta)
    for key, value in metrics.items():
        print(f"{key:<22}{value:.4f}" if isinstance(value, float) else f"{key:<22}{value}")
    folder = args.model if os.path.isdir(args.model) else os.path.dirname(os.path.abspath(args.model))
    default_name = "metrics_eval.json" if args.tta == "none" else f"metrics_eval_tta_{args.tta}.json"
    if args.accelerator == "gpu":
        default_name = "metrics_eval_gpu.json"
    write_json_atomic(args.output or os.path.join(folder, default_name), metrics)
    if metrics.get("gpu_status", "runs") != "runs":
        # The file does not run on the GPU accelerator (an abort there would crash an app).
        print(f"keras-vit evaluate: {os.path.basename(args.model)} {metrics['gpu_status']} on LiteRT's GPU "
              f"accelerator: {metrics['gpu_message']}", file=sys.stderr)
        return 1
    return 0
