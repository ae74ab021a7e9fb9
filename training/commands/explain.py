"""`keras-vit explain`: draw what a trained ViT looks at, as one PNG."""

import os

from keras_vit.training.command_line import add_command

METHOD_HELP = "rollout|attention|saliency|smoothgrad|gradcam|gradcam++|scorecam|all, or several joined by commas"


def register(subparsers):
    parser = add_command(
        subparsers, "explain",
        help="draw explanation heat maps (attention rollout, saliency, Grad-CAM, ...) as a PNG",
        description="Explain a ViT's predictions on image files or dataset images: one row per image, "
        "one column per method, each heat map over the image with a colour bar, and the explained "
        "class with its probability.",
        examples=[
            "keras-vit explain runs/photos cat.jpg dog.jpg --resize --output cat_dog.png",
            "keras-vit explain runs/digits --dataset digits --count 8 --method rollout,gradcam",
        ],
    )
    parser.add_argument("model", metavar="MODEL", help=".keras model file or training output folder")
    parser.add_argument("images", metavar="IMAGE", nargs="*", help="PNG/JPEG files of the model's image size")
    parser.add_argument("--method", default="all", help=METHOD_HELP)
    parser.add_argument("--output", default="explanation.png", metavar="PNG", help="PNG file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output that explain did not write")
    parser.add_argument("--dataset", metavar="SPEC", help="explain test images of a dataset spec instead of files")
    parser.add_argument("--count", type=int, default=4, metavar="N", help="how many --dataset test images")
    parser.add_argument("--resize", action="store_true", help="resize images to the model's size instead of refusing")
    parser.add_argument("--class-index", dest="class_index", type=int, metavar="INDEX",
                        help="class to explain (default: the predicted one)")
    parser.add_argument("--head-fusion", dest="head_fusion", default="mean", choices=("mean", "max", "min"),
                        help="how the heads are fused (rollout, attention)")
    parser.add_argument("--layer", type=int, default=-1, help="block of the attention method (-1: the last)")
    parser.add_argument("--head", type=int, help="head of the attention method (default: heads fused)")
    parser.add_argument("--block", type=int,
                        help="CAM methods use the tokens entering this block (default: the last block's input)")
    parser.add_argument("--smooth-samples", dest="smooth_samples", type=int, default=20, metavar="N",
                        help="SmoothGrad noisy copies")
    parser.add_argument("--scorecam-channels", dest="scorecam_channels", type=int, metavar="N",
                        help="Faster Score-CAM: keep this many channels (default: all)")
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.explain import Explainer, parse_methods, render_explanations
    from keras_vit.explain.maps import check_vit
    from keras_vit.images import load_image_files
    from keras_vit.training.artifacts import load_class_names, load_keras_model
    from keras_vit.training.evaluation import model_data

    methods = parse_methods(args.method)
    if not args.output.lower().endswith(".png"):
        raise ValueError(f"--output must be a .png file, got {args.output}")
    if args.images and args.dataset:
        raise ValueError("give IMAGE files or --dataset, not both")
    if not args.images and not args.dataset:
        raise ValueError("nothing to explain: give IMAGE files or --dataset SPEC")
    for path in args.images:  # before loading the model, which takes a while
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image not found: {path}")
    check_explanation_output(args)

    model = load_keras_model(args.model)
    check_vit(model)
    class_names = load_class_names(args.model)
    labels = None
    if args.dataset:
        if args.count < 1:
            raise ValueError(f"--count must be at least 1, got {args.count}")
        data = model_data(args.model, (*model.image_size, model.channels), args.dataset, resize=args.resize)
        # A seeded sample: test splits are often sorted by class, so the first N would be one class.
        images, labels = data.test_arrays(args.count)
        class_names = class_names or data.splits.info.class_names
    else:
        images = load_image_files(args.images, model.image_size, model.channels, args.resize,
                                  resize_hint="pass --resize to resize it")
    if class_names is None or len(class_names) != model.num_classes:
        class_names = [str(i) for i in range(model.num_classes)]

    explainer = Explainer(
        model,
        block=args.block,
        head_fusion=args.head_fusion,
        layer=args.layer,
        head=args.head,
        smooth_samples=args.smooth_samples,
        scorecam_channels=args.scorecam_channels,
    )
    explanation = explainer.explain(images, methods, class_ids=args.class_index)
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    width, height = render_explanations(
        args.output, images, explanation, class_names=class_names, labels=labels, methods=methods
    )
    for index, class_id in enumerate(explanation.class_ids):
        probability = explanation.probabilities[index, class_id]
        print(f"image {index}: {class_names[class_id]} (p={probability:.3f})")
    print(f"wrote {args.output} ({width}x{height} px, {len(images)} images x {len(methods)} methods)")


def check_explanation_output(args):
    """Refuses an --output PNG that is an input (an image explained, the model) or that exists and
    is not a figure of explain's (a PNG that Matplotlib wrote), unless --overwrite."""
    from keras_vit.files import check_output

    def is_figure(path):
        from PIL import Image

        try:
            with Image.open(path) as image:
                return image.format == "PNG" and str(image.info.get("Software", "")).startswith("Matplotlib")
        except (OSError, SyntaxError, ValueError):
            return False

    inputs = [(args.model, "the model being explained")] + [(path, "an image being explained") for path in args.images]
    if os.path.isdir(args.model):
        inputs.append((os.path.join(args.model, "model.keras"), "the model being explained"))
    check_output(args.output, inputs, is_figure, args.overwrite, "--output", "a new .png file", "--overwrite")
