"""A1111's generation-data text format, alone: quoting, writing, and reading a parameters line into key → text.

Knows nothing of `PaintRequest` (``request.py`` maps its fields onto these keys), so X/Y/Z grids, batches and the
PNG reader can use the format without the options.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A1111's own rule (modules/infotext_utils.py): a key, a colon, then a JSON-quoted value or anything up to a comma.
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


A1111_ORDER: tuple[str, ...] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Conditional mask weight", "Clip skip",
    "ENSD", "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG", "NGMS", "Tiling",
    "Hires prompt", "Hires negative prompt", "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler",
    "Hires checkpoint", "Hires sampler", "Hires schedule type", "Hires CFG Scale",
    "*",
    "Lora hashes", "TI hashes", "Emphasis", "Version", "User",
)  # fmt: skip
"""The order A1111's ``create_infotext`` writes keys in (v1.10): its fixed keys, the hires keys its txt2img adds
first, then other extensions' keys (``*``, in the order they came), then the network hashes and the version."""

_RANK = {key: rank for rank, key in enumerate(A1111_ORDER)}


def order_params(params: dict[str, Any]) -> dict[str, Any]:
    """Put parameters in A1111's order (keys it does not know keep their own order, after the hires keys)."""
    other = _RANK["*"]
    return dict(sorted(params.items(), key=lambda item: _RANK.get(item[0], other)))


def quote_value(value: Any) -> str:
    """Quote an infotext value exactly as A1111 does: JSON-quoted only if it holds ``,``, ``:`` or a newline."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_infotext(prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """Write prompt, negative prompt and parameters as A1111 generation data."""
    line = ", ".join(f"{key}: {quote_value(value)}" for key, value in params.items() if value is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{line}".strip()


def is_params_line(line: str) -> bool:
    """Tell whether a line is an A1111 parameters line (A1111's test: at least 3 ``Key: value`` pairs)."""
    return len(_RE_PARAM.findall(line)) >= 3


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """Split A1111 generation data into prompt, negative prompt and the raw ``Key: value`` parameters.

    Follows A1111's parser: the last line is the parameters line only when it holds at least three pairs; a line
    starting ``Negative prompt:`` starts the negative prompt, which runs to the parameters line.
    """
    *lines, last = text.strip().split("\n")
    if not is_params_line(last):
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    params: dict[str, str] = {}
    for key, value in _RE_PARAM.findall(last):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        params[key.strip()] = value.strip() if isinstance(value, str) else value
    return "\n".join(prompt), "\n".join(negative), params
