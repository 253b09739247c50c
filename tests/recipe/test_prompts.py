"""A1111 prompt syntax: its documented examples, and invariants over thousands of generated prompts."""

from __future__ import annotations

import math
import re

import pytest

from jupyter_sd.recipe.prompts import (
    ExtraNetwork,
    extract_networks,
    parse_attention,
    prompt_schedules,
    split_and,
    strip_comments,
)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MANY = settings(max_examples=400, deadline=None)  # x 12 properties: thousands of prompts per run

# ---------------------------------------------------------------------------------------------------------------
# A1111's documented examples: parse_prompt_attention's docstring, the prompt-editing doctests, the wiki


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
        ("", [("", 1.0)]),
        ("a BREAK b", [("a", 1.0), ("BREAK", -1), ("b", 1.0)]),
        ("(masterpiece:1.2), best quality", [("masterpiece", 1.2), (", best quality", 1.0)]),
        ("a (word: 1.5 ) b", [("a ", 1.0), ("word", 1.5), (" b", 1.0)]),
        ("BREAKfast", [("BREAKfast", 1.0)]),
        ("a\\b", [("ab", 1.0)]),  # a lone backslash is dropped
        ("a: b)", [("a: b)", 1.0)]),  # stray colon and bracket are text
    ],
)
def test_parse_attention_examples(text, expected):
    assert parse_attention(text) == expected


def test_parse_attention_bad_weight_is_one_line():
    with pytest.raises(ValueError, match=r"weight in ':1\.2\.3\)' must be a number") as info:
        parse_attention("(a:1.2.3)")
    assert "\n" not in str(info.value)


def _g(prompt, steps=10, hires=None):
    return [list(pair) for pair in prompt_schedules(prompt, steps, hires)]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [[10, "test"]]),
        ("a [b:3]", [[3, "a "], [10, "a b"]]),
        ("a [b: 3]", [[3, "a "], [10, "a b"]]),
        ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
        ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
        ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
        ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
        ("a [unbalanced", [[10, "a [unbalanced"]]),
        ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
        # A1111's doctest says [[5, 'a  c'], ...] but its grammar has refused '|' in text since alternation came:
        ("a [{b|d{:.5] c", [[10, "a [{b|d{:.5] c"]]),
        ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
        ("[a|(b:1.1)]", [[s, "a" if s % 2 else "(b:1.1)"] for s in range(1, 11)]),
        ("[fe|]male", [[s, "female" if s % 2 else "male"] for s in range(1, 11)]),
        ("[fe|||]male", [[s, "female" if s % 4 == 1 else "male"] for s in range(1, 11)]),
        ("a cat | a dog", [[10, "a cat | a dog"]]),  # '|' outside an alternation: used as written
        ("trailing \\", [[10, "trailing \\"]]),
    ],
)
def test_prompt_schedule_doctests(prompt, expected):
    assert _g(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        # A1111 reads these either way depending on the process's string-hash seed: we always read the edit
        ("(a[b:2]):", [[2, "(a):"], [10, "(ab):"]]),
        ("[b:2]:", [[2, ":"], [10, "b:"]]),
        ("[a[b:2]]:", [[2, "[a]:"], [10, "[ab]:"]]),
    ],
)
def test_ambiguous_brackets_read_as_editing(prompt, expected):
    assert _g(prompt) == expected


def test_prompt_schedule_hires_doctests():
    assert _g("a [b:.5] c", 10, 10) == [[10, "a b c"]]
    assert _g("a [b:1.5] c", 10, 10) == [[5, "a  c"], [10, "a b c"]]
    assert _g("a [b:13] c", 10, 10) == [[3, "a  c"], [10, "a b c"]]


