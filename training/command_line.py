"""What every `keras-vit` sub-command's parser shares: the help formatter and its examples.

Plain argparse, without TensorFlow, so that `--help` and argument errors answer at once.
"""

import argparse

EXAMPLES_HEADING = "examples:"
# Defaults not worth a "(default: ...)": unset options (chosen from the data or the config
# file), and switches that are off.
_UNSHOWN_DEFAULTS = (None, False, "", argparse.SUPPRESS)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps the description, keeps the examples' lines as written, and appends each option's
    default to its help: the parser's default, or `action.shown_default` where the parser's is
    None because a config file may still set it (`keras-vit train`)."""

    def _fill_text(self, text, width, indent):
        if text.startswith(EXAMPLES_HEADING):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        text = action.help or ""
        # Positionals have no default; a switch's default is its absence.
        if "%(default)" in text or not action.option_strings or action.nargs == 0:
            return text
        shown = getattr(action, "shown_default", action.default)
        if any(shown is unshown for unshown in _UNSHOWN_DEFAULTS) or shown == "":
            return text
        if isinstance(shown, (tuple, list)):
            shown = ",".join(str(item) for item in shown) or "none"
        shown = str(shown).replace("%", "%%")  # argparse formats the help with %
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def add_command(subparsers, name, *, help, description, examples):
    """Adds sub-command `name` with the shared formatter and an `examples:` epilog (a list of
    command lines, each optionally followed by `  # comment`)."""
    epilog = f"{EXAMPLES_HEADING}\n" + "\n".join(f"  {line}" for line in examples)
    parser = subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                   formatter_class=HelpFormatter)
    console = parser.add_argument_group("console").add_mutually_exclusive_group()
    console.add_argument("--verbose", action="store_true",
                         help="also show TensorFlow's, the converter's and LiteRT's own logging")
    console.add_argument("--quiet", action="store_true",
                         help="no progress bars or progress lines: results, warnings and errors only")
    return parser


def show_defaults(parser, defaults):
    """Sets `shown_default` on each option whose `dest` is in `defaults` (and not given one)."""
    for action in parser._actions:  # argparse has no public list of a parser's actions
        if action.dest in defaults and not hasattr(action, "shown_default"):
            action.shown_default = defaults[action.dest]
