"""Generate the option tables of docs/options.md from the option declarations (jupyter_sd/recipe/fields/).

One markdown table per field group (`PictureOptions`, `InputOptions`, `HiresOptions`, `SeedOptions`,
`MachineOptions`), with each option's flags, A1111 infotext key, default, allowed values or range and help, read
from `jupyter_sd.recipe.request.option_fields()` and each field's ``metadata`` (see ``fields/base.py``, `option`).
The tables go between the marker lines ``<!-- options:begin -->`` and ``<!-- options:end -->``; everything else on
the page is written by hand.

    python tools/gen_docs.py          # rewrite the generated part of docs/options.md
    python tools/gen_docs.py --check  # exit 1, naming the page, when the committed page is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPTIONS_PAGE = ROOT / "docs" / "options.md"
BEGIN = "<!-- options:begin -->"
END = "<!-- options:end -->"
HEADER = "| option | infotext key | default | allowed | help |\n| --- | --- | --- | --- | --- |"


def _groups() -> list[type]:
    """The field groups, in the order `PaintRequest` inherits them (each adds its fields after the last)."""
    from jupyter_sd.recipe import fields

    return [
        fields.PictureOptions,
        fields.InputOptions,
        fields.HiresOptions,
        fields.SdUpscaleOptions,
        fields.SeedOptions,
        fields.MachineOptions,
    ]


def _cell(text: str) -> str:
    """One table cell: a single line, with ``|`` escaped so it cannot end the cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def _number(value: float) -> str:
    """A number as typed: ``4294967295``, ``0.5``, ``30`` (never ``4.29497e+09`` or ``30.0``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _flags(f: dataclasses.Field, kind: str) -> str:
    flags = list(f.metadata["flags"])
    if kind == "bool":  # argparse's BooleanOptionalAction adds --no-FLAG for every long flag
        flags += [f"--no-{flag[2:]}" for flag in f.metadata["flags"] if flag.startswith("--")]
    return ", ".join(_code(flag) for flag in flags)


def _default(f: dataclasses.Field, kind: str) -> str:
    value = f.default
    if value is None or value == "" or value == ():
        return "—"
    if kind == "bool":
        return "on" if value else "off"
    if isinstance(value, float):
        return _code(_number(value))
    return _code(value)


def _allowed(meta: dict[str, Any], kind: str) -> str:
    if meta.get("choices"):
        text = ", ".join(_code(choice) for choice in meta["choices"])
        if meta.get("models"):
            text += f", or a {meta['models']} model from the models folder by name"
        return text
    if meta.get("range"):
        low, high = meta["range"]
        text = f"{_number(low)}–{_number(high)}"
        if meta.get("step"):
            text += f" (step {_number(meta['step'])})"
        return text
    if kind == "bool":
        return "on / off"
    return "—"


def option_tables() -> str:
    """The generated markdown: a heading and a table per field group, every option with flags in field order."""
    from jupyter_sd.recipe.values import field_kind, option_fields

    groups = _groups()
    owner: dict[str, type] = {}
    for group in groups:  # a field belongs to the first (most basic) group that has it
        for f in dataclasses.fields(group):
            owner.setdefault(f.name, group)
    rows: dict[type, list[str]] = {group: [] for group in groups}
    for f in option_fields():
        meta = f.metadata
        if not meta.get("flags"):
            continue  # the prompt: the cell body, not an option
        group = owner.get(f.name, groups[-1])
        kind = field_kind(f)
        cells = (
            _flags(f, kind),
            _code(meta["infotext"]) if meta.get("infotext") else "—",
            _default(f, kind),
            _allowed(meta, kind),
            meta["help"],
        )
        rows[group].append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    parts = []
    for group in groups:
        if not rows[group]:
            continue
        summary = (inspect.getdoc(group) or "").split("\n")[0]
        parts.append(f"### {group.__name__}\n\n{summary}\n\n{HEADER}\n" + "\n".join(rows[group]))
    return "\n\n".join(parts)


def render(page: str) -> str:
    """The page with its generated part replaced.

    Raises
    ------
    ValueError
        If the page lacks the marker lines (or has them out of order).
    """
    start = page.find(BEGIN)
    stop = page.find(END)
    if start < 0 or stop < start:
        msg = f"the page needs the marker lines {BEGIN} and {END}, in that order"
        raise ValueError(msg)
    return page[: start + len(BEGIN)] + "\n\n" + option_tables() + "\n\n" + page[stop:]


def stale_pages(page: Path = OPTIONS_PAGE) -> list[Path]:
    """The pages whose generated part differs from what the declarations give (empty when up to date)."""
    text = page.read_text(encoding="utf-8")
    return [] if render(text) == text else [page]


def write(page: Path = OPTIONS_PAGE) -> bool:
    """Rewrite the generated part of `page`; return whether anything changed."""
    text = page.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        page.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite the option tables, or with ``--check`` only say whether they are out of date."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is out of date; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for page in stale:
            print(f"{page.relative_to(ROOT)} is out of date: run python tools/gen_docs.py", file=sys.stderr)
        return 1 if stale else 0
    changed = write()
    print(f"{OPTIONS_PAGE.relative_to(ROOT)} {'rewritten' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
