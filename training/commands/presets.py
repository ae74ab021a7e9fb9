"""`keras-vit presets`: list the model presets."""

from keras_vit.training.command_line import add_command


def register(subparsers):
    parser = add_command(
        subparsers, "presets",
        help="list the model presets",
        description="The ViT presets of the paper (Ti/S/B/L/H at patch 8/14/16/32): width, depth, heads, MLP "
        "width and parameters.",
        examples=["keras-vit presets", "keras-vit train --preset vit_s16 --dataset folder:PHOTOS --output runs/s16"],
    )
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.presets import PRESETS, describe_preset

    for name in PRESETS:
        print(describe_preset(name))
