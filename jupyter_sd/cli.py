"""``jupyter-sd``: paint from a terminal with the same options as ``%%paint``."""

from __future__ import annotations

import sys

from .recipe.options import build_parser, one_line, parse_options

_DESCRIPTION = """\
Paint a picture from a text prompt and save it as a PNG with its full recipe inside.

  jupyter-sd "a red circle on a blue background" --steps 20 --seed 1 -o out/
  jupyter-sd batch prompts.txt --steps 20 -o out/      (every prompt of a file; see jupyter-sd batch --help)

Without --model it uses Stable Diffusion 1.5 on a CUDA machine and the bundled tiny demo model elsewhere.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for bad options, 130 when interrupted)."""
    parser = build_parser("jupyter-sd", prompt_words=True)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "batch":
        return _batch(argv[1:])
    try:
        options = parse_options(parser, argv)
        if options.pop("help", False) or not argv:
            print(_DESCRIPTION)
            print(parser.format_help())
            return 0
        from .api import dispatch

        result = dispatch(options, reraise_interrupt=False)
    except (ValueError, MemoryError) as error:
        print(f"jupyter-sd: {one_line(str(error))}", file=sys.stderr)
        return 2
    for path in [*result.paths, *([result.path] if getattr(result, "path", None) else [])]:
        print(path)
    return 130 if result.stopped_by == "interrupt" else 0


def _batch(argv: list[str]) -> int:
    """``jupyter-sd batch FILE [options]``: exit code 2 for bad input, 1 when a request failed, 130 when stopped."""
    from .batches.command import COMMAND_HELP, parse_command
    from .batches.plan import InvalidBatch
    from .batches.run import batch
    from .batches.views import ConsoleBatchView

    try:
        source, runner, options = parse_command(argv, prog="jupyter-sd batch")
        if options.pop("help", False):
            print(COMMAND_HELP.replace("%paint batch", "jupyter-sd batch"))
            return 0
        result = batch(source, view=ConsoleBatchView(), **runner, **options)
    except InvalidBatch as error:
        print("\n".join(error.lines()), file=sys.stderr)
        print(f"jupyter-sd: {error}", file=sys.stderr)
        return 2
    except (ValueError, MemoryError) as error:
        print(f"jupyter-sd: {one_line(str(error))}", file=sys.stderr)
        return 2
    print(repr(result))
    return 130 if result.interrupted else 1 if result.failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
