"""The batch command line: ``%paint batch FILE [options]`` and ``jupyter-sd batch FILE [options]``."""

from __future__ import annotations

import argparse
from typing import Any

COMMAND_HELP = """\
Paint every request of a file or folder, here or on a Ray cluster; a rerun skips what is already saved.

    %paint batch prompts.txt --steps 25 --model my-model    a prompt per line, or blocks of generation data
    %paint batch recipes.csv                                a column per option (steps, cfg, seed, size, ...)
    %paint batch folder/of/pngs/ --model other-model        re-render the recipes of PNGs
    %paint batch prompts.txt --ray auto                     the same on Ray, one pipeline per GPU

Options after FILE apply to every request and win over the file's values. Batch options:
    --skip-bad             paint the valid requests when some lines are invalid (else nothing runs)
    --ray ADDRESS          paint on Ray: auto, ray://host:10001, or local (a Ray on this machine)
    --workers N            Ray actors (default: one per GPU, or one per --cpus-per-worker CPUs)
    --cpus-per-worker N    CPUs per actor on a CPU-only cluster (default 1)
    --gpus-per-worker N    GPUs per actor (default 1)
    --shared-outdir        Ray workers write into --outdir themselves (a folder every node sees)
"""


class _BatchParser(argparse.ArgumentParser):
    """The batch's own flags; the request options go on to the generated parser."""

    def error(self, message: str) -> None:  # argparse would exit the kernel's process
        raise ValueError(f"batch: {message} (see --help)")


def _batch_parser() -> argparse.ArgumentParser:
    parser = _BatchParser(prog="batch", add_help=False, allow_abbrev=False, argument_default=argparse.SUPPRESS)
    parser.add_argument("--skip-bad", action="store_true")
    parser.add_argument("--ray", dest="cluster")
    parser.add_argument("--shared-outdir", action="store_true")
    for flag, kind in (("--workers", int), ("--cpus-per-worker", float), ("--gpus-per-worker", float)):
        parser.add_argument(flag, type=kind)
    return parser


def parse_command(line: str | list[str], prog: str = "%paint batch") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Split a batch command line into its source, the batch's own options and the request options.

    Returns
    -------
    tuple
        ``(source, batch_kwargs, options)``; source is empty when ``--help`` was asked.

    Raises
    ------
    ValueError
        For a missing FILE, an unknown option or a malformed value.
    """
    import shlex

    from ..recipe.options import build_parser, parse_options

    words = shlex.split(line) if isinstance(line, str) else list(line)
    if any(word in ("-h", "--help") for word in words):
        return "", {}, {"help": True}
    if not words or words[0].startswith("-"):
        raise ValueError(f"{prog}: give the file or folder first: {prog} FILE [options] (see --help)")
    known, rest = _batch_parser().parse_known_args(words[1:])
    options = parse_options(build_parser(prog, prompt_words=False), rest)
    return words[0], vars(known), options