def test_the_example_at_the_top_of_a1111s_prompt_parser():
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
        "[: in background:0.25] [shoddy:masterful:0.5]"
    )
    assert _g(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_wiki_examples():
    assert _g("a [fantasy:cyberpunk:16] landscape", 100) == [
        [16, "a fantasy landscape"],
        [100, "a cyberpunk landscape"],
    ]
    assert _g("[cow|horse] in a field", 3) == [[1, "cow in a field"], [2, "horse in a field"], [3, "cow in a field"]]
    assert _g("a [cat:20] on a mat", 10) == [[10, "a  on a mat"]]  # when past the last step: never switches


def test_split_and():
    assert split_and("a cat AND a dog :0.5") == [("a cat", 1.0), (" a dog", 0.5)]
    assert split_and("a cat") == [("a cat", 1.0)]
    assert split_and("ANDROID AND x:-2 AND") == [("ANDROID", 1.0), (" x", -2.0), ("", 1.0)]
    assert split_and("(a AND b)") == [("(a", 1.0), (" b)", 1.0)]  # A1111 splits inside brackets too


def test_extract_networks():
    text, nets, other = extract_networks(
        "x <lora:add_detail:0.8>, <lyco:loco:0.5:0.25> <lora:named:te=0.3:unet=0.6> <lora:plain> "
        "<hypernet:h:1> <notatag> <x:>"
    )
    assert text == "x ,     <notatag> <x:>"
    assert nets == [
        ExtraNetwork("lora", "add_detail", 0.8, 0.8),
        ExtraNetwork("lora", "loco", 0.5, 0.25),
        ExtraNetwork("lora", "named", 0.3, 0.6),
        ExtraNetwork("lora", "plain", 1.0, 1.0),
    ]
    assert other == ["hypernet:h:1"]


@pytest.mark.parametrize("tag", ["<lora:>", "<lora::0.5>", "<lora:name:heavy>", "<lyco:x:1:y>", "<lora:te=1>"])
def test_malformed_lora_tag_is_one_line_naming_it(tag):
    with pytest.raises(ValueError) as info:
        extract_networks(f"a cat {tag}")
    assert tag in str(info.value) and "\n" not in str(info.value)


def test_comments():
    assert strip_comments("a cat\n# a comment line\na dog # not this\n#last") == "a cat\n\na dog \n"
    text, nets, _ = extract_networks("a cat\n# <lora:commented:1>\n")
    assert nets == [] and "commented" not in text


# ---------------------------------------------------------------------------------------------------------------
# generated prompts: invariants that must hold for every combination of the syntax's atoms

plain_words = st.text(alphabet="abcxyz ,.!-_'\n", min_size=0, max_size=8).filter(lambda s: "BREAK" not in s)
numbers = st.sampled_from(["1.2", "0.5", ".7", "2", "1.", "0", "1.25"])


@st.composite
def balanced(draw, depth=0):
    """A well-formed attention prompt: text, (x), [x], (x:w), nested."""
    if depth > 3:
        return draw(plain_words)
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 4))
        inner = draw(balanced(depth + 1))
        parts.append(
            [
                draw(plain_words),
                f"({inner})",
                f"[{inner}]",
                f"({inner}:{draw(numbers)})",
                "\\" + draw(st.sampled_from("()[]\\")),
            ][kind]
        )
    return "".join(parts)


def _total(pieces):
    return "".join(t for t, _ in pieces)


def _remerge(pieces):
    out = []
    for t, w in pieces:
        if out and out[-1][1] == w:
            out[-1] = (out[-1][0] + t, w)
        else:
            out.append((t, w))
    return out or [("", 1.0)]


@MANY
@given(balanced())
def test_weight_one_is_no_weight(x):
    assert parse_attention(f"({x}:1)") == parse_attention(x)
    assert parse_attention(f"({x}:1.0)") == parse_attention(x)


def _close(got, expected):
    """Same pieces; weights equal up to float rounding (A1111 multiplies in bracket-closing order)."""
    if _total(expected) == "":
        return got == [("", 1.0)]
    return [t for t, _ in got] == [t for t, _ in expected] and all(
        math.isclose(a, b, rel_tol=1e-12) for (_, a), (_, b) in zip(got, expected)
    )


