import json
import re
from pathlib import Path

import pytest

from jupyter_sd.infotext import format_infotext, is_params_line, parse_infotext, quote_value
from jupyter_sd.request import PaintRequest, parse_body

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "a1111-infotext-samples.txt"


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


def test_fixture_has_samples():
    assert len(a1111_samples()) == 5


@pytest.mark.parametrize("sample", a1111_samples())
def test_parse_matches_a1111(sample):
    prompt, negative, params = parse_infotext(sample)
    reference = a1111_parse(sample)
    assert prompt == reference.pop("Prompt")
    assert negative == reference.pop("Negative prompt")
    assert params == reference


@pytest.mark.parametrize("sample", a1111_samples())
def test_params_rewrite_is_identical(sample):
    """Writing back what we parsed gives the same text (quoting included)."""
    prompt, negative, params = parse_infotext(sample)
    assert format_infotext(prompt, negative, params) == sample.strip()


def test_fixture_values_apply():
    sample = a1111_samples()[0]
    request = PaintRequest.from_infotext(sample)
    assert request.prompt.startswith("masterpiece, best quality")
    assert request.negative_prompt == "lowres, blurry, bad anatomy"
    assert (request.steps, request.sampler, request.schedule, request.guidance, request.seed) == (
        20,
        "DPM++ 2M",
        "Karras",
        7.0,
        1234567,
    )
    assert (request.width, request.height) == (512, 768)
    assert request.model == ""  # a civitai checkpoint name is not something we can load: keep the kernel's model
    request.validate()


def test_quoted_model_name_survives():
    request = PaintRequest.from_infotext(a1111_samples()[4])
    assert request.sampler == "DPM++ 2M SDE" and request.schedule == "Exponential"
    assert request.seed == 3141592653 and request.guidance == 4.5


def test_round_trip_every_field():
    request = PaintRequest(
        prompt="a fox, (snow:1.2)\nsecond line: with colon",
        negative_prompt="blurry, lowres",
        steps=33,
        guidance=6.5,
        seed=987654321,
        width=520,
        height=704,
        sampler="Euler a",
        schedule="Karras",
        model="org/some-model",
    )
    text = request.to_infotext()
    again = PaintRequest.from_infotext(text)
    for name in (
        "prompt",
        "negative_prompt",
        "steps",
        "guidance",
        "seed",
        "width",
        "height",
        "sampler",
        "schedule",
        "model",
    ):
        assert getattr(again, name) == getattr(request, name), name
    assert a1111_parse(text)["Seed"] == "987654321"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("a, b", '"a, b"'),
        ("x: y", '"x: y"'),
        ("two\nlines", '"two\\nlines"'),
        ('say "hi"', 'say "hi"'),
    ],
)
def test_quote_rule(value, written):
    assert quote_value(value) == written


def test_a1111_reads_our_quoting():
    text = format_infotext("p", "", {"Steps": 5, "Sampler": "Euler", "Model": "my model, v2", "Note": "a: b"})
    assert a1111_parse(text)["Model"] == "my model, v2"
    assert a1111_parse(text)["Note"] == "a: b"


def test_body_without_params_line():
    options = parse_body("a watercolor fox\nNegative prompt: blurry")
    assert options == {"prompt": "a watercolor fox", "negative_prompt": "blurry"}


def test_body_short_last_line_is_prompt():
    # two "key: value" pairs are not a parameters line (A1111 needs three)
    assert not is_params_line("style: anime, mood: calm")
    assert parse_body("a cat\nstyle: anime, mood: calm")["prompt"] == "a cat\nstyle: anime, mood: calm"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps: must be 1–150 (got 0)"),
        ({"steps": 151}, "steps: must be 1–150 (got 151)"),
        ({"guidance": -1.0}, "guidance: must be 0–30 (got -1)"),
        ({"seed": -2}, "seed: must be -1–4294967295 (got -2)"),
        (
            {"width": 500, "height": 500},
            "size: width and height must be multiples of 8 (nearest: 504x504) (got 500x500)",
        ),
        ({"width": 512}, "size: give both width and height"),
        ({"width": 0, "height": 8}, "width: must be 8–4096 (got 0)"),
        ({"sampler": "Euler b"}, "sampler: unknown 'Euler b' (allowed: DPM++ 2M,"),
        ({"sampler": "euler a"}, "Did you mean 'Euler a'?"),
        ({"schedule": "karras"}, "Did you mean 'Karras'?"),
        ({"n": 0}, "n: must be 1–16 (got 0)"),
        ({"preview": "fast"}, "preview: unknown 'fast' (allowed: auto, latent2rgb, taesd, full, none)"),
        ({"device": "gpu"}, "device: must be auto, cpu, mps, cuda or cuda:N (got 'gpu')"),
        ({"dtype": "int8"}, "dtype: unknown 'int8' (allowed: auto, float16, bfloat16, float32)"),
    ],
)
def test_bad_values_one_line(changes, message):
    with pytest.raises(ValueError) as info:
        PaintRequest(prompt="x", **changes).validate()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_coercion_errors_name_the_option():
    from jupyter_sd.request import coerce_value

    with pytest.raises(ValueError, match=r"steps: expected a whole number \(got 'many'\)"):
        coerce_value("steps", "many")
    with pytest.raises(ValueError, match="unknown option 'stpes'.*Did you mean 'steps'"):
        coerce_value("stpes", "3")
    assert coerce_value("dtype", "fp16") == "float16"
    assert coerce_value("guidance", "7") == 7.0
