"""The A1111 samples file and A1111's own parser (as in its modules/infotext_utils.py), for the tests."""

import json
import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "a1111-infotext-samples.txt"


def a1111_samples() -> list[str]:
    text = FIXTURES.read_text()
    blocks = [block.strip("\n") for block in re.split(r"(?m)^=====$", text)[1:]]
    return [block for block in blocks if block.strip()]


# A1111's own parser, as in modules/infotext_utils.py, kept here to check we write what it reads.
_A1111_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_parse(text: str) -> dict:
    res = {}
    prompt, negative, done = "", "", False
    *lines, lastline = text.strip().split("\n")
    if len(_A1111_RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done = True
            line = line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative
    for k, v in _A1111_RE_PARAM.findall(lastline):
        if v[:1] == '"' and v[-1:] == '"':
            v = json.loads(v)
        res[k] = v
    return res
