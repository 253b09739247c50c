"""AUTOMATIC1111's prompt syntax, as plain text functions (no torch).

A prompt pasted from A1111 or civitai goes through the same stages A1111 applies, in its order:

1. :func:`strip_comments` and :func:`extract_networks` take out ``# comments`` and ``<lora:…>`` tags;
2. :func:`split_and` splits composable-diffusion parts (``a cat AND a dog :0.5``);
3. :func:`prompt_schedules` expands prompt editing ``[from:to:when]`` and alternation ``[a|b]`` into the text
   to use up to each step;
4. :func:`parse_attention` turns one such text into ``(text, weight)`` pieces for the tokenizer.

Each stage follows A1111 on every input, malformed ones included (unbalanced brackets, stray colons): a prompt
its editing grammar cannot read is used as written, as A1111 does. ``engine/conditioning.py`` turns the result
into embeddings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

__all__ = [
    "ExtraNetwork",
    "extract_networks",
    "parse_attention",
    "prompt_schedules",
    "split_and",
    "strip_comments",
]

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

# ---------------------------------------------------------------------------------------------------------------
# 1. comments and extra-network tags

_COMMENT = re.compile(r"#[^\n]*")
_NETWORK_TAG = re.compile(r"<(\w+):([^>]*)>")
_LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class ExtraNetwork:
    """One ``<lora:name:te:unet>`` tag: which network, and its text-encoder and UNet multipliers."""

    kind: str
    name: str
    te_weight: float
    unet_weight: float


def strip_comments(text: str) -> str:
    """Drop everything from a ``#`` to the end of its line, as A1111's "Enable comments" (on by default) does.

    A1111 leaves a line break where a comment was; only whitespace differs, which the tokenizer ignores.
    """
    return _COMMENT.sub("", text)


def extract_networks(text: str) -> tuple[str, list[ExtraNetwork], list[str]]:
    """Take comments and extra-network tags out of a prompt.

    Parameters
    ----------
    text
        A prompt as the user wrote it.

    Returns
    -------
    tuple
        The text without comments and tags; the ``<lora:…>`` / ``<lyco:…>`` tags in order (A1111's arguments:
        ``name[:te[:unet[:dyn]]]``, also ``te=``/``unet=`` named; unet defaults to te, te to 1); and one string
        per other tag (``'hypernet:foo:0.5'``), which this package does not support.

    Raises
    ------
    ValueError
        A LoRA tag without a name, or with a multiplier that is not a number (e.g. ``<lora:>``).
    """
    networks: list[ExtraNetwork] = []
    unsupported: list[str] = []

    def take(match: re.Match[str]) -> str:
        kind, args = match.group(1), match.group(2)
        if kind in _LORA_KINDS:
            networks.append(_lora_from_args(match.group(0), args))
        elif args:
            unsupported.append(f"{kind}:{args}")
        else:  # A1111's tag pattern needs an argument: '<x:>' is plain text there
            return match.group(0)
        return ""

    return _NETWORK_TAG.sub(take, strip_comments(text)), networks, unsupported


def _lora_from_args(tag: str, args: str) -> ExtraNetwork:
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in args.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    if not positional or not positional[0].strip():
        msg = f"prompt: the tag {tag} names no network (allowed: <lora:NAME>, <lora:NAME:WEIGHT>, <lora:NAME:TE:UNET>)"
        raise ValueError(msg)

    def number(value: str, what: str) -> float:
        try:
            return float(value)
        except ValueError:
            msg = f"prompt: the {what} weight in {tag} must be a number (got {value!r})"
            raise ValueError(msg) from None

    te = number(positional[1], "text-encoder") if len(positional) > 1 else 1.0
    te = number(named["te"], "text-encoder") if "te" in named else te
    unet = number(positional[2], "UNet") if len(positional) > 2 else te
    unet = number(named["unet"], "UNet") if "unet" in named else unet
    return ExtraNetwork(kind="lora", name=positional[0], te_weight=te, unet_weight=unet)


# ---------------------------------------------------------------------------------------------------------------
# 2. composable diffusion: AND

_AND = re.compile(r"\bAND\b")
_AND_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Split a prompt on ``AND`` into ``(text, weight)`` parts, A1111's composable diffusion.

    A part may end in ``:weight`` (``a dog :0.5``); trailing whitespace is dropped. ``AND`` splits anywhere,
    even inside brackets, as in A1111.
    """
    parts = []
    for sub in _AND.split(prompt):
        match = _AND_WEIGHT.search(sub)
        text, weight = match.groups() if match is not None else (sub, None)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


