"""The upscale command line: ``%paint upscale IMAGE [options]``, A1111's Extras tab as flags."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

COMMAND_HELP = """\
Upscale pictures as A1111's Extras tab does, saving them beside the notebook with the Extras keys.

    %paint upscale 00012-42.png --upscaler "R-ESRGAN 4x+" --scale 2
    %paint upscale _ --upscaler 4x-UltraSharp --upscaler-2 Lanczos --visibility 0.3
    %paint upscale my_image --size 2048x2048          a notebook variable (PIL image or result)
    %paint upscale pictures/ -o upscaled/              each picture of a folder

IMAGE is a file, a folder, a URL, _ (the last result) or a notebook variable. Options:
    --upscaler NAME      a model in the models folder's ESRGAN/ (A1111's names: R-ESRGAN 4x+, …), Lanczos, Nearest
    --scale S            scale by S (0.05–8, default 2); the size is rounded down to a multiple of 8, as A1111 does
    --size WxH           scale to W×H instead, cropping the centre to fit (--no-crop keeps the whole picture)
    --upscaler-2 NAME    a second upscaler blended over the first
    --visibility V       how much of the second shows (0–1, default 0.5)
    -o, --outdir DIR     where the pictures go (default: beside the notebook)
    --no-save            keep the pictures in the result only
    --allow-pickle       load a .pth upscaler (a pickle can run code: only files you trust)
    --tile N             tile side in input pixels (default 192): smaller uses less memory
"""


class _UpscaleParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit the kernel's process
        raise ValueError(f"upscale: {message} (see %paint upscale --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _UpscaleParser(prog="upscale", add_help=False, allow_abbrev=False, argument_default=argparse.SUPPRESS)
    parser.add_argument("image", nargs="?")
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--upscaler")
    parser.add_argument("--scale", type=float)
    parser.add_argument("--size")
    parser.add_argument("--no-crop", dest="crop", action="store_false")
    parser.add_argument("--upscaler-2", dest="upscaler_2")
    parser.add_argument("--visibility", type=float)
    parser.add_argument("--outdir", "-o")
    parser.add_argument("--no-save", dest="save", action="store_false")
    parser.add_argument("--allow-pickle", action="store_true")
    parser.add_argument("--tile", type=int)
    return parser


def parse_command(line: str) -> dict[str, Any]:
    """The command line as `upscale`'s keyword arguments (``image`` among them; ``help`` when asked).

    Raises
    ------
    ValueError
        One line: no IMAGE, an unknown option, a value of the wrong kind, ``--scale`` with ``--size``.
    """
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise ValueError(f"upscale: {error} in '{line}'") from None
    options = vars(_parser().parse_args(words))
    if options.get("help"):
        return {"help": True}
    if "image" not in options or options["image"] is None:
        raise ValueError("upscale: name a picture: %paint upscale IMAGE (a file, a folder, _ or a variable)")
    if "scale" in options and "size" in options:
        raise ValueError("upscale: give --scale or --size, not both")
    options.pop("help", None)
    return options
