"""A1111's generation-data format: we read what A1111 writes and write what it reads."""

import pytest
from helpers.infotext_samples import a1111_parse, a1111_samples

from jupyter_sd.recipe.infotext import format_infotext, is_params_line, parse_infotext, quote_value


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


def test_two_pairs_are_not_a_params_line():
    # two "key: value" pairs are not a parameters line (A1111 needs three)
    assert not is_params_line("style: anime, mood: calm")
