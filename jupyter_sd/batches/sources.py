"""Reading a batch: prompt files, generation-data blocks, CSV/JSONL tables, folders of PNGs, lists of requests.

Every source becomes a list of `Entry`: where it came from (``file:line``) and the options it sets, as text or
values, not yet merged with defaults nor validated (``batch.py`` does both, for every entry before anything runs).
Columns and keys are matched to `PaintRequest` fields by field name, flag or A1111 infotext key, so a field added
to the request is readable from every source at once.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..recipe.infotext import is_params_line
from ..recipe.options import build_parser, parse_options
from ..recipe.paste import read_pasted
from ..recipe.request import PaintRequest
from ..recipe.values import coerce_options, option_fields

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_NEGATIVE = "Negative prompt:"
_LINE_PARSER = build_parser("batch line", prompt_words=True)
_FROM_PNG_KEEP = {"model", "model_config"}
"""Kernel options a PNG's recipe may carry into a batch. Its folder, device, dtype and pickle permission are the
painting machine's business (a downloaded PNG must not switch pickle loading on), so they come from here."""
_VIEWING = {"save", "save_incomplete", "preview", "preview_interval"}
"""Options of how a picture is watched and kept, not of the picture: a PNG's recipe does not set them."""


@dataclass
class Entry:
    """One request as read from its source, before defaults, validation and the batch's options."""

    where: str
    """``file:line`` (or ``item N`` for a list) for messages."""
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why the entry could not even be read (its options are then empty)."""


def read_entries(source: Any) -> list[Entry]:
    """Read every request of a batch source.

    Parameters
    ----------
    source
        A path (text file, CSV/TSV, JSONL, a PNG or a folder of PNGs), or a list of `PaintRequest`s, dicts of
        options (keys as CSV columns) or prompts.

    Raises
    ------
    ValueError
        If the source does not exist or is not a kind of batch input.
    """
    if isinstance(source, (str, os.PathLike)):
        return read_path(Path(source).expanduser())
    items = source if isinstance(source, (list, tuple)) else [source]
    return [_entry_from_item(item, f"item {index + 1}") for index, item in enumerate(items)]


def _entry_from_item(item: Any, where: str) -> Entry:
    if isinstance(item, PaintRequest):
        return Entry(where, {name: value for name, value in item.to_dict().items() if name in item.given})
    if isinstance(item, dict):
        return _entry_from_record(item, where)
    if isinstance(item, str):
        return Entry(where, {"prompt": item})
    return Entry(where, error=f"expected a PaintRequest, a dict of options or a prompt (got {type(item).__name__})")


def read_path(path: Path) -> list[Entry]:
    """Read a batch file or a folder of PNGs (see `read_entries`)."""
    if path.is_dir():
        return read_png_folder(path)
    if not path.is_file():
        msg = f"batch: no such file or folder '{path}'"
        raise ValueError(msg)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind == "jsonl":
        return read_jsonl(path)
    if kind in ("csv", "tsv"):
        return read_table(path, delimiter="\t" if kind == "tsv" else ",")
    if path.suffix.lower() == ".png":
        return [_entry_from_png(path)]
    return read_text(path)


# -- text: a prompt per line, or blocks of generation data ---------------------------------------------------------


def read_text(path: Path) -> list[Entry]:
    """Read a prompt file: one prompt per line, ``#`` comments, blank lines; or blocks of A1111 generation data.

    A block (lines between blank lines) whose last line is an A1111 parameters line, or that holds a
    ``Negative prompt:`` line, is one request; in any other block each line is a prompt. A line starting with
    ``--`` sets options for itself: ``--steps 30 --seed 5 a red circle``.
    """
    entries: list[Entry] = []
    block: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for number, line in enumerate([*lines, ""], start=1):
        if line.lstrip().startswith("#"):
            continue
        if line.strip():
            block.append((number, line))
            continue
        if block:
            entries += _read_block(path, block)
            block = []
    return entries


def _read_block(path: Path, block: list[tuple[int, str]]) -> list[Entry]:
    first = block[0][0]
    texts = [text for _, text in block]
    if is_params_line(texts[-1]) or any(text.lstrip().startswith(_NEGATIVE) for text in texts):
        return [_guarded(f"{path.name}:{first}", lambda: _options_from_infotext("\n".join(texts)))]
    return [_guarded(f"{path.name}:{number}", lambda text=text: _options_from_line(text)) for number, text in block]


def _options_from_infotext(text: str) -> dict[str, Any]:
    return {"negative_prompt": "", **read_pasted(text).options}  # the reader cells and PNG folders use too


def _options_from_line(text: str) -> dict[str, Any]:
    text = text.strip()
    if not text.startswith("--"):
        return {"prompt": text}
    options = parse_options(_LINE_PARSER, text)
    options.pop("help", None)
    return options


def _guarded(where: str, read: Any) -> Entry:
    try:
        return Entry(where, read())
    except ValueError as error:
        return Entry(where, error=str(error))


# -- tables: a column per option -----------------------------------------------------------------------------------


def column_names() -> dict[str, str]:
    """Map every accepted column name to its option: field names, flags, infotext keys, ``size``.

    Names are matched in lower case without leading dashes (``--cfg``, ``cfg`` and ``CFG scale`` all work).
    """
    names: dict[str, str] = {"size": "size", "negative prompt": "negative_prompt"}
    for f in option_fields():
        names[f.name.lower()] = f.name
        names[f.name.replace("_", "-").lower()] = f.name
        for flag in f.metadata["flags"]:
            names.setdefault(flag.lstrip("-").lower(), f.name)
        if f.metadata.get("infotext"):
            names.setdefault(f.metadata["infotext"].lower(), f.name)
    return names


def _entry_from_record(record: dict[str, Any], where: str) -> Entry:
    """Map a row's columns onto options; empty cells are left to the defaults."""
    names = column_names()
    options: dict[str, Any] = {}
    for column, value in record.items():
        if value is None or (isinstance(value, str) and not value.strip() and column != "prompt"):
            continue
        name = names.get(str(column).strip().lstrip("-").lower())
        if name is None:
            import difflib

            hint = difflib.get_close_matches(str(column).lower(), names, n=1)
            msg = f"unknown column '{column}' (columns are option names, flags or infotext keys such as steps, cfg)"
            return Entry(where, error=msg + (f". Did you mean '{hint[0]}'?" if hint else ""))
        if name == "size":
            try:
                options.update(coerce_options({"size": str(value)}))
            except ValueError as error:
                return Entry(where, error=str(error))
        else:
            options[name] = value
    return Entry(where, options)