# ---------------------------------------------------------------------------------------------------------------
# 3. prompt editing and alternation
#
# The grammar (A1111's, read by hand here): a prompt is a run of plain text, whitespace and bracketed forms --
# "(p)", "(p:p)", "[p]", "[p:p:N]", "[p:N]", "[p|p|...]" -- where plain text is anything but \ [ ] ( ) : |
# (a backslash escapes the next character). At the top level, stray [ ] ( ) : are text too; a "|" outside an
# alternation, or a backslash ending a line, makes the whole prompt unreadable: it is then used as written.
#
# A well-formed bracket next to stray brackets or colons ("(a[b:2]):") can be read two ways: as editing, or as
# plain text. A1111's parser (lark 1.1.2, which it pins) then picks one by Python's string-hash order, which
# changes from one process to the next; compared over thousands of generated prompts, every such prompt came out
# both ways there, and every other prompt came out exactly as here. This reader always takes the editing reading.

_SPECIAL = set("\\[]():|")
_WHITESPACE = re.compile(r"\s*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)")


@dataclass
class _Edit:
    """``[before:after:when]``; ``before`` is None for ``[after:when]``."""

    before: list[_Node] | None
    after: list[_Node]
    when_text: str
    when: int = 0


@dataclass
class _Alternation:
    options: list[list[_Node]]


_Node = Union[str, _Edit, _Alternation]


class _Unreadable(Exception):
    pass


class _EditParser:
    """A recursive-descent reader of the prompt-editing grammar; ``None`` results mean "not this form here"."""

    def __init__(self, text: str) -> None:
        self.text = text

    def char(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def top(self) -> list[_Node]:
        nodes: list[_Node] = []
        i = 0
        while i < len(self.text):
            c = self.text[i]
            if c in "([":
                found = self.bracketed(i)
                if found is not None:
                    nodes.extend(found[0])
                    i = found[1]
                    continue
                nodes.append(c)
                i += 1
            elif c in "]):":
                nodes.append(c)
                i += 1
            elif c == "|":
                raise _Unreadable
            else:
                end = self.plain_end(i)
                if end == i:  # a backslash with nothing to escape
                    raise _Unreadable
                nodes.append(self.text[i:end])
                i = end
        return nodes

    def plain_end(self, i: int) -> int:
        text = self.text
        while i < len(text):
            c = text[i]
            if c == "\\":
                if i + 1 < len(text) and text[i + 1] != "\n":
                    i += 2
                    continue
                return i
            if c in _SPECIAL:
                return i
            i += 1
        return i

    def prompt(self, i: int) -> tuple[list[_Node], int]:
        """A run of plain text and bracketed forms; stops at the first character that is neither."""
        nodes: list[_Node] = []
        while i < len(self.text):
            c = self.text[i]
            if c in "([":
                found = self.bracketed(i)
                if found is None:
                    break
                nodes.extend(found[0])
                i = found[1]
            elif c in _SPECIAL and c != "\\":
                break
            else:
                end = self.plain_end(i)
                if end == i:
                    break
                nodes.append(self.text[i:end])
                i = end
        return nodes, i

    def number(self, i: int) -> tuple[str, int] | None:
        """``[WHITESPACE] NUMBER [WHITESPACE] "]"`` from i; the number's text and the index after ``]``."""
        i = _WHITESPACE.match(self.text, i).end()
        match = _NUMBER.match(self.text, i)
        if match is None:
            return None
        end = _WHITESPACE.match(self.text, match.end()).end()
        if self.char(end) != "]":
            return None
        return match.group(0), end + 1

    def bracketed(self, i: int) -> tuple[list[_Node], int] | None:
        opening = self.text[i]
        first, j = self.prompt(i + 1)
        c = self.char(j)
        if opening == "(":
            if c == ")":
                return ["(", *first, ")"], j + 1
            if c == ":":
                second, k = self.prompt(j + 1)
                if self.char(k) == ")":
                    return ["(", *first, ":", *second, ")"], k + 1
            return None
        if c == "]":
            return ["[", *first, "]"], j + 1
        if c == "|":
            options = [first]
            while self.char(j) == "|":
                option, j = self.prompt(j + 1)
                options.append(option)
            if self.char(j) != "]":
                return None
            return [_Alternation(options)], j + 1
        if c == ":":
            when = self.number(j + 1)
            if when is not None:
                return [_Edit(None, first, when[0])], when[1]
            second, k = self.prompt(j + 1)
            if self.char(k) == ":":
                when = self.number(k + 1)
                if when is not None:
                    return [_Edit(first, second, when[0])], when[1]
        return None


def _walk(nodes: list[_Node]):
    for node in nodes:
        if isinstance(node, _Edit):
            yield node
            yield from _walk(node.before or [])
            yield from _walk(node.after)
        elif isinstance(node, _Alternation):
            yield node
            for option in node.options:
                yield from _walk(option)


def _text_at(nodes: list[_Node], step: int) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Edit):
            chosen = (node.before or []) if step <= node.when else node.after
            out.append(_text_at(chosen, step))
        else:
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step))
    return "".join(out)


