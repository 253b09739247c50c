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

import re
from dataclasses import dataclass

from .prompt_editing import prompt_schedules

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
# 3. prompt editing and alternation: prompt_editing.py (`prompt_schedules`)


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
