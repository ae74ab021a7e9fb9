"""`keras-vit predict`: the top classes, with names and probabilities, of image files."""

import argparse
import os
import sys

from keras_vit.training.choices import PREDICT_FORMATS


def register(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="top-k classes of image files from a .keras model, training folder, SavedModel or .tflite file",
        description="Classify image files (PNG, JPEG, BMP, GIF) and folders of them (searched recursively). "
        "Every model format gets the same pixels: decoded as the model's channels (gray or RGB) and resized "
        "to its size as training does (bilinear, rounded to whole pixel values).",
    )
    parser.add_argument("model", metavar="MODEL", help=".keras file, training output folder, SavedModel folder "
                        "(keras-vit export --format savedmodel) or .tflite file (labels from NAME.labels.txt)")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders")
    parser.add_argument("--top-k", dest="top_k", type=int, default=5,
                        help="classes listed per image (default 5, at most the number of classes)")
    parser.add_argument("--format", dest="output_format", choices=PREDICT_FORMATS, default="table",
                        help="table (default): a line per image; json: a list of {image, predictions}; "
                        "csv: image,rank,class,index,probability")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=32,
                        help="images read and run at a time (default 32)")
    parser.add_argument("--resize", action=argparse.BooleanOptionalAction, default=True,
                        help="resize images of another size to the model's as training does (default); "
                        "--no-resize refuses them instead, naming the file")
    parser.add_argument("--threads", type=int, help="(.tflite) interpreter threads")
    parser.add_argument("--output", help="write the predictions to this file (replaced atomically) instead of stdout")
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
