"""`keras-vit presets`: list the model presets."""

from keras_vit.training.command_line import add_command


def register(subparsers):
    parser = add_command(
        subparsers, "presets",
        help="list the model presets",
        description="The ViT presets of the paper (Ti/S/B/L/H at patch 8/14/16/32): width, depth, heads, MLP "
        "width and parameters; then the official pre-trained weights by name (resolution, parameters, published "
        "ImageNet top-1), which --pretrained and --init-from take and which are downloaded once into the Keras "
        "cache ($KERAS_HOME, default ~/.keras; a mirror: $KERAS_VIT_WEIGHTS_URL).",
        examples=["keras-vit presets", "keras-vit train --preset vit_s16 --dataset folder:PHOTOS --output runs/s16",
                  "keras-vit train --pretrained vit_ti16.augreg_in21k_ft_in1k --dataset folder:PHOTOS --output runs/ti"],
    )
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.pretrained import WEIGHTS, cache_root, describe_weights
    from keras_vit.presets import PRESETS, describe_preset

    for name in PRESETS:
        print(describe_preset(name))
    print()
    print(f"pre-trained weights (--pretrained NAME; cached in {cache_root()}/vit_models):")
    for name in WEIGHTS:
        print(describe_weights(name))
