"""`keras-vit presets`: list the model presets."""


def register(subparsers):
    parser = subparsers.add_parser("presets", help="list the model presets")
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.presets import PRESETS, describe_preset

    for name in PRESETS:
        print(describe_preset(name))