def prompt_schedules(prompt: str, steps: int, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """The text to use up to each step, for prompt editing and alternation.

    Parameters
    ----------
    prompt
        One prompt (one ``AND`` part), without extra-network tags.
    steps
        The (first pass's) sampling steps.
    hires_steps
        For a hires pass: its steps. Then ``when`` values count on from the first pass: an integer ``N`` means
        hires step ``N - steps``, a fraction ``f`` (written with a ``.``) means ``(f - 1) * hires_steps``.

    Returns
    -------
    list of (int, str)
        ``(last step, text)`` pairs in step order; the last one ends at the pass's step count. A text applies
        to the steps after the previous pair's step, up to and including its own (A1111's ``end_at_step``).
    """
    if hires_steps is None:
        int_offset, fraction_offset, total = 0, 0.0, steps
    else:
        int_offset, fraction_offset, total = steps, 1.0, hires_steps
    try:
        nodes = _EditParser(prompt).top()
    except _Unreadable:
        return [(total, prompt)]
    boundaries = {total}
    for node in _walk(nodes):
        if isinstance(node, _Alternation):
            boundaries.update(range(1, total + 1))
            continue
        value = float(node.when_text)
        value = (value - fraction_offset) * total if "." in node.when_text else value - int_offset
        node.when = min(total, int(value)) if math.isfinite(value) else (total if value > 0 else -1)
        if node.when >= 1:
            boundaries.add(node.when)
    return [(step, _text_at(nodes, step)) for step in sorted(boundaries)]


# ---------------------------------------------------------------------------------------------------------------
# 4. emphasis

_ATTENTION = re.compile(
    r"""
    \\[()\[\]\\]            # an escaped bracket or backslash: the character itself
    | \\                    # a lone backslash: dropped
    | [(\[]                 # an opening bracket
    | :\s*([+-]?[.\d]+)\s*\)  # ':1.3)' closes a round bracket with that weight
    | [)\]]                 # a closing bracket
    | [^\\()\[\]:]+         # text
    | :                     # a colon on its own is text
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str) -> list[tuple[str, float]]:
    r"""Split one prompt text into ``(text, weight)`` pieces by A1111's emphasis syntax.

    ``(x)`` multiplies by 1.1, ``[x]`` divides by 1.1, ``(x:1.3)`` multiplies by 1.3; nested brackets multiply;
    a bracket left open applies to the end of the text; ``\( \) \[ \] \\`` are literal characters.
    Adjacent pieces of equal weight are merged; ``BREAK`` (a word on its own) becomes ``("BREAK", -1)``.

    Raises
    ------
    ValueError
        ``(x:1.2.3)``: a weight that is not a number (A1111 fails on it too).
    """
    pieces: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(pieces))
        elif token == "[":
            open_square.append(len(pieces))
        elif weight is not None and open_round:
            try:
                factor = float(weight)
            except ValueError:
                msg = f"prompt: the weight in '{token}' must be a number (got {weight!r})"
                raise ValueError(msg) from None
            scale(open_round.pop(), factor)
        elif token == ")" and open_round:
            scale(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            for n, part in enumerate(_BREAK.split(token)):
                if n:
                    pieces.append(["BREAK", -1.0])
                pieces.append([part, 1.0])
    for start in open_round:
        scale(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale(start, SQUARE_MULTIPLIER)

    merged: list[list] = []
    for piece in pieces:
        if merged and merged[-1][1] == piece[1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return [(t, w) for t, w in merged] or [("", 1.0)]
