"""The argparse parser for ``%%paint`` and ``jupyter-sd``, generated from `PaintRequest`'s fields."""

from __future__ import annotations

import argparse
import difflib
import shlex
from typing import Any

from .plot_options import PLOT_OPTIONS
from .values import coerce_options, field_kind, option_fields, unknown_option_line

_SIZE_HELP = "Image size as WIDTHxHEIGHT, multiples of 8 (default: the model's native size)."


class OptionError(ValueError):
    """A command-line option was malformed (raised instead of argparse's exit)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit the kernel's process
        if message.startswith("unrecognized arguments: "):
            words = message.removeprefix("unrecognized arguments: ").split()
            unknown = [word for word in words if word.startswith("-")]
            if not unknown:
                msg = f"unexpected '{words[0]}': options start with -- and the prompt goes in the cell body"
                msg += " (see --help)"
                raise OptionError(msg)
            flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
            closest = difflib.get_close_matches(unknown[0].split("=")[0], flags, n=3)
            raise OptionError(unknown_option_line(" ".join(unknown), closest))
        raise OptionError(f"{message} (see --help)")


def _range_text(meta: dict[str, Any]) -> str:
    if meta["choices"]:
        more = " or the name of an upscaler model in the models folder's ESRGAN/" if meta.get("models") else ""
        return " Allowed: " + ", ".join(meta["choices"]) + more + "."
    if meta["range"]:
        low, high = meta["range"]
        return f" Range: {low:g}–{high:g}."
    return ""


def one_line(text: str) -> str:
    """Every refusal is one line: a newline inside the offending text (a prompt, a path) is shown escaped."""
    return text.replace("\r", "\\r").replace("\n", "\\n").strip()


def build_parser(prog: str, prompt_words: bool) -> argparse.ArgumentParser:
    """Build the options parser: every `PaintRequest` field with flags, plus ``--size``.

    Parameters
    ----------
    prog
        The program name shown in help (``%%paint`` or ``jupyter-sd``).
    prompt_words
        Whether loose words form the prompt (the CLI and the ``%paint`` line magic) or are refused.
    """
    parser = _Parser(
        prog=prog,
        add_help=False,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="Show this help.")
    if prompt_words:
        parser.add_argument("prompt", nargs="*", help="What to paint.")
    parser.add_argument("--size", "-s", metavar="WxH", help=_SIZE_HELP)
    for name, help_text in PLOT_OPTIONS.items():  # --x/--y/--z describe a plot, not a picture: see xyz_axes.py
        parser.add_argument(f"--{name}", dest=name, metavar="'NAME: VALUES'", help=help_text)
    for f in option_fields():
        meta = f.metadata
        if not meta["flags"]:
            continue
        help_text = (
            meta["help"] + _range_text(meta) + ("" if f.default in (None, "", ()) else f" Default: {f.default}.")
        )
        if field_kind(f) == "bool":
            parser.add_argument(*meta["flags"], dest=f.name, action=argparse.BooleanOptionalAction, help=help_text)
        elif field_kind(f) == "tuple":  # repeatable: one value per unit
            parser.add_argument(*meta["flags"], dest=f.name, action="append", metavar="'UNIT'", help=help_text)
        else:
            metavar = f.name.upper().replace("_", "-")
            parser.add_argument(*meta["flags"], dest=f.name, metavar=metavar, help=help_text)
    return parser


def parse_options(parser: argparse.ArgumentParser, line: str | list[str]) -> dict[str, Any]:
    """Parse a magic line (split with `shlex`, so quoted values keep their spaces) into typed options.

    Returns only the options that were given, so they can be layered over defaults. ``help`` is set when asked.

    Raises
    ------
    ValueError
        For an unknown option, a missing value, or a value of the wrong type.
    """
    try:
        words = shlex.split(line) if isinstance(line, str) else list(line)
    except ValueError as error:
        msg = f"could not read the options ({error}): check the quotes"
        raise OptionError(msg) from None
    namespace = vars(parser.parse_args(words))
    options: dict[str, Any] = {}
    for flag in ("help", "ui"):
        if namespace.pop(flag, False):
            options[flag] = True
    if "prompt" in namespace:
        words = namespace.pop("prompt")
        if words:
            options["prompt"] = " ".join(words)
    for name in PLOT_OPTIONS:  # axis text is read by xyz_axes, not coerced as an option
        if name in namespace:
            options[name] = namespace.pop(name)
    options.update(coerce_options(namespace))
    return options
