"""Every sampler and schedule name A1111, Forge and SD.Next write is read: split, aliased, or substituted by name."""

import pytest

from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.samplers import (
    ALIASES,
    NOT_A1111,
    SAMPLERS,
    SCHEDULE_SUBSTITUTES,
    SCHEDULES,
    SUBSTITUTES,
    read_sampler,
    read_schedule,
    runs_as,
)
from jupyter_sd.recipe.values import coerce_options

A1111_BEFORE_1_9 = {
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras"),
    "DPM++ SDE Karras": ("DPM++ SDE", "Karras"),
    "DPM++ 2M SDE Karras": ("DPM++ 2M SDE", "Karras"),
    "DPM++ 2M SDE Exponential": ("DPM++ 2M SDE", "Exponential"),
    "DPM++ 2M SDE Heun Karras": ("DPM++ 2M SDE Heun", "Karras"),
    "DPM++ 2M SDE Heun Exponential": ("DPM++ 2M SDE Heun", "Exponential"),
    "DPM++ 3M SDE Karras": ("DPM++ 3M SDE", "Karras"),
    "DPM++ 3M SDE Exponential": ("DPM++ 3M SDE", "Exponential"),
    "DPM++ 2S a Karras": ("DPM++ 2S a", "Karras"),
    "DPM2 Karras": ("DPM2", "Karras"),
    "DPM2 a Karras": ("DPM2 a", "Karras"),
    "LMS Karras": ("LMS", "Karras"),
    "Euler a": ("Euler a", None),
    "DDIM": ("DDIM", None),
}
"""A1111's sampler list before 1.9 (its ``sd_samplers_kdiffusion`` names), schedule carried in the name."""


@pytest.mark.parametrize(("written", "read"), A1111_BEFORE_1_9.items())
def test_old_combined_names_split_as_a1111_1_9_splits_them(written, read):
    assert read_sampler(written) == read


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("k_dpmpp_2m_ka", ("DPM++ 2M", "Karras")),
        ("k_euler_a", ("Euler a", None)),
        ("k_dpm_2_a_ka", ("DPM2 a", "Karras")),
        ("euler a", ("Euler a", None)),
        ("DPM++ 2M  Karras", ("DPM++ 2M", "Karras")),
        ("KDPM2 a", ("DPM2 a", None)),
        ("DPM SDE", ("DPM++ SDE", None)),
        ("Euler a Align Your Steps", ("Euler a", "Align Your Steps")),
        ("Euler b", ("Euler b", None)),  # unknown: validation names it
    ],
)
def test_aliases_and_other_spellings(written, read):
    assert read_sampler(written) == read


def test_every_name_read_is_one_we_run_or_substitute():
    for alias, name in ALIASES.items():
        assert name in SAMPLERS or name in SUBSTITUTES, alias
    assert set(SUBSTITUTES.values()) <= set(SAMPLERS)
    assert set(SCHEDULE_SUBSTITUTES.values()) <= set(SCHEDULES)
    assert not set(SUBSTITUTES) & set(SAMPLERS) and not set(SCHEDULE_SUBSTITUTES) & set(SCHEDULES)


@pytest.mark.parametrize("sampler", [*SAMPLERS, *SUBSTITUTES])
def test_every_sampler_name_is_accepted_and_runs_as_one_of_ours(sampler):
    request = PaintRequest(prompt="x", sampler=sampler).validate()
    ran, schedule, note = runs_as(request.sampler, request.schedule)
    assert ran in SAMPLERS and schedule in SCHEDULES
    assert bool(note) == (sampler in SUBSTITUTES or ran in NOT_A1111)


def test_the_schedule_a_name_carries_wins_and_case_is_read():
    assert coerce_options({"sampler": "DPM++ 2M Karras", "schedule": "Exponential"}) == {
        "sampler": "DPM++ 2M",
        "schedule": "Karras",
    }
    assert coerce_options({"hires_sampler": "LMS Karras"}) == {"hires_sampler": "LMS", "hires_schedule": "Karras"}
    assert read_schedule("sgm uniform") == "SGM Uniform" and read_schedule("KL optimal") == "KL Optimal"


def test_a_substitution_is_named_in_one_line():
    assert runs_as("Restart", "Align Your Steps") == (
        "Heun",
        "Karras",
        "Sampler: Restart → Heun, Schedule type: Align Your Steps → Karras (diffusers has no equivalent; the "
        "picture's data names what ran)",
    )
    assert runs_as("Euler a", "Karras") == ("Euler a", "Karras", "")
    assert runs_as("DPM++ 3M SDE", "Karras")[2] == (
        "Sampler: DPM++ 3M SDE: diffusers' third-order SDE step is not A1111's (same sigmas and noise): the picture "
        "differs"
    )
