"""A1111 sampler and schedule names, and the diffusers scheduler each one names (as data, no diffusers here).

The table is data (STYLE P8): each name users know from AUTOMATIC1111 points at a diffusers scheduler class and
the config overrides that make it behave like that sampler. Classes are named as strings so that importing this
module (and validating a request) never imports torch or diffusers; `engine.schedulers` builds them.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SamplerSpec(NamedTuple):
    """One A1111 sampler: the diffusers class that implements it and its config overrides."""

    scheduler: str
    overrides: dict[str, Any]
    automatic: str = "Automatic"
    """The schedule type A1111 uses for this sampler when the user picks "Automatic"."""


SAMPLERS: dict[str, SamplerSpec] = {
    "DPM++ 2M": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "Karras"
    ),
    "DPM++ 2M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, "Exponential"
    ),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler", {}, "Karras"),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler", {}),
    "Euler": SamplerSpec("EulerDiscreteScheduler", {}),
    "LMS": SamplerSpec("LMSDiscreteScheduler", {}),
    "Heun": SamplerSpec("HeunDiscreteScheduler", {}),
    "DPM2": SamplerSpec("KDPM2DiscreteScheduler", {}, "Karras"),
    "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler", {}, "Karras"),
    "DDIM": SamplerSpec("DDIMScheduler", {"set_alpha_to_one": False, "clip_sample": False}),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "DPM++ 2M SDE Heun": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"},
        "Exponential",
    ),
    "DPM++ 3M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, "Exponential"
    ),
    "UniPC": SamplerSpec("UniPCMultistepScheduler", {}),
    "DEIS": SamplerSpec("DEISMultistepScheduler", {}),
    "LCM": SamplerSpec("LCMScheduler", {}),
    "TCD": SamplerSpec("TCDScheduler", {}),
    "DDPM": SamplerSpec("DDPMScheduler", {}),
}

ENSD_SAMPLERS = ("Euler a", "DPM2 a")
"""The samplers A1111's Eta noise seed delta acts on ("uses_ensd" in its sampler table): their step noise comes
from the image's generator. The SDE samplers take theirs from a Brownian tree seeded by the seed alone."""

SCHEDULES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Uniform": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
    "Normal": {"timestep_spacing": "linspace"},
    "DDIM": {"timestep_spacing": "leading"},
    "Beta": {"use_beta_sigmas": True},
}
"""Schedule types: each adds these overrides to the sampler's config. Uniform and Normal step evenly through the
model's own noise levels (k-diffusion's ``get_sigmas``); Simple takes every n-th level from the top, as Forge and
ComfyUI do (diffusers' trailing spacing); DDIM is the leading spacing of the DDIM paper."""

SUBSTITUTES: dict[str, str] = {
    "DPM++ 2S a": "DPM2 a",
    "DPM fast": "DPM++ 2M",
    "DPM adaptive": "DPM++ 2M",
    "Restart": "Heun",
    "DDIM CFG++": "DDIM",
    "Euler CFG++": "Euler",
    "Euler a CFG++": "Euler a",
    "DPM++ 2M CFG++": "DPM++ 2M",
    "DPM++ 2S a CFG++": "DPM2 a",
    "DPM++ SDE CFG++": "DPM++ SDE",
    "Euler A2": "Euler a",
    "Euler SGM": "Euler",
    "Euler EDM": "Euler",
    "DPM++ 2M EDM": "DPM++ 2M",
    "DPM++ 1S": "DPM++ 2M",
    "DPM++ 3M": "DPM++ 2M",
    "DPM++ Cosine": "DPM++ 2M",
    "SA Solver": "DPM++ 2M SDE",
    "[Forge] Flux Realistic": "Euler",
    "[Forge] Flux Realistic (Slow)": "Euler",
    "Default": "DPM++ 2M",
}
"""Samplers A1111, Forge and SD.Next write that diffusers has no scheduler for → the closest one we run. They are
accepted wherever a sampler is; the engine paints with the substitute, says so in one line, and the picture's
infotext names what really ran."""

NOT_A1111: dict[str, str] = {
    "DPM++ 3M SDE": "diffusers' third-order SDE step is not A1111's (same sigmas and noise): the picture differs",
}
"""Samplers we run under A1111's name whose pictures are not A1111's (its k-diffusion parity test marks them)."""