def read_table(path: Path, delimiter: str = ",") -> list[Entry]:
    """Read a CSV (or TSV) file with a header row naming the options; each row is a request."""
    entries = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        start = 2
        for row in reader:
            where = f"{path.name}:{start}"
            start = reader.line_num + 1
            if None in row:
                entries.append(Entry(where, error=f"more cells than columns ({len(reader.fieldnames or [])})"))
                continue
            if not any((value or "").strip() for value in row.values()):
                continue
            entries.append(_entry_from_record(row, where))
    return entries


def read_jsonl(path: Path) -> list[Entry]:
    """Read a JSONL file: one object of options per line (blank lines and ``#`` lines skipped)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            entries.append(Entry(where, error=f"not JSON ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(record, dict):
            entries.append(Entry(where, error=f"expected an object of options (got {type(record).__name__})"))
            continue
        entries.append(_entry_from_record(record, where))
    return entries


# -- PNGs: their recipes ---------------------------------------------------------------------------------------


def read_png_folder(folder: Path) -> list[Entry]:
    """Read the recipe of every PNG in a folder (sorted by name), to paint them again."""
    entries = [_entry_from_png(path) for path in sorted(folder.glob("*.png")) if not path.name.startswith(".")]
    if not entries:
        msg = f"batch: no PNG files in '{folder}'"
        raise ValueError(msg)
    return entries


def _entry_from_png(path: Path) -> Entry:
    from ..painting.store import load_request

    try:
        request = load_request(path)
    except (ValueError, OSError) as error:
        return Entry(path.name, error=str(error).replace(f"load_request: {path}", "no recipe:"))
    kernel = {f.name for f in fields(PaintRequest) if f.metadata.get("kernel")} - _FROM_PNG_KEEP
    options = {name: value for name, value in request.to_dict().items() if name not in kernel | _VIEWING}
    return Entry(path.name, options)
