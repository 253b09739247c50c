"""``jupyter-sd``: paint from a terminal with the same options as ``%%paint``."""

from __future__ import annotations

import sys

from . import painter
from .options import build_parser, one_line, parse_options
from .xyz_axes import split_plot_options

_DESCRIPTION = """\
Paint a picture from a text prompt and save it as a PNG with its full recipe inside.

  jupyter-sd "a red circle on a blue background" --steps 20 --seed 1 -o out/

Without --model it uses Stable Diffusion 1.5 on a CUDA machine and the bundled tiny demo model elsewhere.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for bad options, 130 when interrupted)."""
    parser = build_parser("jupyter-sd", prompt_words=True)
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_options(parser, argv)
        if options.pop("help", False) or not argv:
            print(_DESCRIPTION)
            print(parser.format_help())
            return 0
        if not options.get("prompt", "").strip():
            raise ValueError("prompt: empty; give what to paint as the first argument")
        plot = split_plot_options(options)
        request = painter.new_request(**options).validate()
        if plot:  # --x/--y/--z: an X/Y/Z plot (xyz.py)
            from .xyz import run_plot

            grid = run_plot(request, plot, reraise_interrupt=False)
            for path in [*grid.paths, *([grid.path] if grid.path else [])]:
                print(path)
            return 130 if grid.stopped_by == "interrupt" else 0
        from .views import ConsoleView

        result = painter.render(request, ConsoleView(), reraise_interrupt=False)
    except (ValueError, MemoryError) as error:
        print(f"jupyter-sd: {one_line(str(error))}", file=sys.stderr)
        return 2
    for path in result.paths:
        print(path)
    return 130 if result.stopped_by == "interrupt" else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