@MANY
@given(balanced(), numbers)
def test_weights_multiply(x, w):
    inner = [(t, v) for t, v in parse_attention(x) if t]
    assert _close(parse_attention(f"({x}:{w})"), _remerge([(t, v * float(w)) for t, v in inner]))
    assert _close(parse_attention(f"(({x}))"), _remerge([(t, v * 1.1 * 1.1) for t, v in inner]))
    assert _close(parse_attention(f"[{x}]"), _remerge([(t, v / 1.1) for t, v in inner]))


@MANY
@given(balanced())
def test_unbalanced_brackets_apply_to_the_end(x):
    assert parse_attention(f"({x}") == parse_attention(f"({x})")
    assert parse_attention(f"[{x}") == parse_attention(f"[{x}]")


@MANY
@given(st.text(alphabet="ab ()[]\\:", max_size=20))
def test_escaped_text_is_literal(raw):
    escaped = re.sub(r"([()\[\]\\])", r"\\\1", raw)
    assert _total(parse_attention(escaped)) == raw
    assert {w for _, w in parse_attention(escaped)} == {1.0}


@MANY
@given(st.text(alphabet="ab ()[]\\:.0123456789BREAK|<>", max_size=30))
def test_any_text_parses_and_keeps_its_words(raw):
    pieces = parse_attention(raw)
    assert pieces and all(isinstance(t, str) and isinstance(w, float) for t, w in pieces)
    assert all(w > 0 or (t == "BREAK" and w < 0) for t, w in pieces)
    letters = lambda s: re.sub(r"[^a-zA-Z]", "", s)  # noqa: E731
    assert letters(_total(pieces)) == letters(raw)


@MANY
@given(plain_words, plain_words, st.integers(1, 30), st.integers(1, 40))
def test_edit_switches_at_its_step(a, b, when, steps):
    schedule = prompt_schedules(f"x [{a}:{b}:{when}] y", steps)
    if when < steps:
        assert schedule == [(when, f"x {a} y"), (steps, f"x {b} y")]
    else:
        assert schedule == [(steps, f"x {a} y")]


@MANY
@given(plain_words, plain_words, st.floats(0.01, 0.99), st.integers(1, 40))
def test_fraction_counts_steps(a, b, fraction, steps):
    text = f"{fraction:.3f}"
    schedule = prompt_schedules(f"[{a}:{b}:{text}]", steps)
    when = min(steps, int(float(text) * steps))
    assert schedule[-1] == (steps, b if when < steps else a)
    assert schedule[0] == ((when, a) if when >= 1 else (steps, b))


@MANY
@given(st.lists(plain_words, min_size=2, max_size=4), st.integers(1, 20))
def test_alternation_cycles_every_step(options, steps):
    schedule = prompt_schedules("[" + "|".join(options) + "] z", steps)
    assert schedule == [(s, options[(s - 1) % len(options)] + " z") for s in range(1, steps + 1)]


@MANY
@given(st.text(alphabet="ab [](): |\\.5\n", max_size=24), st.integers(1, 12), st.sampled_from([None, 5]))
def test_any_prompt_gives_a_schedule(prompt, steps, hires):
    schedule = prompt_schedules(prompt, steps, hires)
    total = hires or steps
    assert schedule[-1][0] == total
    assert [s for s, _ in schedule] == sorted({s for s, _ in schedule}) and schedule[0][0] >= 1
    if not set(prompt) & set("[]|\\"):  # nothing to edit: the prompt itself
        assert schedule == [(total, prompt)]


@MANY
@given(balanced(), st.integers(1, 12))
def test_emphasis_is_left_to_parse_attention(x, steps):
    assert prompt_schedules(x, steps) == [(steps, x)]


@MANY
@given(st.lists(st.tuples(plain_words, st.sampled_from(["", ":0.5", " :2", ":-1"])), min_size=1, max_size=4))
def test_split_and_round_trip(parts):
    prompt = " AND ".join(t.replace("AND", "") + w for t, w in parts)
    got = split_and(prompt)
    assert len(got) == len(parts)
    for (text, weight), (t, w) in zip(got, parts):
        assert math.isclose(weight, float(w.strip(" :")) if w else 1.0)
        assert text.strip() == (t.replace("AND", "")).strip() or w == ""
