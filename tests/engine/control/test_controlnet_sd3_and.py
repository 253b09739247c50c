"""``AND`` prompts with an SD3 ControlNet unit: every row of SD3's batched call gets the ControlNet of its own text.

sd-webui-controlnet runs the ControlNet on each UNet call's own batch and context, so each row's residuals come from
that row's text. The reference is composable diffusion by hand over diffusers' ``StableDiffusion3ControlNetPipeline``:
its transformer's forward replaced by raw calls, one per text (the negative, then each part), each given the block
samples of the raw ControlNet called on that text (the pipeline's map latents and scale), and the positive
``u + Σ wᵢ·(cᵢ − u)``, A1111's composable diffusion.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from helpers.paint_modes import generators
from helpers.paint_modes import square_outline as edges
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_sd3
from helpers.tiny_flow_controlnet import tiny_sd3_controlnet

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

AND_PROMPT = "a red circle AND a blue square :0.6"
UNIT = {"module": "none", "model": "sd3_cn", "weight": 0.7}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd3-cn-and")
    sd3 = make_tiny_sd3(root / "sd3", layers=2)
    net = tiny_sd3_controlnet(seed=5)
    with torch.no_grad():  # the text's keys and values louder: each row's text visibly changes its residuals
        for name, param in net.named_parameters():
            if ".add_k_proj." in name or ".add_v_proj." in name:
                param.mul_(10)
    net.save_pretrained(root / "models" / "ControlNet" / "sd3_cn")
    before = library.models_dir()
    library.set_models_dir(root / "models")
    yield {"root": root, "sd3": sd3}
    library.set_models_dir(before)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def paint(engine, models, prompt, units):
    request = PaintRequest(prompt=prompt, negative_prompt="dog", model=str(models["sd3"]), steps=4, seed=5,
                           width=32, height=32, rng="cpu", guidance=4.0, preview="none", save=False,
                           controlnet=read_units(units))  # fmt: skip
    return engine.generate(request, pictures=Pictures(control=tuple(edges() for _ in units))).images[0]


def reference(models, texts, weights):
    """Composable diffusion by hand: per text, the raw ControlNet on that text, then the raw transformer."""
    from diffusers import SD3ControlNetModel, StableDiffusion3ControlNetPipeline, StableDiffusion3Pipeline

    base = StableDiffusion3Pipeline.from_pretrained(models["sd3"])
    takes = inspect.signature(StableDiffusion3ControlNetPipeline.__init__).parameters
    net = SD3ControlNetModel.from_pretrained(models["root"] / "models" / "ControlNet" / "sd3_cn")
    pipe = StableDiffusion3ControlNetPipeline(
        **{k: v for k, v in base.components.items() if k in takes}, controlnet=net
    )
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        rows = [pipe.encode_prompt(text, None, None, negative_prompt="dog") for text in texts]
    rows = [(rows[0][1], rows[0][3])] + [(e, p) for e, _, p, _ in rows]  # the negative, then each part
    seen = {}
    net.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)  # the map and scale given
    forward, control = pipe.transformer.forward, net.forward

    def composable(hidden_states, timestep, encoder_hidden_states, pooled_projections, **kwargs):
        kwargs.pop("return_dict", None)
        kwargs.pop("block_controlnet_hidden_states")  # (the pipeline's: made for the CFG halves)
        x, t = hidden_states[1:], timestep[1:]  # the prompt's half of CFG (the halves' latents are equal)
        outputs = []
        for e, p in rows:
            pooled = torch.zeros_like(p) if net.config.force_zeros_for_pooled_projection else p
            samples = control(hidden_states=x, timestep=t, encoder_hidden_states=e, pooled_projections=pooled,
                              controlnet_cond=seen["controlnet_cond"][-1:],
                              conditioning_scale=seen["conditioning_scale"], return_dict=False)[0]  # fmt: skip
            outputs.append(forward(hidden_states=x, timestep=t, encoder_hidden_states=e, pooled_projections=p,
                                   block_controlnet_hidden_states=samples, return_dict=False, **kwargs)[0])  # fmt: skip
        u = outputs[0]
        return (torch.cat([u, u + sum(w * (c - u) for w, c in zip(weights, outputs[1:]))]),)

    pipe.transformer.forward = composable
    torch.manual_seed(5)  # diffusers samples the map's latents from torch's generator: the engine seeds it so
    (first, first_pooled), (negative, negative_pooled) = rows[1], rows[0]
    return pipe(prompt_embeds=first, pooled_prompt_embeds=first_pooled, negative_prompt_embeds=negative,
                negative_pooled_prompt_embeds=negative_pooled, control_image=edges(),
                controlnet_conditioning_scale=UNIT["weight"], width=32, height=32, num_inference_steps=4,
                guidance_scale=4.0, generator=generators([5])).images[0]  # fmt: skip


def test_and_prompts_run_the_sd3_controlnet_on_every_rows_text(engine, models):
    expected = reference(models, ["a red circle", "a blue square"], [1.0, 0.6])
    result = paint(engine, models, AND_PROMPT, [UNIT])
    assert_pixels_close(result, expected)
    plain = paint(engine, models, AND_PROMPT, [])
    assert np.abs(pixels(plain) - pixels(expected)).max() > 5  # the ControlNet changes the AND picture
    first = paint(engine, models, "a red circle", [UNIT])
    assert np.abs(pixels(first) - pixels(expected)).max() > 2  # and the second part counts


def test_one_weighted_part_with_an_sd3_controlnet_is_weighted(engine, models):
    """``a red circle :0.5`` alone: A1111's one-part composable diffusion, ``u + 0.5·(c − u)`` before CFG."""
    expected = reference(models, ["a red circle"], [0.5])
    assert_pixels_close(paint(engine, models, "a red circle :0.5", [UNIT]), expected)
    unweighted = paint(engine, models, "a red circle", [UNIT])
    assert np.abs(pixels(unweighted) - pixels(expected)).max() > 2  # the weight changes the picture
