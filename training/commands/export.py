"""`keras-vit export`: a trained model to a serving SavedModel or to TFLite/LiteRT files."""

import sys

from keras_vit.console import is_quiet
from keras_vit.export.choices import GRAPHS, INPUT_DTYPES, IO_TYPES, MODES, WEIGHT_GRANULARITIES
from keras_vit.training.choices import EXPORT_FORMATS, QUANTIZER_CHOICES, TTA_MODES
from keras_vit.training.command_line import add_command


def register(subparsers):
    parser = add_command(
        subparsers, "export",
        help="export a model to a SavedModel or TFLite",
        description="Export a .keras model or training output folder to a serving SavedModel or to TFLite/LiteRT "
        "files. --format tflite --mode all writes every mode into the --output folder, runs each file against "
        "Keras (and on LiteRT's GPU accelerator where Vulkan is present) and writes report.md and report.json "
        "with the file to use on each accelerator.",
        examples=[
            "keras-vit export runs/digits --mode float16 --output digits_float16.tflite   # for the phone's GPU",
            "keras-vit export runs/digits --mode int8 --output digits_int8.tflite         # integer NPUs, CPU",
            "keras-vit export runs/digits --mode all --output exports/digits               # every mode + report",
            "keras-vit export runs/photos --format savedmodel --output serving/photos/1    # TF Serving",
        ],
    )
    parser.add_argument("source", help=".keras file or training output folder")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="tflite", help="what to write")
    parser.add_argument("--mode", default="float32", help=f"TFLite mode: {' | '.join(MODES)} | all")
    parser.add_argument("--dataset", metavar="SPEC", help="dataset spec: calibration (training split) and report "
                        "(test split) images (default: the training config's)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="TensorFlow Datasets data directory")
    parser.add_argument("--output", required=True, help=".tflite file, or a folder (savedmodel, --mode all)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output that is not an export of this kind (a savedmodel folder "
                        "is replaced whole; --mode all keeps other files)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=1, metavar="N",
                        help="static batch of the .tflite")
    parser.add_argument("--calibration-size", dest="calibration_size", type=int, default=200, metavar="N",
                        help="training images used to calibrate int8/int16x8")
    parser.add_argument("--int8-input", dest="int8_input", choices=IO_TYPES, default="uint8",
                        help="input type of the int8 model (uint8: raw pixels, exact)")
    parser.add_argument("--int8-output", dest="int8_output", choices=IO_TYPES, default="float32",
                        help="output type of the int8 model")
    parser.add_argument("--graph", choices=("auto", *GRAPHS), default="auto",
                        help="auto: the folded graph (export.graph) for a keras_vit ViT, else the Keras model's")
    parser.add_argument("--float-fallback", dest="float_fallback", default="", metavar="PARTS",
                        help="int8: comma list of parts kept float (attention, gelu); faster on CPU, "
                        "not fully integer (with --mode all: an extra model)")
    parser.add_argument("--weight-granularity", dest="weight_granularity", choices=WEIGHT_GRANULARITIES,
                        default="channel", help="int8/int16x8 weight scales: one per output channel "
                        "or one per matrix (smaller file)")
    parser.add_argument("--quantizer", choices=QUANTIZER_CHOICES, default="converter",
                        help="who quantizes dynamic/int8/int16x8: TFLiteConverter, ai-edge (AI Edge "
                        "Quantizer on the float32 file; also --mode weight_only), or both side by side (--mode all)")
    parser.add_argument("--float-ops", dest="float_ops", metavar="OPS",
                        help="(ai-edge) ops kept float: comma list of op types (SOFTMAX, GELU, ...) or "
                        "regexes of tensor names (export.ai_edge_quantizer)")
    parser.add_argument("--limit", type=int, metavar="N", help="report on a seeded sample of N test images")
    parser.add_argument("--resize", action="store_true",
                        help="resize the dataset's images to the model's input as training does (on by default "
                        "for the dataset the model was trained on)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation inside the exported model: flip averages the class probabilities "
                        "of each image and its mirror image (twice the compute; for models trained with --flip)")
    parser.add_argument("--no-gpu-check", dest="gpu_check", action="store_false",
                        help="(--mode all) do not run the files on LiteRT's GPU accelerator for the report "
                        "(it runs each in a child process where Vulkan is available; see export.accelerator)")
    parser.add_argument("--logits", action="store_true",
                        help="(tflite) files output logits instead of class probabilities (MediaPipe then reports "
                        "the logits as scores)")
    parser.add_argument("--top-k", dest="top_k", type=int, default=5, metavar="K",
                        help="(savedmodel) top classes returned")
    parser.add_argument("--input-dtype", dest="input_dtype", choices=INPUT_DTYPES, default="float32",
                        help="(savedmodel) dtype of the serving_default images")
    parser.set_defaults(func=run)


def _fallback(args):
    return tuple(part.strip() for part in args.float_fallback.split(",") if part.strip())


def run(args):
    from keras_vit.export.tflite import MODES, QUANTIZED_MODES, check_mode
    from keras_vit.files import all_or_nothing, check_class_names
    from keras_vit.images import model_image_shape
    from keras_vit.training.artifacts import load_model_and_class_names
    from keras_vit.training.evaluation import model_data, note_if_trained_without_flip

    outputs = "logits" if args.logits else "probabilities"
    ai_edge_mode = args.quantizer == "ai-edge" and args.mode != "all"
    if args.quantizer == "both" and args.mode != "all":
        raise ValueError("--quantizer both compares the two quantizers in the report of --mode all")
    if ai_edge_mode:
        from keras_vit.export.ai_edge_quantizer import check_mode as check_ai_edge_mode

        check_ai_edge_mode(args.mode)
    elif args.format == "tflite" and args.mode != "all":
        check_mode(args.mode)
        if not args.output.endswith(".tflite"):
            raise ValueError(f"--output must be a .tflite file for one mode, got {args.output} (a folder needs --mode all)")
    if args.format == "savedmodel" and args.mode not in ("float32", "all"):
        raise ValueError(f"--mode {args.mode} applies to --format tflite; a SavedModel is float32")
    if args.format == "tflite" and args.output.endswith(".tflite") and args.mode == "all":
        raise ValueError("--mode all writes a folder: give --output a folder, not a .tflite file")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    check_export_output(args)
    model, names = load_model_and_class_names(args.source)
    if args.format == "tflite":
        check_class_names(names, f"the class names of {args.source}")  # written one per line beside the file
    note_if_trained_without_flip(args.source, args.tta, "export")
    averaged = "" if args.tta == "none" else f", averaged with --tta {args.tta}"

    if args.format == "savedmodel":
        from keras_vit.export.savedmodel import export_savedmodel

        export_savedmodel(model, args.output, names, top_k=args.top_k, input_dtype=args.input_dtype, tta=args.tta,
                          overwrite=True)  # checked above, in the command line's words
        print(f"wrote SavedModel {args.output} (signatures serving_default, serving_bytes{averaged})")
        return 0

    modes = MODES if args.mode == "all" else (args.mode,)
    needs_calibration = any(mode in QUANTIZED_MODES for mode in modes)
    float_ops = [op.strip() for op in args.float_ops.split(",") if op.strip()] if args.float_ops else None
    data = None
    if needs_calibration:  # every quantized mode, and --mode all, which includes them
        data = model_data(args.source, model_image_shape(model), args.dataset, args.data_dir, args.resize,
                          needed_for=f"--mode {args.mode} (calibration images from its training split)")
    calibration = data.calibration_arrays(args.calibration_size) if data else None

    if args.mode == "all":
        from keras_vit.export.bundle import export_modes

        test_images, test_labels = data.report_arrays(args.limit)
        rows = export_modes(
            model, args.output, MODES, calibration_images=calibration, test_images=test_images,
            test_labels=test_labels, class_names=names, dataset_name=data.spec,
            batch_size=args.batch_size, graph=args.graph, input_type=args.int8_input, output_type=args.int8_output,
            float_fallback=_fallback(args), weight_granularity=args.weight_granularity, tta=args.tta,
            quantizers=("converter", "ai-edge") if args.quantizer == "both" else (args.quantizer,),
            float_ops=float_ops, gpu_check=args.gpu_check, overwrite=True, outputs=outputs,
            log=(lambda _: None) if is_quiet() else print,
        )
        _print_rows(rows)
        print(f"wrote {len(rows) or len(MODES)} models" + (" and report.md/report.json" if rows else "")
              + f" to {args.output}{averaged}")
        return 0

    from keras_vit.export.tflite import convert, labels_path, write_tflite

    if ai_edge_mode and args.mode != "float32":
        from keras_vit.export.ai_edge_quantizer import quantize

        float32_content = convert(model, "float32", batch_size=args.batch_size, graph=args.graph, tta=args.tta,
                                  outputs=outputs)
        content = quantize(float32_content, args.mode, None if calibration is None else calibration.astype("float32"),
                           float_ops=float_ops)
    else:
        content = convert(
            model, args.mode, calibration, args.batch_size, args.graph,
            args.int8_input if args.mode == "int8" else "float32",
            args.int8_output if args.mode == "int8" else "float32",
            float_fallback=_fallback(args), weight_granularity=args.weight_granularity, tta=args.tta,
            outputs=outputs,
        )
    # The .tflite and its .labels.txt: both written, or neither (nor the folders made for them).
    with all_or_nothing([args.output, labels_path(args.output)]):
        write_tflite(content, args.output, names, outputs=outputs)
    print(f"wrote {args.output} ({len(content) / 1e6:.3f} MB, {args.mode}{averaged})")
    return 0


def check_export_output(args):
    """Refuses an --output that is an input of the export, or that exists and is not an export of
    this kind (a SavedModel folder, a folder of `--mode all` files, a .tflite file), unless --overwrite."""
    import os

    from keras_vit.export.bundle import is_export_folder, is_tflite_file
    from keras_vit.export.savedmodel import is_savedmodel_folder
    from keras_vit.files import check_output
    from keras_vit.training.artifacts import CONFIG_FILE, resolve_model_path

    model_file = resolve_model_path(args.source)
    folder = os.path.dirname(os.path.abspath(model_file))
    inputs = [(args.source, "the model being exported"), (model_file, "the model being exported"),
              (os.path.join(folder, CONFIG_FILE), "the model's config.json")]
    if args.dataset and args.dataset.startswith("npz:"):
        inputs.append((args.dataset[4:], "the dataset"))
    if args.format == "savedmodel":
        ours, expected = is_savedmodel_folder, "a new folder (or a SavedModel's, which is replaced whole)"
    elif args.mode == "all":
        ours, expected = is_export_folder, "a new folder (or one of --mode all's, whose files are replaced)"
    else:
        ours, expected = is_tflite_file, "a new .tflite file (or a .tflite file to replace)"
    check_output(args.output, inputs, ours, args.overwrite, "--output", expected, "--overwrite")


def _print_rows(rows):
    width = max((len(row["mode"]) for row in rows), default=0)
    for row in rows:
        gpu = row.get("gpu")
        print(
            f"{row['mode']:<{width}} {row['size_bytes'] / 1e6:7.3f} MB  accuracy {row['accuracy']:.4f}  "
            f"agreement {row['agreement_with_keras']:.4f}  {row['latency']['1']['median_ms']:.2f} ms"
            + (f"  GPU: {gpu['summary'] if gpu['status'] != 'unavailable' else 'not run'}" if gpu else "")
        )
    for row in rows:
        gpu = row.get("gpu")
        if gpu and gpu["status"] in ("aborted", "failed", "timeout"):
            print(f"keras-vit export: warning: {row['file']} {gpu['status']} on LiteRT's GPU accelerator "
                  f"({gpu['message']}): use it on the CPU only (report.md says which file is for which "
                  "accelerator)", file=sys.stderr)
