"""Prompt editing and alternation on Flux, SD3 and Chroma: each step's embeddings swapped into the transformer's call.

A1111's ``[from:to:when]`` and ``[a|b]`` give a prompt one text per step (``prompt_schedules``); each text is
encoded as `prompt_embeds` encodes it (its weights applied), and a forward pre-hook on the transformer hands it the
step's embeddings. Flux and Chroma call the transformer for the prompt, then (real CFG) for the negative prompt,
each step; SD3 calls it once with ``[negative, prompt]`` stacked. Their ``txt_ids`` follow the text's length
(``BREAK``), and so does Chroma's attention mask (its text's mask, then the picture's tokens).
A ControlNet keeps the first step's text (its own call is not hooked). ``AND`` (SD3, Chroma: their real CFG) runs
every part and the negative through the transformer, combined as A1111's composable diffusion: SD3's in one batched
call, Chroma's in the prompt's call (the negative's call then returns the negative's prediction it made). On SD3 an
IP-Adapter's image embeddings (in the call's ``joint_attention_kwargs``) follow the rows: the negative picture's for
the negative, the picture's for every part; a ControlNet's block samples are made again for the rows, each with its
own text (control/replay.py). One weighted part (``a cat :0.5``) is composed as ``AND`` is, as A1111 does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ...recipe.prompt_editing import prompt_schedules
from ...recipe.prompts import split_and
from .prompt_embeds import AND_AS_TEXT, ENCODERS, SECOND, sd3_embeds, token_chunks

Entries = list[tuple[int, tuple[Any, Any]]]
"""``(last step, (embeds [1, T, D], pooled [1, P] or Chroma's mask [1, T]))`` in step order, as A1111 lists them."""


def _at(entries: Entries, step: int) -> tuple[Any, Any]:
    """The embeddings for a step (from 0): the first entry whose end is not before it, as A1111 picks."""
    return next((value for end, value in entries if step <= end), entries[-1][1])


class StepPrompts:
    """A Flux, SD3 or Chroma prompt and negative over the steps, and the transformer hook that applies them."""

    def __init__(self, family: str, parts: list[tuple[float, Entries]], negative: Entries | None) -> None:
        self.family, self.parts, self.negative = family, parts, negative
        self.positive = parts[0][1]
        self.step = 0
        """The step (from 0) being denoised: the step-end callback moves it on."""
        self.calls = 0
        """Transformer calls in this step (Flux: the prompt's first, then the negative's)."""
        self.pipe: Any = None
        self.uncond: Any = None
        """Chroma's ``AND``: the negative's prediction of this step, made in the prompt's call."""
        self.controlnet: Any = None
        """SD3's ``AND`` with ControlNet units: the block samples of the call's rows (control/replay.py)."""

    @property
    def composes(self) -> bool:
        """Whether the call is composable diffusion: ``AND``, or one part weighted (``a cat :0.5``), as A1111."""
        return len(self.parts) > 1 or self.parts[0][0] != 1.0

    def pipeline_kwargs(self, takes: Any) -> dict[str, Any]:
        """The first step's embeddings as the pipeline call's arguments (those `takes` lists)."""
        embeds, second = _at(self.positive, 0)
        kwargs = {"prompt_embeds": embeds, SECOND[self.family]: second}
        if self.negative is not None:
            negative, negative_second = _at(self.negative, 0)
            kwargs.update({"negative_prompt_embeds": negative, f"negative_{SECOND[self.family]}": negative_second})
        return {name: value for name, value in kwargs.items() if name in takes}

    def next_step(self, index: int) -> None:
        """The step-end callback's news: step `index` is done."""
        self.step, self.calls, self.uncond = index + 1, 0, None

    @contextlib.contextmanager
    def applied(self, pipe: Any) -> Iterator[None]:
        """The transformer's pre-hook for one pipeline call."""
        self.step, self.calls, self.pipe, self.uncond = 0, 0, pipe, None
        if self.composes:
            with composed(self, pipe.transformer, _sd3_and if self.family == "SD3" else _chroma_and):
                yield
            return
        hook = pipe.transformer.register_forward_pre_hook(self._swap, with_kwargs=True)
        try:
            yield
        finally:
            hook.remove()

    def _swap(self, module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import torch

        hidden = kwargs.get("encoder_hidden_states")
        if hidden is None:
            return args, kwargs
        images = hidden.shape[0]
        if self.family != "SD3":  # one call for the prompt, one for the negative
            entries = self.positive if self.calls == 0 or self.negative is None else self.negative
            embeds, pooled = _at(entries, self.step)
            embeds, pooled = embeds.repeat(images, 1, 1), pooled.repeat(images, 1)
            if kwargs.get("txt_ids") is not None:
                kwargs["txt_ids"] = torch.zeros(embeds.shape[1], 3).to(kwargs["txt_ids"])
        else:
            embeds, pooled = _at(self.positive, self.step)
            if self.negative is not None and getattr(self.pipe, "do_classifier_free_guidance", False):
                negative, negative_pooled = _at(self.negative, self.step)
                half = images // 2  # CFG: [negative, prompt]
                embeds = torch.cat([negative.repeat(half, 1, 1), embeds.repeat(half, 1, 1)])
                pooled = torch.cat([negative_pooled.repeat(half, 1), pooled.repeat(half, 1)])
            else:
                embeds, pooled = embeds.repeat(images, 1, 1), pooled.repeat(images, 1)
        self.calls += 1
        if kwargs.get("attention_mask") is not None:  # Chroma: the text's mask, then the picture's tokens
            picture = torch.ones(images, kwargs["hidden_states"].shape[1]).to(kwargs["attention_mask"])
            kwargs["attention_mask"] = torch.cat([pooled.to(picture), picture], dim=1)
            pooled = None
        kwargs["encoder_hidden_states"] = embeds.to(hidden)
        if kwargs.get("pooled_projections") is not None:
            kwargs["pooled_projections"] = pooled.to(kwargs["pooled_projections"])
        return args, kwargs


def step_prompts(
    pipe: Any, family: str, prompt: str, negative: str, emphasis: str, steps: int, hires_steps: int | None
) -> StepPrompts | None:
    """The prompt's and negative's embeddings per step, or None when neither changes between steps."""
    parts = [(prompt, 1.0)] if family in AND_AS_TEXT else split_and(prompt)  # AND: SD3's, Chroma's CFG
    schedules = [prompt_schedules(text, steps, hires_steps) for text in [negative] + [t for t, _ in parts]]
    if len(parts) == 1 and parts[0][1] == 1.0 and all(len(schedule) == 1 for schedule in schedules):
        return None
    import torch

    texts = {text for schedule in schedules for _, text in schedule}
    with torch.no_grad():
        if family in ENCODERS:  # Flux, Chroma: the halves are called apart
            encoded = {text: ENCODERS[family](pipe, text, emphasis) for text in texts}
        else:  # one length for all: SD3's CFG stacks the halves
            clip = max(len(token_chunks(pipe.tokenizer, t, emphasis)) for t in texts)
            t5 = max(len(token_chunks(pipe.tokenizer_3, t, emphasis)) for t in texts)
            encoded = {text: sd3_embeds(pipe, text, emphasis, (clip, t5)) for text in texts}
    negative_entries, *positive = ([(end, encoded[text]) for end, text in schedule] for schedule in schedules)
    keep_negative = bool(negative) or family != "Flux"  # Flux runs CFG only with a negative prompt
    weighted_parts = [(weight, entries) for (_, weight), entries in zip(parts, positive)]
    return StepPrompts(family, weighted_parts, negative_entries if keep_negative else None)


@contextlib.contextmanager
def composed(prompts: StepPrompts, transformer: Any, combine: Any) -> Iterator[None]:
    """``AND`` for one call: the transformer's forward replaced by `combine` (`_sd3_and`, `_chroma_and`).

    The parts are combined as A1111's composable diffusion, ``uncond + Σ wᵢ·(condᵢ − uncond)``, as the prompt's
    prediction: the pipeline's CFG then makes ``uncond + g·Σ wᵢ·(condᵢ − uncond)``, A1111's.
    """
    original = transformer.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        return_dict = kwargs.pop("return_dict", True)
        result = combine(prompts, original, args, kwargs)
        if return_dict:
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=result)
        return (result,)

    transformer.forward = forward
    try:
        yield
    finally:
        del transformer.forward  # the class's forward shows again
        if transformer.forward != original:  # an offload hook had replaced forward before us
            transformer.forward = original


def _image_rows(joint: dict[str, Any], images: int, rows: int, guided: bool) -> dict[str, Any]:
    """An IP-Adapter's image embeddings for the composed call: the negative's rows, then the picture's for each part.

    The pipeline gives ``[negative picture, picture]`` (CFG) or the picture alone (then the negative row gets
    zeros, diffusers' negative when no negative picture is given), as sd-webui-controlnet gives each row by its
    cond/uncond mark.
    """
    import torch

    embeds = joint["ip_adapter_image_embeds"]
    rows_given = int(embeds.shape[0]) // (2 * images if guided else images)  # SD3's units: a row each per picture
    picture = embeds[-images * rows_given :]
    negative = embeds[: images * rows_given] if guided else torch.zeros_like(picture)
    return {**joint, "ip_adapter_image_embeds": torch.cat([negative] + [picture] * (rows - 1))}


def _combined(prompts: StepPrompts, uncond: Any, conds: Any) -> Any:
    """A1111's composable diffusion: ``uncond + Σ wᵢ·(condᵢ − uncond)``."""
    combined = uncond.clone()
    for (weight, _), cond in zip(prompts.parts, conds):
        combined = combined + weight * (cond - uncond)
    return combined


def _rows(prompts: StepPrompts) -> list[tuple[Any, Any]]:
    """The current step's embeddings of the negative, then of each part."""
    return [_at(prompts.negative, prompts.step)] + [_at(entries, prompts.step) for _, entries in prompts.parts]


def _sd3_and(prompts: StepPrompts, original: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """SD3: one batched call of the negative and every part; ``[uncond, combined]`` for its CFG's halves."""
    import torch

    guided = bool(getattr(prompts.pipe, "do_classifier_free_guidance", False))
    latents, timestep = kwargs["hidden_states"], kwargs["timestep"]
    images = latents.shape[0] // 2 if guided else latents.shape[0]
    rows = _rows(prompts)
    hidden = kwargs["encoder_hidden_states"]
    kwargs["encoder_hidden_states"] = torch.cat([e.repeat(images, 1, 1) for e, _ in rows]).to(hidden)
    pooled = kwargs["pooled_projections"]
    kwargs["pooled_projections"] = torch.cat([p.repeat(images, 1) for _, p in rows]).to(pooled)
    kwargs["hidden_states"] = latents[-images:].repeat(len(rows), 1, 1, 1)
    kwargs["timestep"] = timestep[-images:].repeat(len(rows))
    if (kwargs.get("joint_attention_kwargs") or {}).get("ip_adapter_image_embeds") is not None:
        kwargs["joint_attention_kwargs"] = _image_rows(kwargs["joint_attention_kwargs"], images, len(rows), guided)
    if kwargs.get("block_controlnet_hidden_states") is not None and prompts.controlnet is not None:
        kwargs["block_controlnet_hidden_states"] = prompts.controlnet(kwargs, images)  # each row its own text
    out = original(*args, return_dict=False, **kwargs)[0].chunk(len(rows))
    combined = _combined(prompts, out[0], out[1:])
    return torch.cat([out[0], combined]) if guided else combined


def _chroma_and(prompts: StepPrompts, original: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Chroma: the prompt's call runs the negative and every part; the negative's call gets the negative's.

    The prompt's call (a step's first) returns the parts combined; CFG's second call, the negative's, returns the
    negative's prediction made in the first. Rows of one text length run in one batch, each with its ``txt_ids``
    and its mask (the text's, then the picture's tokens, as Chroma's pipeline builds it).
    """
    import torch

    prompts.calls += 1
    if prompts.calls > 1 and prompts.uncond is not None:
        return prompts.uncond
    latents = kwargs["hidden_states"]
    images, rows = latents.shape[0], _rows(prompts)
    groups: dict[int, list[int]] = {}
    for index, (embeds, _) in enumerate(rows):
        groups.setdefault(embeds.shape[1], []).append(index)
    out: list[Any] = [None] * len(rows)
    for length, members in groups.items():
        call = {**kwargs, "hidden_states": latents.repeat(len(members), 1, 1)}
        call["timestep"] = kwargs["timestep"].repeat(len(members))
        call["encoder_hidden_states"] = torch.cat([rows[i][0].repeat(images, 1, 1) for i in members]).to(latents)
        if kwargs.get("txt_ids") is not None:
            call["txt_ids"] = torch.zeros(length, 3).to(kwargs["txt_ids"])
        if kwargs.get("attention_mask") is not None:
            text = torch.cat([rows[i][1].repeat(images, 1) for i in members])
            picture = torch.ones(text.shape[0], latents.shape[1], dtype=text.dtype, device=text.device)
            call["attention_mask"] = torch.cat([text, picture], dim=1).to(kwargs["attention_mask"])
        for member, chunk in zip(members, original(*args, return_dict=False, **call)[0].chunk(len(members))):
            out[member] = chunk
    prompts.uncond = out[0]
    return _combined(prompts, out[0], out[1:])
