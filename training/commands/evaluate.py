"""`keras-vit evaluate`: test metrics of a saved Keras model or a .tflite file."""

import os
import sys

from keras_vit.training.choices import ACCELERATORS, TTA_MODES
from keras_vit.training.command_line import add_command


def register(subparsers):
    parser = add_command(
        subparsers, "evaluate",
        help="evaluate a .keras model, a training folder or a .tflite file",
        description="Test accuracy and loss of a .keras model or training folder, or of a .tflite file (with "
        "latency, and agreement with --keras-model), on the test split of the dataset the model was trained on "
        "or of --dataset. The metrics are printed and written as JSON.",
        examples=[
            "keras-vit evaluate runs/digits",
            "keras-vit evaluate runs/digits/tflite/model_int8.tflite --keras-model runs/digits",
            "keras-vit evaluate runs/digits/tflite/model_float16.tflite --accelerator gpu",
            "keras-vit evaluate runs/photos --dataset folder:OTHER_PHOTOS --limit 1000 --output other.json",
        ],
    )
    parser.add_argument("model", help=".keras file, training output folder, or .tflite file")
    parser.add_argument("--dataset", metavar="SPEC", help="dataset spec (default: the one the model was trained on)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="TensorFlow Datasets data directory")
    parser.add_argument("--keras-model", dest="keras_model", metavar="MODEL",
                        help="(.tflite) Keras model to measure agreement with")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate a seeded sample of N test images")
    parser.add_argument("--threads", type=int, metavar="N", help="(.tflite) interpreter threads (default: LiteRT's)")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="cpu",
                        help="(.tflite) cpu: the LiteRT interpreter (XNNPACK); gpu: LiteRT's GPU accelerator, run in a "
                        "child process (an abort is reported, not fatal) and compared with the CPU interpreter; "
                        "without a GPU it needs Mesa >= 25's lavapipe Vulkan driver (export.accelerator)")
    parser.add_argument("--resize", action="store_true",
                        help="(.tflite) resize the dataset's images to the model's input as training does (on by "
                        "default for the dataset the model, or --keras-model, was trained on)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="(.keras) test-time augmentation: flip averages the class probabilities of each image "
                        "and its mirror image (two forward passes; for models trained with flips)")
    parser.add_argument("--output", metavar="JSON", help="metrics JSON to write (default: metrics_eval.json beside "
                        "the model; metrics_eval_tta_flip.json with --tta flip)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output that is not metrics")
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.images import model_image_shape
    from keras_vit.training.artifacts import load_keras_model, write_json_atomic
    from keras_vit.training.evaluation import evaluate_keras, model_data, note_if_trained_without_flip

    tflite = args.model.endswith(".tflite")
    if tflite and args.tta != "none":
        raise ValueError(f"--tta {args.tta} evaluates a .keras model or training folder, not a .tflite file "
                         f"(`keras-vit export --tta {args.tta}` puts the averaging into the .tflite)")
    if not tflite and args.accelerator != "cpu":
        raise ValueError("--accelerator applies to a .tflite file")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    folder = args.model if os.path.isdir(args.model) else os.path.dirname(os.path.abspath(args.model))
    default_name = "metrics_eval.json" if args.tta == "none" else f"metrics_eval_tta_{args.tta}.json"
    if args.accelerator == "gpu":
        default_name = "metrics_eval_gpu.json"
    output = args.output or os.path.join(folder, default_name)
    check_metrics_output(args, output)
    if tflite:
        from keras_vit.export.analysis import read_tflite
        from keras_vit.export.runtime import TFLiteRunner

        runner = TFLiteRunner(read_tflite(args.model))
        image_shape = runner.input_shape[1:]
        keras_model = None
        if args.keras_model:
            keras_model = load_keras_model(args.keras_model, float32=True)  # what the export was made from
        data = model_data(args.model, image_shape, args.dataset, args.data_dir, args.resize,
                          trained_with=args.keras_model)
        images, labels = data.test_arrays(args.limit)
        num_outputs = int(runner.output["shape"][-1])
        classes = max(int(data.splits.info.num_classes), int(labels.max()) + 1 if len(labels) else 0)
        if classes > num_outputs:
            # Labels the model cannot output would score 0 silently (evaluate_keras refuses them too).
            raise ValueError(f"dataset {data.spec} has {classes} classes, the model only {num_outputs}")
        if args.accelerator == "gpu":
            from keras_vit.export.accelerator import evaluate_on_gpu

            metrics = evaluate_on_gpu(args.model, images, labels, keras_model=keras_model)
        else:
            from keras_vit.export.evaluate import evaluate_tflite

            metrics = evaluate_tflite(args.model, images, labels, keras_model=keras_model, num_threads=args.threads)
        metrics["dataset"] = data.spec
    else:
        note_if_trained_without_flip(args.model, args.tta, "evaluate")
        model = load_keras_model(args.model)
        if args.tta == "flip":
            from keras_vit import flip_averaged

            model = flip_averaged(model)
        data = model_data(args.model, model_image_shape(model), args.dataset, args.data_dir, resize=True)
        metrics = evaluate_keras(model, data, limit=args.limit)
        metrics["tta"] = args.tta
    for key, value in metrics.items():
        print(f"{key:<22}{value:.4f}" if isinstance(value, float) else f"{key:<22}{value}")
    write_json_atomic(output, metrics)
    if metrics.get("gpu_status", "runs") != "runs":
        # The file does not run on the GPU accelerator (an abort there would crash an app).
        print(f"keras-vit evaluate: {os.path.basename(args.model)} {metrics['gpu_status']} on LiteRT's GPU "
              f"accelerator: {metrics['gpu_message']}", file=sys.stderr)
        return 1
    return 0


def check_metrics_output(args, output):
    """Refuses a metrics file that is an input (the model, its config or labels, the dataset) or that
    exists and holds something other than metrics, unless --overwrite."""
    import json

    from keras_vit.export.tflite import labels_path
    from keras_vit.files import check_output, read_head

    inputs = []
    for source in (args.model, args.keras_model):
        if not source:
            continue
        folder = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
        inputs += [(source, "the model being evaluated"), (os.path.join(folder, "config.json"), "the model's config.json")]
        if source.endswith(".tflite"):
            inputs.append((labels_path(source), "the model's labels file"))
        elif os.path.isdir(source):
            inputs.append((os.path.join(source, "model.keras"), "the model being evaluated"))
    if args.dataset and args.dataset.startswith("npz:"):
        inputs.append((args.dataset[4:], "the dataset"))

    def is_metrics_file(path):
        try:
            metrics = json.loads(read_head(path, 2**20).decode("utf-8"))
        except ValueError:  # also UnicodeDecodeError
            return False
        return isinstance(metrics, dict) and "test_accuracy" in metrics

    if os.path.isdir(output):
        raise IsADirectoryError(f"--output {output} is a folder; expected a file name")
    check_output(output, inputs, is_metrics_file, args.overwrite, "--output", "a new file (or one of earlier metrics)",
                 "--overwrite")
