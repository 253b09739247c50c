"""sd-dynamic-prompts' template syntax, as text: variants ``{a|b}``, wildcards ``__name__``, their expansion.

Built on the `dynamicprompts` library (the ``wildcards`` extra), imported only when a prompt needs it. A prompt is a
template only when it has a variant (a brace group with a ``|``) or a wildcard; any other brace text (NovelAI's
``{masterpiece}``, ``{{best quality}}``) and all text around the template's parts reach the text encoder exactly as
written, as A1111 sends them. Random mode seeds each picture's prompt from that picture's seed, so a recipe repaints
the same prompt; combinatorial mode lists every combination. Pure Python: no torch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..library.folder import wildcards_dir

_WILDCARD = re.compile(r"__[\w\-./*~]+?__")
"""A wildcard: ``__colors__``, ``__animals/*__`` (the name as sd-dynamic-prompts' files are named)."""
_PLACEHOLDER = 0xE000
"""Kept text stands in the template as one private-use character each while the library reads it."""
TEMPLATE_KEY = "Template"
NEGATIVE_TEMPLATE_KEY = "Negative Template"
"""The lines sd-dynamic-prompts writes after the parameters line (its "Save template to metadata")."""
INSTALL_HINT = "pip install 'jupyter_sd[wildcards]'"


@dataclass
class Expansion:
    """The prompts a template paints: one pair per picture, and one line for each thing painted around."""

    prompts: list[str]
    negative_prompts: list[str]
    notes: list[str] = field(default_factory=list)


def has_dynamic_syntax(text: str) -> bool:
    """Whether `text` is a template: it has a variant (``{a|b}``, ``{2$$a|b}``) or a wildcard (``__name__``)."""
    return ("{" in text or "__" in text) and any(dynamic for dynamic, _ in _segments(text))


def _closing(text: str, start: int) -> int | None:
    """The index of the ``}`` closing the ``{`` at `start` (nested braces counted), or None when it is not closed."""
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        depth += (char == "{") - (char == "}")
        if depth == 0:
            return index
        index += 1
    return None


def _is_variant(group: str) -> bool:
    """A brace group the library expands: a ``|`` or a wildcard anywhere inside it."""
    return "|" in group or bool(_WILDCARD.search(group))


def _segments(text: str) -> list[tuple[bool, str]]:
    """`text` in pieces: (True, a variant group or wildcard) or (False, text kept as written)."""
    pieces: list[tuple[bool, str]] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        end = _closing(text, index) if char == "{" else None
        match = _WILDCARD.match(text, index) if char == "_" else None
        stop = end + 1 if end is not None and _is_variant(text[index : end + 1]) else match.end() if match else None
        if stop is not None:
            if literal:
                pieces.append((False, "".join(literal)))
                literal = []
            pieces.append((True, text[index:stop]))
            index = stop
            continue
        step = end + 1 if end is not None else index + (2 if char == "\\" else 1)
        literal.append(text[index:step])
        index = step
    if literal:
        pieces.append((False, "".join(literal)))
    return pieces


def _protect(text: str, kept: list[str], missing: list[str], known: Any) -> str:
    """`text` with every kept piece as one placeholder character.

    Kept are plain text, a brace group with no ``|``, and a wildcard `known` has no values for (listed in
    `missing`: the library would repeat it without end).
    """

    def hold(piece: str) -> str:
        kept.append(piece)
        return chr(_PLACEHOLDER + len(kept) - 1)

    def wildcard(match: re.Match[str]) -> str:
        name = match.group(0)[2:-2]
        if known(name):
            return match.group(0)
        if name not in missing:
            missing.append(name)
        return hold(match.group(0))

    out: list[str] = []
    for dynamic, piece in _segments(text):
        if not dynamic:
            out.append(hold(piece))
        elif piece.startswith("{"):
            out.append("{" + _protect_inner(piece[1:-1], hold, wildcard) + "}")
        else:
            out.append(_WILDCARD.sub(wildcard, piece))
    return "".join(out)


def _protect_inner(text: str, hold: Any, wildcard: Any) -> str:
    """Inside a variant: nested brace groups with no ``|`` (``{masterpiece}``) are kept as written."""
    out: list[str] = []
    index = 0
    while index < len(text):
        end = _closing(text, index) if text[index] == "{" else None
        if end is None:
            out.append(text[index])
            index += 1
            continue
        group = text[index : end + 1]
        out.append("{" + _protect_inner(group[1:-1], hold, wildcard) + "}" if _is_variant(group) else hold(group))
        index = end + 1
    return _WILDCARD.sub(wildcard, "".join(out))


def _restore(text: str, kept: list[str]) -> str:
    """Put the kept pieces back in place of their placeholders."""
    return "".join(
        kept[ord(c) - _PLACEHOLDER] if _PLACEHOLDER <= ord(c) < _PLACEHOLDER + len(kept) else c for c in text
    )


class _Missing(logging.Handler):
    """Collects the wildcards the library found no file for (it logs each one and keeps ``__name__`` as written)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        found = re.match(r"No values found for wildcard '(.*)'", record.getMessage())
        if found and found.group(1) not in self.names:
            self.names.append(found.group(1))


@contextmanager
def _missing_wildcards() -> Iterator[_Missing]:
    """Catch the library's warnings while it expands, so they become our one line instead of log noise."""
    logger = logging.getLogger("dynamicprompts")
    handler = _Missing()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _library(folder: Path | None) -> Any:
    """The library's generators and a wildcard manager over `folder` (default: the models folder's ``wildcards/``).

    None when the ``wildcards`` extra is not installed.
    """
    try:
        from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
        from dynamicprompts.wildcards import WildcardManager
    except ImportError:
        return None
    folder = wildcards_dir() if folder is None else folder
    manager = WildcardManager(folder if folder.is_dir() else None)
    manager.jupyter_sd_folder = folder  # named in the line for a missing wildcard, whether it exists or not
    return RandomPromptGenerator, CombinatorialPromptGenerator, manager


def _expand(template: str, make: Any, count: int, notes: list[str], manager: Any, what: str = "prompt") -> list[str]:
    """`template` through `make(text)` → list of texts, kept text protected; as written on a syntax error."""
    if not has_dynamic_syntax(template):
        return [template] * max(count, 1)
    kept: list[str] = []
    absent: list[str] = []
    protected = _protect(template, kept, absent, lambda name: bool(manager.get_values(name)))
    with _missing_wildcards() as missing:
        try:
            texts = make(protected)
        except Exception as error:  # the library's grammar refused it: paint the text as written
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            notes.append(f"{what}: could not read its dynamic-prompts syntax ({first}); painted as written")
            return [template] * max(count, 1)
    for name in absent + missing.names:
        line = f"{what}: no wildcard file for __{name}__ in {manager.jupyter_sd_folder}; painted __{name}__ as written"
        if line not in notes:
            notes.append(line)
    return [_restore(text, kept) for text in texts] or [template]


def expand_random(template: str, negative: str, seeds: list[int], folder: Path | None = None) -> Expansion:
    """Random mode: picture k's prompt (and negative prompt) drawn from the template with seed ``seeds[k]`` alone.

    The same seed gives the same prompt, so a picture's recipe (its seed, one image) repaints its prompt.
    """
    library = _library(folder)
    if library is None:
        return _not_installed(template, negative, len(seeds))
    random_generator, _, manager = library
    generator = random_generator(manager)
    notes: list[str] = []

    def make(text: str) -> list[str]:
        return [generator.generate(text, 1, seeds=[seed])[0] for seed in seeds]

    prompts = _expand(template, make, len(seeds), notes, manager)
    negatives = _expand(negative, make, len(seeds), notes, manager, "negative prompt")
    return Expansion(prompts, negatives, notes)


def expand_combinatorial(template: str, negative: str, cap: int, folder: Path | None = None) -> Expansion:
    """Combinatorial mode: every combination of the template, the first `cap` of them, in the library's order.

    A negative template's combinations are taken in turn over the pictures (as sd-dynamic-prompts does with a cap).
    """
    library = _library(folder)
    if library is None:
        return _not_installed(template, negative, 1)
    _, combinatorial_generator, manager = library
    generator = combinatorial_generator(manager)
    notes: list[str] = []

    def make(text: str) -> list[str]:
        return generator.generate(text, cap + 1)

    prompts = _expand(template, make, 1, notes, manager)
    if len(prompts) > cap:
        prompts = prompts[:cap]
        notes.append(f"prompt: more than {cap} combinations; painted the first {cap} (--max-combinations)")
    negatives = _expand(negative, make, 1, notes, manager, "negative prompt")[:cap]
    negatives = [negatives[k % len(negatives)] for k in range(len(prompts))]
    return Expansion(prompts, negatives, notes)


def _not_installed(template: str, negative: str, count: int) -> Expansion:
    """Without the library: the text as written, and one line saying how to get it."""
    note = f"prompt: {{a|b}} and __wildcards__ need the dynamicprompts package ({INSTALL_HINT}); painted as written"
    return Expansion([template] * count, [negative] * count, [note])


def template_lines(template: str, negative_template: str) -> str:
    """The lines sd-dynamic-prompts writes after the parameters line (``Template: …``, ``Negative Template: …``)."""
    lines = f"\n{TEMPLATE_KEY}: {template}" if template else ""
    return lines + (f"\n{NEGATIVE_TEMPLATE_KEY}: {negative_template}" if negative_template else "")


def split_templates(text: str) -> tuple[str, str, str]:
    """Generation data without its ``Template:`` / ``Negative Template:`` lines, and those two templates.

    They follow the parameters line (sd-dynamic-prompts writes them last), so a prompt that merely starts a line
    with ``Template:`` is left alone.
    """
    from .infotext import is_params_line

    lines = text.strip().split("\n")
    starts = (f"{TEMPLATE_KEY}:", f"{NEGATIVE_TEMPLATE_KEY}:")
    for index in range(len(lines) - 2, -1, -1):
        if lines[index + 1].startswith(starts) and is_params_line(lines[index]):
            tail = "\n".join(lines[index + 1 :])
            found = re.match(rf"(?:{TEMPLATE_KEY}: ?(.*?))?(?:\n?{NEGATIVE_TEMPLATE_KEY}: ?(.*))?$", tail, re.S)
            if found is None:
                break
            return "\n".join(lines[: index + 1]), found.group(1) or "", found.group(2) or ""
    return text, "", ""
