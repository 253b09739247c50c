"""Prompt text → text-encoder embeddings, the way AUTOMATIC1111 computes them.

What A1111 does and this module repeats (its ``sd_hijack_clip`` and ``prompt_parser``): the weighted pieces of
:func:`~jupyter_sd.prompts.parse_attention` are tokenized without special tokens and packed into chunks of
``model_max_length - 2`` (75) tokens; ``BREAK`` starts a new chunk; when a chunk fills up, the text after a comma
among its last 20 tokens moves to the next chunk; a textual-inversion embedding's vectors never straddle two
chunks. Each chunk is ``[BOS] + tokens + [EOS]`` padded with the tokenizer's pad token (EOS on SD 1, id 0 on
SD 2), encoded on its own (``Clip skip``: the N-th last layer, then the final layer norm), multiplied by its
tokens' weights and rescaled to its unweighted mean ("Original" emphasis); chunks are concatenated, so prompts are
not cut at 77 tokens. SDXL runs both text encoders (penultimate layers, concatenated) and takes the pooled
embedding from the first chunk.

Prompt editing and alternation swap embeddings between steps (the step callback returns ``prompt_embeds``);
``AND`` and prompt/negative pairs of different lengths run through a UNet wrapper inside diffusers' usual CFG, so
every sampler keeps working. A plain prompt reaches diffusers as the same tensors diffusers computes itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..recipe.prompts import ExtraNetwork, extract_networks, prompt_schedules, split_and
from .ngms import sigma_of, skips_early, skips_negative
from .text_encoding import OPEN_CLIP_WIDTH, Encoding, Schedule, encode_cached, encoders_of


def a1111_steps(pipe: Any, steps: int) -> int:
    """The steps A1111 counts for prompt editing: one per denoiser call, so twice the steps on second-order samplers."""
    return steps * 2 if getattr(pipe.scheduler, "order", 1) == 2 else steps


def build_conditioning(
    pipe: Any,
    prompt: str,
    negative: str,
    steps: int,
    clip_skip: int = 1,
    hires_steps: int | None = None,
    networks_key: Any = (),
    *,
    pad_to_same_length: bool = False,
    emphasis: str = "Original",
) -> Conditioning:
    """Encode a prompt and negative prompt for one denoising pass of `pipe`.

    Call it once per pass (txt2img, img2img, the hires pass), then::

        cond = build_conditioning(pipe, prompt, negative, steps, clip_skip, networks_key=key)
        with cond.applied(pipe):
            pipe(**cond.pipeline_kwargs(), ..., callback_on_step_end=lambda p, i, t, k: cond.on_step(p, i, t, k))

    (inside another step callback, call ``tensors = cond.on_step(pipe, index, timestep, tensors)`` first).

    Parameters
    ----------
    pipe
        A diffusers Stable Diffusion (1.x/2.x) or SDXL pipeline. Other families get the plain text back
        (``pipeline_kwargs()`` holds ``prompt``/``negative_prompt``, with tags and comments removed).
    prompt, negative
        A1111 syntax: emphasis, ``BREAK``, prompt editing, alternation, ``AND`` (positive only), ``<lora:…>``
        tags (taken out here; loading them is ``engine/networks.py``'s job), ``#`` comments.
    steps
        The denoiser evaluations of the pass as A1111 counts them for prompt editing: the request's steps
        (twice that for second-order samplers, as A1111 does). For the hires pass: the first pass's steps.
    clip_skip
        A1111's ``Clip skip`` (1 = the last layer). SDXL ignores it, as A1111 does by default.
    hires_steps
        The hires pass's steps, when encoding for that pass (``when`` values then count on from the first pass).
    networks_key
        Anything hashable naming what changes the text encoder (LoRA, embeddings loaded): part of the cache key.
    pad_to_same_length
        A1111's "pad prompt/negative prompt to be same length": pad the shorter with empty-prompt chunks and run
        one batched UNet call, instead of running the halves separately when their chunk counts differ.
    emphasis
        A1111's emphasis mode: ``Original`` (weights, then the mean rescale), ``No norm`` (weights only),
        ``Ignore`` (weights ignored) or ``None`` (brackets and ``BREAK`` are plain text).

    Returns
    -------
    Conditioning
        The pipeline arguments, the step hook and the UNet wrapper for this pass.

    Raises
    ------
    ValueError
        A malformed ``<lora:…>`` tag or emphasis weight (one line naming it).
    """
    prompt_text, networks, unsupported = extract_networks(prompt)
    negative_text, _, negative_unsupported = extract_networks(negative)
    encoders = encoders_of(pipe)
    if not encoders:
        if networks:  # the tag's gap: Qwen's tokenizers read a left-over space as a token, T5's and CLIP's do not
            prompt_text = " ".join(word for word in prompt_text.split(" ") if word)
        kwargs, stepped = _text_kwargs(pipe, prompt_text, negative_text, emphasis, (steps, hires_steps))
        return Conditioning(
            kwargs=kwargs, flow_steps=stepped, networks=networks, unsupported=unsupported + negative_unsupported
        )
    sdxl = any(e.role.startswith("sdxl") for e in encoders)
    if sdxl or encoders[0].model.config.hidden_size == OPEN_CLIP_WIDTH:
        clip_skip = 1  # A1111 applies Clip skip to SD 1's CLIP only (SDXL and SD 2 keep their penultimate layer)

    how = Encoding(clip_skip, emphasis)

    def encode(text: str) -> Schedule:
        return encode_cached(encoders, prompt_schedules(text, steps, hires_steps), how, networks_key)

    parts = [(weight, encode(text)) for text, weight in split_and(prompt_text)]
    uncond = encode(negative_text)
    if not negative_text and sdxl and pipe.config.get("force_zeros_for_empty_prompt"):
        # SDXL's empty negative prompt is zeros, in diffusers and in A1111
        _, embeds, pooled = parts[0][1].entries[0]
        uncond = Schedule([(uncond.entries[-1][0], _zeros(embeds, embeds.shape[1]), _zeros_like(pooled))])
    if pad_to_same_length:
        empty = encode("").entries[0][1]
        longest = max(s.length for s in [uncond] + [p for _, p in parts])
        uncond = uncond.padded(empty, longest)
        parts = [(w, p.padded(empty, longest)) for w, p in parts]
    return Conditioning(parts=parts, uncond=uncond, networks=networks, unsupported=unsupported + negative_unsupported)


def _text_kwargs(pipe: Any, prompt: str, negative: str, emphasis: str, steps: tuple[int, Any]) -> tuple[dict, Any]:
    """The pipeline's prompt arguments where our CLIP chunks do not apply (the T5 and language-model families).

    Flux's and SD3's weighted embeddings (families/prompt_embeds.py), and their steps' embeddings where prompt
    editing changes them (prompt_steps.py), or their text without the emphasis brackets; the other families' text
    as it is. Returns the arguments and the per-step hook (or None).
    """
    import inspect

    from .families import family_of
    from .families.prompt_embeds import T5_LENGTHS, flow_embeddings, plain_text
    from .families.prompt_steps import step_prompts

    family = family_of(pipe).name
    if family not in T5_LENGTHS or "prompt syntax" in family_of(pipe).lacks:
        return {"prompt": prompt, "negative_prompt": negative or None}, None
    stepped = step_prompts(pipe, family, prompt, negative, emphasis, *steps)
    if stepped is not None:
        return stepped.pipeline_kwargs(inspect.signature(type(pipe).__call__).parameters), stepped
    embeds = flow_embeddings(pipe, family, prompt, negative, emphasis)
    if embeds is not None:
        return embeds, None
    return {"prompt": plain_text(prompt, emphasis), "negative_prompt": plain_text(negative, emphasis) or None}, None


def clear_cache(pipe: Any) -> None:
    """Forget the embeddings cached on `pipe`'s text encoders (e.g. after changing their weights by hand)."""
    for encoder in encoders_of(pipe):
        encoder.cache.clear()


# ---------------------------------------------------------------------------------------------------------------
# the result: what the pipeline is given, and how it changes between steps


@dataclass
class Conditioning:
    """The embeddings of one pass and the hooks that apply them (see :func:`build_conditioning`)."""

    parts: list[tuple[float, Schedule]] = field(default_factory=list)
    """The positive prompt's ``AND`` parts: (weight, schedule)."""
    uncond: Schedule | None = None
    """The negative prompt's schedule."""
    networks: list[ExtraNetwork] = field(default_factory=list)
    """The ``<lora:…>`` tags of the prompt, in order."""
    unsupported: list[str] = field(default_factory=list)
    """Other extra-network tags found (``'hypernet:x:1'``): removed from the text, not applied."""
    kwargs: dict[str, Any] | None = None
    flow_steps: Any = None
    """Flux's and SD3's embeddings per step where prompt editing changes them (families/prompt_steps.py)."""
    step: int = 0
    """The step (from 0) whose embeddings the UNet gets next."""
    negative_guidance_min: tuple[float, bool] = (0.0, False)
    """A1111's NGMS: below this σ, skip the negative half on odd denoiser calls (on every call when True)."""
    skip_early: float = 0.0
    """A1111's Skip Early CFG: the first calls, up to this fraction of the pass's calls, skip the negative half."""
    calls: int = 0
    """Denoiser calls so far in this pipeline call (A1111's CFG denoiser step count, for NGMS and Skip Early CFG)."""
    residuals: Any = None
    """ControlNet units' residuals for each wrapped UNet call (control/replay.py), or None without units."""

    @property
    def needs_wrapper(self) -> bool:
        """Whether the UNet must be wrapped: ``AND``, a part weight other than 1, halves of unequal length, NGMS."""
        if self.kwargs is not None:  # (Flux and SD3: SD3's AND replaces the transformer's forward)
            return self.flow_steps is not None and self.flow_steps.composes
        uneven = len(self.parts) > 1 or self.parts[0][0] != 1.0 or self.parts[0][1].length != self.uncond.length
        return uneven or self.negative_guidance_min[0] > 0 or self.skip_early > 0

    @property
    def is_sdxl(self) -> bool:
        """Whether these are SDXL embeddings (with pooled ones)."""
        return self.kwargs is None and self.parts[0][1].entries[0][2] is not None

    def pipeline_kwargs(self) -> dict[str, Any]:
        """The arguments for the pipeline call: ``prompt_embeds``, ``negative_prompt_embeds`` (and SDXL's pooled)."""
        if self.kwargs is not None:
            return dict(self.kwargs)
        self.step = 0
        embeds, pooled = self.parts[0][1].at(0)
        negative, negative_pooled = self.uncond.at(0)
        if embeds.shape[1] != negative.shape[1]:  # the wrapper replaces both; diffusers wants equal shapes
            negative = _zeros(embeds, embeds.shape[1])
        kwargs = {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
        if pooled is not None:
            kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
        return kwargs

    def on_step(self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        """The step-end hook: move to the next step and, when its text differs, hand diffusers its embeddings."""
        if self.flow_steps is not None:
            self.flow_steps.next_step(index)
        if self.kwargs is not None:
            return tensors
        before = self.step
        self.step = index + 1
        if self.needs_wrapper or not self._changes(before, self.step):
            return tensors
        import torch

        images = tensors["latents"].shape[0] if "latents" in tensors else 1
        embeds, pooled = self.parts[0][1].at(self.step)
        negative, negative_pooled = self.uncond.at(self.step)
        guided = getattr(pipe, "do_classifier_free_guidance", True)
        new = (
            torch.cat([negative.repeat(images, 1, 1), embeds.repeat(images, 1, 1)])
            if guided
            else embeds.repeat(images, 1, 1)
        )
        device = tensors["latents"].device if "latents" in tensors else new.device
        tensors["prompt_embeds"] = new.to(device)
        if pooled is not None:
            tensors["add_text_embeds"] = (
                torch.cat([negative_pooled.repeat(images, 1), pooled.repeat(images, 1)])
                if guided
                else pooled.repeat(images, 1)
            ).to(device)
        return tensors

    def _changes(self, before: int, after: int) -> bool:
        schedules = [self.uncond] + [p for _, p in self.parts]
        return any(s.at(before)[0] is not s.at(after)[0] for s in schedules)

    @contextlib.contextmanager
    def applied(self, pipe: Any) -> Iterator[None]:
        """Install the UNet wrapper for the call when this conditioning needs one (a no-op otherwise)."""
        if self.flow_steps is not None:
            with self.flow_steps.applied(pipe):
                yield
            return
        unet = getattr(pipe, "unet", None)
        if not self.needs_wrapper or unet is None:
            yield
            return
        original = unet.forward
        self.calls = 0
        unet.forward = _UNetWrapper(self, pipe, original)
        try:
            yield
        finally:
            del unet.forward  # the instance attribute goes; the class's forward shows again
            if unet.forward != original:  # someone (an offload hook) had replaced forward before us
                unet.forward = original


class _UNetWrapper:
    """Stands in for ``unet.forward`` during one call, so CFG sees A1111's composable diffusion.

    The negative half gets the negative prompt; the positive half ``uncond + Σ wᵢ·(condᵢ − uncond)`` over the
    ``AND`` parts; each embedding keeps its own length (one UNet call per length).
    """

    def __init__(self, conditioning: Conditioning, pipe: Any, forward: Any) -> None:
        self.conditioning, self.pipe, self.forward = conditioning, pipe, forward

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        cond = self.conditioning
        guided = bool(getattr(self.pipe, "do_classifier_free_guidance", False))
        images = sample.shape[0] // 2 if guided else sample.shape[0]
        latents = sample[images:] if guided else sample
        added = kwargs.pop("added_cond_kwargs", None)
        timestep_cond = kwargs.pop("timestep_cond", None)
        return_dict = kwargs.pop("return_dict", True)

        # every embedding this step needs: the negative first, then each AND part (NGMS: the negative skipped)
        skip = guided and _skips(cond, self.pipe.scheduler, timestep)
        cond.calls += 1
        rows = [cond.uncond.at(cond.step)] + [p.at(cond.step) for _, p in cond.parts]
        outputs: list[Any] = [None] * len(rows)
        by_length: dict[int, list[int]] = {}
        for n, (embeds, _) in enumerate(rows):
            if n or not skip:
                by_length.setdefault(embeds.shape[1], []).append(n)
        for members in by_length.values():  # one UNet call per length: A1111 batches what it can
            hidden = torch.cat([rows[n][0].repeat(images, 1, 1) for n in members])
            hidden = hidden.to(device=sample.device, dtype=encoder_hidden_states.dtype)
            extra = dict(kwargs)
            if added is not None:
                extra["added_cond_kwargs"] = _added(added, rows, members, images, guided)
            if timestep_cond is not None:
                extra["timestep_cond"] = timestep_cond[-images:].repeat(len(members), 1)
            x = latents.repeat(len(members), *([1] * (latents.ndim - 1)))
            t = timestep
            if torch.is_tensor(t) and t.ndim == 1 and t.shape[0] == sample.shape[0] > 1:  # one per row
                t = t[-images:].repeat(len(members))
            if cond.residuals is not None:  # the ControlNet run on this call's rows and text (control/replay.py)
                text_only = {k: v for k, v in extra.get("added_cond_kwargs", {}).items() if k != "image_embeds"}
                negative = images if members[0] == 0 else 0  # (the negative's rows come first)
                extra.update(cond.residuals(x, t, hidden, text_only or None, images, negative))
            out = self.forward(x, t, hidden, *args, return_dict=False, **extra)[0]
            for k, n in enumerate(members):
                outputs[n] = out[k * images : (k + 1) * images]
        uncond = outputs[1] if skip else outputs[0]  # A1111: the positive stands in for the skipped negative
        combined = uncond.clone()
        for (weight, _), out in zip(cond.parts, outputs[1:]):
            combined = combined + weight * (out - uncond)
        result = torch.cat([combined if skip else uncond, combined]) if guided else combined
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=result)
        return (result,)


def _added(added: dict[str, Any], rows: list, members: list[int], images: int, guided: bool) -> dict[str, Any]:
    """A UNet call's ``added_cond_kwargs`` for the rows of `members` (0: the negative, then the ``AND`` parts).

    SDXL's pooled text of each member and its time ids; IP-Adapter's image embeddings (diffusers' ``image_embeds``,
    one tensor per adapter, the negative picture's rows first): the negative's for the negative, the picture's for
    every part, as sd-webui-controlnet gives each row of the batch by its cond/uncond mark.
    """
    import torch

    out = dict(added)

    def pick(tensor: Any, n: int) -> Any:
        return (tensor[:images] if n == 0 else tensor[images:]) if guided else tensor

    if added.get("text_embeds") is not None:
        pooled = torch.cat([rows[n][1].repeat(images, 1) for n in members])
        out["text_embeds"] = pooled.to(device=added["text_embeds"].device, dtype=added["text_embeds"].dtype)
        out["time_ids"] = torch.cat([pick(added["time_ids"], n) for n in members])
    if added.get("image_embeds") is not None:
        out["image_embeds"] = [torch.cat([pick(e, n) for n in members]) for e in added["image_embeds"]]
    return out


def _skips(cond: Conditioning, scheduler: Any, timestep: Any) -> bool:
    """Whether this call skips the negative half (Skip Early CFG first, then NGMS, as A1111 decides)."""
    total = len(scheduler.timesteps) - (getattr(scheduler, "begin_index", None) or 0)  # this pass's model calls
    if skips_early(cond.calls, total, cond.skip_early):
        return True
    minimum, all_steps = cond.negative_guidance_min
    return skips_negative(cond.calls, sigma_of(scheduler, timestep), minimum, all_steps)


def _zeros(like: Any, length: int) -> Any:
    import torch

    return torch.zeros(like.shape[0], length, like.shape[2], dtype=like.dtype, device=like.device)


def _zeros_like(like: Any) -> Any:
    import torch

    return None if like is None else torch.zeros_like(like)
