import pytest
from helpers.infotext_samples import a1111_parse, a1111_samples

from jupyter_sd.recipe.paste import parse_body, request_from_infotext
from jupyter_sd.recipe.request import PaintRequest


def test_fixture_values_apply():
    sample = a1111_samples()[0]
    request = request_from_infotext(sample)
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
    request = request_from_infotext(a1111_samples()[4])
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
    again = request_from_infotext(text)
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


def test_body_without_params_line():
    options = parse_body("a watercolor fox\nNegative prompt: blurry")
    assert options == {"prompt": "a watercolor fox", "negative_prompt": "blurry"}


def test_body_short_last_line_is_prompt():
    assert parse_body("a cat\nstyle: anime, mood: calm")["prompt"] == "a cat\nstyle: anime, mood: calm"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps: must be 1–1000 (got 0)"),
        ({"steps": 1001}, "steps: must be 1–1000 (got 1001)"),
        ({"guidance": -1.0}, "guidance: must be 0–30 (got -1)"),
        ({"seed": -2}, "seed: must be -1–18446744073709551615 (got -2)"),
        ({"seed": 2**64}, "seed: must be -1–18446744073709551615 (got 18446744073709551616)"),
        ({"width": 512}, "size: give both width and height"),
        ({"width": 0, "height": 8}, "width: must be 8–4096 (got 0)"),
        (
            {"sampler": "Euler b"},
            "sampler: unknown 'Euler b'; did you mean 'Euler a'? (every choice: %%paint? or docs/",
        ),
        ({"sampler": "Euler  bb"}, "did you mean 'Euler a'?"),
        ({"schedule": "karass"}, "did you mean 'Karras'?"),
        ({"n": 0}, "n: must be 1–16 (got 0)"),
        (
            {"preview": "fast"},
            "preview: unknown 'fast'; did you mean 'auto'? (allowed: auto, latent2rgb, taesd, full, none)",
        ),
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
    from jupyter_sd.recipe.values import coerce_value

    with pytest.raises(ValueError, match=r"steps: expected a whole number \(got 'many'\)"):
        coerce_value("steps", "many")
    with pytest.raises(ValueError) as refused:
        coerce_value("stpes", "3")
    line = str(refused.value)  # the closest names and where the full list is, never all seventy
    assert line.startswith("unknown option 'stpes'; did you mean steps") and "%%paint?" in line
    assert len(line) < 200 and "\n" not in line and "guidance" not in line
    assert coerce_value("dtype", "fp16") == "float16"
    assert coerce_value("guidance", "7") == 7.0


@pytest.mark.parametrize("size", ["64x96", "64X96", " 64 x 96 "])
def test_size_is_accepted_wherever_options_are(size):
    from jupyter_sd.painting import session as painter
    from jupyter_sd.recipe.options import build_parser, parse_options

    assert (painter.new_request(size=size).width, painter.new_request(size=size).height) == (64, 96)
    assert PaintRequest().replace(size=size).size == "64x96"
    assert PaintRequest.from_dict({"size": size}).size == "64x96"
    assert parse_options(build_parser("x", prompt_words=False), ["--size", size]) == {"width": 64, "height": 96}


def test_bad_size_is_one_line():
    from jupyter_sd.painting import session as painter

    with pytest.raises(ValueError, match=r"^size: expected WIDTHxHEIGHT such as 512x512 \(got '64'\)$"):
        painter.new_request(size="64")
