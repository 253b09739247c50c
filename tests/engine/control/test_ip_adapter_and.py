"""``AND`` prompts with IP-Adapter units: every part's UNet call sees the unit's picture, the negative the negative's.

The reference is composable diffusion by hand over diffusers' own pipeline with ``load_ip_adapter`` of the same file:
its UNet's forward replaced by raw UNet calls, one per text (the negative, then each ``AND`` part), each given the
image embeddings of its rows (diffusers' ``image_embeds``: the negative picture's rows, then the picture's), and the
positive ``u + Σ wᵢ·(cᵢ − u)``, as sd-webui-controlnet's IP-Adapter gives each row by its cond/uncond mark.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from helpers.tiny_ip_adapter import reference_picture, save_adapter, tiny_adapter_state, tiny_image_encoder

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

AND_PROMPT = "a red circle AND a blue square :0.6"
STEPS = 4


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    """A models folder with one tiny adapter and h94's ``image_encoder/`` in ``ipadapter/``; the raw pipeline."""
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("ipa-and") / "models"
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    tiny_image_encoder().save_pretrained(str(root / "ipadapter" / "image_encoder"))
    file = save_adapter(tiny_adapter_state(raw.unet, 24, seed=1), root / "ipadapter" / "ip-adapter_tiny.safetensors")
    save_folder(tiny_controlnet(raw.unet, seed=3), root / "ControlNet" / "cn_and")
    before = library.models_dir()
    library.set_models_dir(root)
    yield {"root": root, "raw": raw, "file": file}
    library.set_models_dir(before)


def composed_reference(raw, file, picture, scale, net=None, hint=None, weight=0.8):
    """Composable diffusion by hand over diffusers' pipeline of `raw` with the adapter `file` at `scale` (seed 1);
    with `net` each call also gets the ControlNet's residuals of its own text (`hint` at `weight`)."""
    pipe = type(raw)(**raw.components)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(file.parent), subfolder="", weight_name=file.name)
    pipe.set_ip_adapter_scale(scale)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    cond = build_conditioning(raw, AND_PROMPT, "", STEPS)
    texts = [cond.uncond.at(0)] + [part.at(0) for _, part in cond.parts]  # (embeds, SDXL's pooled or None)
    weights = [w for w, _ in cond.parts]
    forward = pipe.unet.forward

    def composed(sample, t, encoder_hidden_states, added_cond_kwargs=None, **kwargs):
        x, outputs = sample[1:], []
        for n, (text, pooled) in enumerate(texts):
            rows = slice(0, 1) if n == 0 else slice(1, 2)  # the negative's row (picture, time ids), or the positive's
            added = {"image_embeds": [e[rows] for e in added_cond_kwargs["image_embeds"]]}
            if pooled is not None:
                added.update(text_embeds=pooled, time_ids=added_cond_kwargs["time_ids"][rows])
            residuals = {}
            if net is not None:
                down, mid = net(x, t, encoder_hidden_states=text, controlnet_cond=hint, conditioning_scale=weight,
                                return_dict=False)  # fmt: skip
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            outputs.append(forward(x, t, text, added_cond_kwargs=added, return_dict=False, **residuals)[0])
        combined = outputs[0] + sum(w * (out - outputs[0]) for w, out in zip(weights, outputs[1:]))
        return (torch.cat([outputs[0], combined]),)

    embeddings = {"prompt_embeds": texts[1][0], "negative_prompt_embeds": texts[0][0]}
    if texts[0][1] is not None:
        embeddings.update(pooled_prompt_embeds=texts[1][1], negative_pooled_prompt_embeds=texts[0][1])
    pipe.unet.forward = composed
    try:
        return pipe(**embeddings, num_inference_steps=STEPS, guidance_scale=7.0, generator=generators([1]),
                    width=16, height=16, ip_adapter_image=picture).images[0]  # fmt: skip
    finally:
        del pipe.unet.forward
        pipe.unload_ip_adapter()


def request(model, units):
    return PaintRequest(
        prompt=AND_PROMPT, model=str(model), steps=STEPS, seed=1, width=16, height=16, rng="cpu",
        sampler="DPM++ 2M", preview="none", save=False, controlnet=read_units(units),
    )  # fmt: skip


def test_and_prompts_give_every_part_the_units_picture(models, tiny_model_dir):
    picture = reference_picture()
    engine = Engine()
    units = [{"module": "ip-adapter_clip_sd15", "model": "ip-adapter_tiny", "weight": 0.7}]
    result = engine.generate(request(tiny_model_dir, units), pictures=Pictures(control=(picture,)))
    expected = composed_reference(models["raw"], models["file"], picture, 0.7)
    assert_pixels_close(result.images[0], expected)
    plain = composed_reference(models["raw"], models["file"], picture, 0.0)
    assert np.abs(pixels(plain) - pixels(expected)).max() > 5  # the adapter changes the picture: the test can fail


def test_and_prompts_with_an_ip_adapter_beside_a_controlnet_unit(models, tiny_model_dir):
    from diffusers import ControlNetModel

    picture, hint = reference_picture(), reference_picture(16, seed=3)
    units = [
        {"module": "ip-adapter_clip_sd15", "model": "ip-adapter_tiny", "weight": 0.7},
        {"module": "none", "model": "cn_and", "weight": 0.8},
    ]
    result = Engine().generate(request(tiny_model_dir, units), pictures=Pictures(control=(picture, hint)))
    net = ControlNetModel.from_pretrained(models["root"] / "ControlNet" / "cn_and")
    hint_tensor = torch.from_numpy(np.asarray(hint, np.float32) / 255).permute(2, 0, 1)[None]
    expected = composed_reference(models["raw"], models["file"], picture, 0.7, net, hint_tensor)
    assert_pixels_close(result.images[0], expected)
    adapter_only = composed_reference(models["raw"], models["file"], picture, 0.7)
    assert np.abs(pixels(adapter_only) - pixels(expected)).max() > 5  # the ControlNet unit counts too


def test_and_prompts_with_an_ip_adapter_on_sdxl(tmp_path):
    """SDXL: each part's call also gets its own pooled text and the positive's time ids."""
    from diffusers import StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    tiny_image_encoder(projection=20).save_pretrained(str(tmp_path / "xl" / "image_encoder"))
    file = save_adapter(tiny_adapter_state(raw.unet, 20, seed=3), tmp_path / "xl" / "ip-adapter_xl.safetensors")
    picture = reference_picture(seed=5)
    units = [{"module": "ip-adapter_clip_sdxl", "model": str(file), "weight": 0.9}]
    result = Engine().generate(request(model, units), pictures=Pictures(control=(picture,)))
    expected = composed_reference(raw, file, picture, 0.9)
    assert_pixels_close(result.images[0], expected)
    plain = composed_reference(raw, file, picture, 0.0)
    assert np.abs(pixels(plain) - pixels(expected)).max() > 5
