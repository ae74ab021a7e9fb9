"""The `keras-vit` command line: one sub-command module per job.

Each module in `training.commands` has `register(subparsers)`, which adds its
parser and sets `func`. Errors a user can fix (bad paths, specs, shapes) are
printed as one line, without a traceback, with exit status 2.
"""

import argparse
import importlib
import os
import sys

from training.memory import OutOfMemoryError

COMMANDS = ("presets", "train", "evaluate", "export", "explain")


class CommandError(Exception):
    """An error in what the user asked for; printed as one line by the command line."""


# Exceptions that describe bad input rather than a bug in keras-vit.
USER_ERRORS = (CommandError, ValueError, TypeError, KeyError, FileNotFoundError, OSError, IsADirectoryError)


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, with a bad option reported as one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _OneLineErrorParser(
        prog="keras-vit",
        description="Vision Transformers on Keras 3: train, evaluate, export and explain.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"training.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"training.commands.{name}":
                raise
            continue  # a sub-command this installation does not ship
        module.register(subparsers)
    return parser


def _one_line(error):
    message = str(error).strip().splitlines()
    message = message[0] if message else type(error).__name__
    if isinstance(error, KeyError):
        message = message.strip("'\"")
    return message


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("keras-vit: interrupted", file=sys.stderr)
        return 130
    except (*USER_ERRORS, OutOfMemoryError) as error:
        if os.environ.get("KERAS_VIT_DEBUG"):
            raise
        print(f"keras-vit {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
