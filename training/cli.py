"""The `keras-vit` command line: one sub-command module per job.

Each module in `keras_vit.training.commands` has `register(subparsers)`, which adds its
parser and sets `func`; commands parse arguments and call library functions. Parsing imports
no TensorFlow (seconds to import): `--help`, `--version` and argument errors answer at once,
and the console is quieted before TensorFlow starts (keras_vit.console).

The library raises ValueError (or FileNotFoundError, PermissionError, ...) with a message at
every place that checks user input: those are printed as one line, without a traceback, with
exit status 2. Anything else is a bug and shows its traceback. `KERAS_VIT_DEBUG=1` shows the
traceback of the one-line errors too.
"""

import argparse
import errno
import importlib
import os
import sys

import keras_vit
from keras_vit.training.command_line import EXAMPLES_HEADING, HelpFormatter
from keras_vit.console import command_console

COMMANDS = ("presets", "train", "predict", "evaluate", "export", "explain")

# Exceptions that the library raises for bad input (a path, a spec, a shape, a value).
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# Errors of the machine rather than of keras-vit: a full disk, a read-only file system.
MACHINE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)

EXAMPLES = f"""{EXAMPLES_HEADING}
  keras-vit train --export-tflite --output runs/digits     # the bundled digits, offline
  keras-vit train --dataset folder:PHOTOS --output runs/photos
  keras-vit predict runs/photos cat.jpg new_photos/
  keras-vit export runs/photos --format tflite --mode float16 --output photos_float16.tflite
  keras-vit COMMAND --help                                 # the options of one command"""


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, with a bad option reported as one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _OneLineErrorParser(
        prog="keras-vit",
        description="Vision Transformers on Keras 3: train, evaluate, export and explain.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keras-vit {keras_vit.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineErrorParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"keras_vit.training.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"keras_vit.training.commands.{name}":
                raise
            continue  # a sub-command this installation does not ship
        module.register(subparsers)
    return parser


def _one_line(error):
    message = str(error).strip().splitlines()
    return message[0] if message else type(error).__name__


def _is_user_error(error):
    # training.memory imports TensorFlow: an OutOfMemoryError can only come from a command
    # that loaded it, and an error of one that did not should not wait seconds for it.
    memory = sys.modules.get("keras_vit.training.memory")
    out_of_memory = (memory.OutOfMemoryError,) if memory else ()
    return (isinstance(error, (*USER_ERRORS, *out_of_memory))
            or (isinstance(error, OSError) and error.errno in MACHINE_ERRNOS))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with command_console(verbose=args.verbose, quiet=args.quiet):
            result = args.func(args)
    except KeyboardInterrupt:
        print("keras-vit: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _is_user_error(error) or os.environ.get("KERAS_VIT_DEBUG"):
            raise
        print(f"keras-vit {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
