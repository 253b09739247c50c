"""Notebook variables in a cell: ``{name}`` in a ``%%paint`` body, ``{name}``/``$name`` on its line (IPython's rule).

Only a name the notebook defines is filled in; every other brace text stays as written, since real prompts carry
NovelAI-style ``{masterpiece}`` braces that A1111 sends to the text encoder unchanged.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping
from typing import Any

from ..recipe.options import one_line

_VARIABLE = re.compile(r"(?<!\{)\{([A-Za-z_]\w*)((?:\.\w+|\[[^\[\]{}]*\])*)(![rsa])?(:[^{}]*)?\}(?!\})")
"""``{name}``, ``{name.attr}``, ``{name[0]}``, with an optional ``!r`` and ``:spec``: single braces only."""
_NOT_VARIABLES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def expand_variables(body: str, namespace: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Fill ``{name}`` in a cell body with the notebook variable `name`, as IPython fills a magic's line.

    Only a name the notebook defines is filled in; every other brace text stays exactly as written (NovelAI's
    ``{masterpiece}`` and ``{{best quality}}`` reach the text encoder as they would in A1111). Returns the text
    and one line for each kept ``{…}`` that looks like a typo of a variable.
    """
    notes: list[str] = []
    if "{" not in body:
        return body, notes
    formatter = string.Formatter()

    def fill(match: re.Match[str]) -> str:
        name, rest, conversion, spec = match.group(1), match.group(2), match.group(3), match.group(4)
        if name not in namespace:
            known = [key for key in namespace if not key.startswith("_") and key not in _NOT_VARIABLES]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            if close:
                notes.append(f"prompt: kept {match.group(0)} as written (did you mean the variable {{{close[0]}}}?)")
            return match.group(0)
        try:
            value = formatter.get_field(name + rest, (), namespace)[0]
            value = formatter.convert_field(value, conversion[1]) if conversion else value
            return formatter.format_field(value, spec[1:] if spec else "")
        except Exception as error:  # {name.missing}: keep the text, say why
            notes.append(f"prompt: kept {one_line(match.group(0))} as written ({type(error).__name__}: {error})")
            return match.group(0)

    return _VARIABLE.sub(fill, body), notes


_PICTURE_OPTION = re.compile(r"""(--init|--mask|^\s*upscale)(\s+|=)(\{\w+\})""")


def expand_line(line: str, namespace: Mapping[str, Any]) -> str:
    """IPython's ``{name}`` / ``$name`` expansion of a magic line, but a picture (--init, --mask, upscale).

    ``--init {photo}`` keeps the name, so the picture itself (not its text) reaches the loader; every other
    ``{name}`` is replaced by the variable's text as IPython does (and left as it is when it can't be).
    """
    from IPython.utils.text import DollarFormatter

    kept: list[str] = []

    def keep(match: re.Match) -> str:
        kept.append(match.group(3))
        return f"{match.group(1)}{match.group(2)}\x00{len(kept) - 1}\x00"

    protected = _PICTURE_OPTION.sub(keep, line)
    try:
        expanded = DollarFormatter().vformat(protected, args=[], kwargs=namespace)
    except Exception:  # IPython leaves a line it cannot expand as it is
        expanded = protected
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], expanded)
