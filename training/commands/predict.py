"""`keras-vit predict`: the top classes, with names and probabilities, of image files."""

import argparse
import os
import sys

from keras_vit.training.choices import PREDICT_FORMATS
from keras_vit.training.command_line import add_command


def register(subparsers):
    parser = add_command(
        subparsers, "predict",
        help="top-k classes of image files from a .keras model, training folder, SavedModel or .tflite file",
        description="Classify image files (PNG, JPEG, BMP, GIF, WebP) and folders of them (searched recursively). "
        "Every model format gets the same pixels: decoded as the model's channels (gray or RGB) and resized "
        "to its size as training does (bilinear, rounded to whole pixel values). A file that cannot be decoded "
        "is named on stderr and skipped (exit status 1).",
        examples=[
            "keras-vit predict runs/photos cat.jpg new_photos/",
            "keras-vit predict photos_float16.tflite cat.jpg --format json",
            "keras-vit predict serving/photos/1 new_photos/ --format csv --output predictions.csv --top-k 3",
        ],
    )
    parser.add_argument("model", metavar="MODEL", help=".keras file, training output folder, SavedModel folder "
                        "(keras-vit export --format savedmodel) or .tflite file (class names from its metadata, "
                        "else NAME.labels.txt)")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders")
    parser.add_argument("--top-k", dest="top_k", type=int, default=5, metavar="K",
                        help="classes listed per image (at most the number of classes)")
    parser.add_argument("--format", dest="output_format", choices=PREDICT_FORMATS, default="table",
                        help="table: a line per image; json: a list of {image, predictions}; "
                        "csv: image,rank,class,index,probability")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=32, metavar="N",
                        help="images read and run at a time")
    parser.add_argument("--resize", action=argparse.BooleanOptionalAction, default=True,
                        help="resize images of another size to the model's as training does; "
                        "--no-resize refuses them instead, naming the file")
    parser.add_argument("--threads", type=int, metavar="N", help="(.tflite) interpreter threads (default: LiteRT's)")
    parser.add_argument("--output", metavar="FILE",
                        help="write the predictions to this file (replaced atomically) instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output that is not predictions")
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.export.predictor import (
        KerasPredictor,
        format_predictions,
        iter_predictions,
        load_predictor,
        model_format,
        predict_files,
        top_k,
        write_output_atomic,
    )

    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.output and os.path.isdir(args.output):
        raise IsADirectoryError(f"--output {args.output} is a folder; expected a file name")
    kind = model_format(args.model)
    if args.output:
        check_predictions_output(args, kind)
    if args.threads is not None and kind != "tflite":
        raise ValueError("--threads applies to a .tflite file")
    if kind in ("keras", "training_folder"):
        from keras_vit.training.artifacts import load_model_and_class_names

        # float32 (a mixed-precision model predicts as its exports do), with config.json's class names.
        model, names = load_model_and_class_names(args.model)
        predictor = KerasPredictor(model, names, source=args.model, batch_size=args.batch_size)
    else:
        predictor = load_predictor(args.model, num_threads=args.threads, batch_size=args.batch_size)
    if args.output or args.output_format == "json":
        # A file is written whole (atomically), and JSON is one document: both wait for every image.
        files, probabilities, skipped = predict_files(predictor, args.images, resize=args.resize,
                                                      batch_size=args.batch_size)
        text = format_predictions(files, top_k(probabilities, predictor.class_names, args.top_k), args.output_format)
        if args.output:
            write_output_atomic(args.output, text)
            print(f"wrote {args.output_format} predictions of {len(files)} image{'s' * (len(files) != 1)} "
                  f"to {args.output}")
        else:
            print(text, end="")
    else:
        # A table or CSV on the terminal: each batch as soon as it is done.
        count, skipped = 0, []
        for files, probabilities, batch_skipped in iter_predictions(predictor, args.images, resize=args.resize,
                                                                    batch_size=args.batch_size):
            skipped += batch_skipped
            if files:
                text = format_predictions(files, top_k(probabilities, predictor.class_names, args.top_k),
                                          args.output_format)
                if count and args.output_format == "csv":
                    text = text.partition("\n")[2]  # the header once
                print(text, end="", flush=True)
                count += len(files)
        if not count:
            raise ValueError(f"no readable image among {len(skipped)} file(s): "
                             + "; ".join(f"{path}: {reason}" for path, reason in skipped[:3]))
    if skipped:
        names = ", ".join(f"{path} ({reason})" for path, reason in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"keras-vit predict: warning: skipped {len(skipped)} file{'s' * (len(skipped) != 1)} that could not "
              f"be decoded: {names}{more}", file=sys.stderr)
        return 1
    return 0


def check_predictions_output(args, kind):
    """Refuses an --output that is an input (the model, its labels, an image) or that exists and
    holds something other than predictions, unless --overwrite."""
    from keras_vit.export.tflite import labels_path
    from keras_vit.files import check_output, is_inside
    from keras_vit.images import IMAGE_EXTENSIONS

    inputs = [(args.model, "the model being read")]
    if kind == "training_folder":
        inputs += [(os.path.join(args.model, name), "the model being read") for name in ("model.keras", "config.json")]
    elif kind == "keras":
        inputs.append((os.path.join(os.path.dirname(os.path.abspath(args.model)), "config.json"),
                       "the model's config.json"))
    elif kind == "tflite":
        inputs.append((labels_path(args.model), "the model's labels file"))
    for path in args.images:
        if os.path.isdir(path) and is_inside(args.output, path) and args.output.lower().endswith(IMAGE_EXTENSIONS):
            inputs.append((args.output, f"an image of {path}, being classified"))
        else:
            inputs.append((path, "an image being classified"))
    check_output(args.output, inputs, is_predictions_file, args.overwrite, "--output",
                 "a new file (or one of earlier predictions)", "--overwrite")


def is_predictions_file(path):
    """Whether the file `path` holds what `keras-vit predict --output` writes (CSV, JSON or a table)."""
    import json
    import re

    from keras_vit.files import read_head

    head = read_head(path)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if text.startswith("image,rank,class,index,probability\n"):
        return True
    if text.startswith("["):
        if len(head) < os.path.getsize(path):
            return bool(re.match(r'\[\s*\{\s*"image":', text))
        try:
            records = json.loads(text)
        except ValueError:
            return False
        return isinstance(records, list) and all(isinstance(r, dict) and {"image", "predictions"} <= set(r)
                                                 for r in records)
    first = text.split("\n", 1)[0]
    return bool(re.search(r"  \S.* \(p=\d\.\d{3}\)$", first))