SCHEDULE_SUBSTITUTES: dict[str, str] = {
    "Polyexponential": "Exponential",
    "KL Optimal": "Karras",
    "Align Your Steps": "Karras",
    "Align Your Steps GITS": "Karras",
    "Align Your Steps 11": "Karras",
    "Align Your Steps 32": "Karras",
    "Turbo": "SGM Uniform",
}
"""Schedule types with no diffusers equivalent → the closest one (named in one line, as for samplers)."""

ALIASES: dict[str, str] = {
    "k_euler_a": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "k_dpmpp_2s_a": "DPM++ 2S a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "k_dpmpp_3m_sde": "DPM++ 3M SDE",
    "k_dpm_fast": "DPM fast",
    "k_dpm_ad": "DPM adaptive",
    "restart": "Restart",
    "ddim": "DDIM",
    "plms": "PLMS",
    "unipc": "UniPC",
    "lcm": "LCM",
    "DPM SDE": "DPM++ SDE",
    "KDPM2": "DPM2",
    "KDPM2 a": "DPM2 a",
    "PNDM": "PLMS",
    "Euler Ancestral": "Euler a",
    "Euler A": "Euler a",
}
"""Other spellings of the same samplers: A1111's own aliases (``k_dpmpp_2m``, …) and SD.Next's names."""

_KARRAS_SUFFIX = "_ka"


def read_sampler(text: str) -> tuple[str, str | None]:
    """A sampler name as written anywhere → (sampler, schedule type it carried or None).

    Reads A1111's names before 1.9, which carried the schedule (``DPM++ 2M Karras``, ``LMS Karras``,
    ``DPM++ 2M SDE Exponential``; aliases ``k_dpmpp_2m_ka``), the way A1111 1.9+ splits them; other spellings
    become the name A1111 writes. An unknown name comes back unchanged (validation names it).
    """
    name = " ".join(str(text).split())
    schedule = None
    if name.lower().endswith(_KARRAS_SUFFIX) and name[: -len(_KARRAS_SUFFIX)].lower() in _LOWER_ALIASES:
        name, schedule = name[: -len(_KARRAS_SUFFIX)], "Karras"
    for label in sorted((*SCHEDULES, *SCHEDULE_SUBSTITUTES), key=len, reverse=True):
        head = name[: -len(label)].rstrip()
        if label != "Automatic" and name.endswith(" " + label) and _known_sampler(head):
            name, schedule = head, label
            break
    return _canonical(name), schedule


def read_schedule(text: str) -> str:
    """A schedule type as written anywhere (any case, ``karras``) → its name, unchanged when unknown."""
    name = " ".join(str(text).split())
    for known in (*SCHEDULES, *SCHEDULE_SUBSTITUTES):
        if known.lower() == name.lower():
            return known
    return name


def runs_as(sampler: str, schedule: str) -> tuple[str, str, str]:
    """The sampler and schedule type that really paint a requested pair, and a line naming any substitution."""
    ran, ran_schedule = SUBSTITUTES.get(sampler, sampler), SCHEDULE_SUBSTITUTES.get(schedule, schedule)
    changed = [
        f"{key}: {asked} → {got}"
        for key, asked, got in (("Sampler", sampler, ran), ("Schedule type", schedule, ran_schedule))
        if asked != got
    ]
    note = f"{', '.join(changed)} (diffusers has no equivalent; the picture's data names what ran)" if changed else ""
    if ran in NOT_A1111:
        note = "; ".join(filter(None, [note, f"Sampler: {ran}: {NOT_A1111[ran]}"]))
    return ran, ran_schedule, note


def _canonical(name: str) -> str:
    for known in (*SAMPLERS, *SUBSTITUTES):
        if known.lower() == name.lower():
            return known
    return ALIASES.get(name) or _LOWER_ALIASES.get(name.lower(), name)


def _known_sampler(name: str) -> bool:
    canonical = _canonical(name)
    return canonical in SAMPLERS or canonical in SUBSTITUTES


_LOWER_ALIASES = {alias.lower(): name for alias, name in ALIASES.items()}


def resolve_schedule(sampler: str, schedule: str) -> str:
    """Return the concrete schedule type, turning "Automatic" into the sampler's own default."""
    return SAMPLERS[sampler].automatic if schedule == "Automatic" else schedule
