"""A1111's prompt editing ``[from:to:when]`` and alternation ``[a|b]``: the text to use up to each step.

`prompt_schedules` is stage 3 of `jupyter_sd.prompts` (after comments, tags and ``AND``; before emphasis), and
follows A1111 on every input, malformed ones included. No torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

__all__ = ["prompt_schedules"]

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
