"""`keras-vit evaluate`: test metrics of a saved Keras model or a .tflite file."""

import os
import sys

from keras_vit.training.choices import ACCELERATORS, TTA_MODES


def register(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate a .keras model, a training folder or a .tflite file")
    parser.add_argument("model", help=".keras file, training output folder, or .tflite file")
    parser.add_argument("--dataset", help="dataset spec (default: the one the model was trained on)")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--keras-model", dest="keras_model", help="(.tflite) Keras model to measure agreement with")
    parser.add_argument("--limit", type=int, help="evaluate a seeded sample of N test images")
    parser.add_argument("--threads", type=int, help="(.tflite) interpreter threads")
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
    parser.add_argument("--output", help="metrics JSON to write (default: metrics_eval.json beside the model; "
                        "metrics_eval_tta_flip.json with --tta flip)")
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
    if tflite:
        from keras_vit.export.analysis import read_tflite
        from keras_vit.export.runtime import TFLiteRunner

        image_shape = TFLiteRunner(read_tflite(args.model)).input_shape[1:]
        keras_model = None
        if args.keras_model:
            keras_model = load_keras_model(args.keras_model, float32=True)  # what the export was made from
        data = model_data(args.model, image_shape, args.dataset, args.data_dir, args.resize,
                          trained_with=args.keras_model)
        images, labels = data.test_arrays(args.limit)
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
