"""SD3.5 IP-Adapter units (InstantX's layout, a SigLIP encoder) through Engine.generate, against diffusers' own.

The reference is diffusers' ``StableDiffusion3Pipeline`` loaded on its own, given InstantX's ``ip-adapter.bin`` by
``load_ip_adapter(folder, weight_name="ip-adapter.bin", image_encoder_folder=…)`` (diffusers reads the pickle,
renames the Resampler and loads ``SiglipVisionModel`` and ``SiglipImageProcessor`` from the encoder's folder), the
same prompt, CPU generator, picture and scale; the window's reference sets the scale from a step callback by
sd-webui-controlnet's formula written here. Ours finds the encoder as ComfyUI keeps it:
``clip_vision/sigclip_vision_patch14_384.safetensors`` (one file of transformers' keys, no config).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_sd3
from helpers.tiny_ip_adapter import reference_picture
from helpers.tiny_sd3_ip_adapter import (
    instantx_sd3_adapter,
    save_comfy_file,
    save_pickle,
    save_siglip_folder,
    tiny_siglip,
)
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import infotext_units, read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
ADAPTER = "ip-adapter.bin"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny SD3; ``ipadapter/`` with InstantX's adapter, the SigLIP encoder in ``clip_vision/`` (and a folder)."""
    from diffusers import StableDiffusion3Pipeline

    root = tmp_path_factory.mktemp("sd3-ipa")
    sd3 = make_tiny_sd3(root / "sd3", layers=2)
    transformer = StableDiffusion3Pipeline.from_pretrained(sd3).transformer
    encoder = tiny_siglip()
    save_siglip_folder(encoder, root / "encoder_folder")  # the reference's, as diffusers loads one
    save_comfy_file(encoder, root / "models" / "clip_vision" / "sigclip_vision_patch14_384.safetensors")
    save_pickle(instantx_sd3_adapter(transformer, 32, seed=1), root / "models" / "ipadapter" / ADAPTER)
    before = library.models_dir()
    library.set_models_dir(root / "models")
    yield {"root": root, "sd3": sd3}
    library.set_models_dir(before)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def reference(models, scale=0.8, window=None, cls="StableDiffusion3Pipeline", steps=4, **call):
    """diffusers' `cls` with ``load_ip_adapter`` of InstantX's file, seed 5; `window`: (start, end) of the unit."""
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(models["sd3"])
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(models["root"] / "models" / "ipadapter"), weight_name=ADAPTER,
                         image_encoder_folder=str(models["root"] / "encoder_folder"))  # fmt: skip
    pipe.set_ip_adapter_scale(scale)

    def step_end(pipe_, i, t, values):  # sd-webui-controlnet: step i+1 applies unless (i+1)/n is outside start..end
        start, end = window
        done = (i + 1) / steps
        pipe_.set_ip_adapter_scale(0.0 if done < start or done > end else scale)
        return values

    base = dict(num_inference_steps=steps, width=32, height=32, guidance_scale=7.0, generator=generators([5]))
    picture = {"ip_adapter_image": reference_picture()}
    if window:  # step 0 at scale 0 when start > 0: the embeddings given, as the pipeline skips encoding at scale 0
        base["callback_on_step_end"] = step_end
        pipe.set_ip_adapter_scale(0.0 if window[0] > 0 else scale)
        picture = {"ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(reference_picture(), None, "cpu")}
    return pipe(PROMPT, **picture, **base, **call).images[0]


def paint(engine, models, units, init_image=None, mask_image=None, **changes):
    base = dict(prompt=PROMPT, model=str(models["sd3"]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, allow_pickle=True, controlnet=read_units(units))  # fmt: skip
    request = PaintRequest(**{**base, **changes})
    return engine.generate(
        request, pictures=Pictures(init_image, mask_image, control=tuple(reference_picture() for _ in units))
    )


def unit(module="ip-adapter_siglip", model="ip-adapter", **values):
    return {"module": module, "model": model, **values}


def test_sd3_unit_equals_diffusers_load_ip_adapter_and_writes_its_infotext(engine, models):
    expected = reference(models)
    result = paint(engine, models, [unit(weight=0.8)])
    assert_pixels_close(result.images[0], expected)
    plain = paint(engine, models, [])
    assert np.abs(pixels(expected) - pixels(plain.images[0])).max() > 10  # the adapter changes the picture
    short = library.short_hash("controlnet", models["root"] / "models" / "ipadapter" / ADAPTER)
    assert result.params["ControlNet 0"] == (
        f"Module: ip-adapter_siglip, Model: ip-adapter [{short}], Weight: 0.8, Resize Mode: Crop and Resize, "
        "Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced"
    )
    pasted = infotext_units({"ControlNet 0": result.params["ControlNet 0"]})
    assert (pasted[0].module, pasted[0].model, pasted[0].weight) == ("ip-adapter_siglip", "ip-adapter", 0.8)
    again = paint(engine, models, [unit()], controlnet=(pasted[0],))
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))


def test_a_window_equals_diffusers_and_weight_zero_paints_the_plain_picture(engine, models):
    expected = reference(models, window=(0.5, 1.0))
    result = paint(engine, models, [unit(module="ip-adapter-auto", weight=0.8, guidance_start=0.5)])
    assert_pixels_close(result.images[0], expected)
    whole = paint(engine, models, [unit(weight=0.8)]).images[0]
    assert np.abs(pixels(expected) - pixels(whole)).max() > 2  # the window changes the picture
    fresh = paint(Engine(), models, []).images[0]
    zero = paint(engine, models, [unit(weight=0)]).images[0]
    after = paint(engine, models, []).images[0]
    assert np.array_equal(pixels(zero), pixels(fresh))
    assert np.array_equal(pixels(after), pixels(fresh))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_equal_diffusers(engine, models, mode):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    cls = "StableDiffusion3Img2ImgPipeline" if mode == "img2img" else "StableDiffusion3InpaintPipeline"
    extra = {} if mode == "img2img" else {"mask_image": mask}
    expected = reference(models, cls=cls, steps=6, image=init, strength=0.65, **extra)
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    changes = dict(init="x", strength=0.6, steps=6, mask="m" if mode == "inpaint" else "", mask_blur=0)
    result = paint(engine, models, [unit(weight=0.8)], init, mask if mode == "inpaint" else None, **changes)
    assert_pixels_close(result.images[0], expected)


def test_refusals_are_one_line(engine, models, tmp_path):
    from diffusers import StableDiffusion3Pipeline
    from helpers.tiny_ip_adapter import save_adapter, tiny_adapter_state

    folder = models["root"] / "models" / "ipadapter"
    transformer = StableDiffusion3Pipeline.from_pretrained(models["sd3"]).transformer
    torch.save(instantx_sd3_adapter(transformer, 48), folder / "wide.bin")  # an adapter for a wider encoder
    sd15 = tiny_adapter_state(_tiny_unet(), 24)
    save_adapter(sd15, folder / "ip-adapter_sd15.safetensors")
    cases = [
        ([unit(module="ip-adapter_clip_h")], {}, "SD3.5's IP-Adapter takes ip-adapter_siglip"),
        ([unit(model="ip-adapter_sd15")], {}, "ip-adapter_sd15 is an SD1.5/SDXL IP-Adapter"),
        ([unit(model="wide")], {}, "no SigLIP image encoder for wide"),
        ([unit(), unit(model="wide")], {}, "SD3 paints IP-Adapter units of one adapter file (got ip-adapter"),
    ]
    for units, changes, expected in cases:
        with pytest.raises(ValueError) as error:
            paint(engine, models, units, **changes)
        message = str(error.value)
        assert expected in message and "\n" not in message and len(message) < 200, (expected, message)
    with pytest.raises(ValueError, match="ip-adapter.bin is a pickle file"):  # InstantX ships a pickle
        paint(Engine(), models, [unit()], allow_pickle=False)


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=32,
                                norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                attention_head_dim=2, up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                sample_size=8)  # fmt: skip


def test_an_sd3_adapter_on_an_sd_model_is_one_line(engine, models, tiny_model_dir):
    request = PaintRequest(prompt=PROMPT, model=str(tiny_model_dir), steps=2, width=32, height=32, preview="none",
                           save=False, allow_pickle=True,
                           controlnet=read_units([unit(module="ip-adapter-auto")]))  # fmt: skip
    with pytest.raises(ValueError, match="^controlnet: ip-adapter is an SD3.5 IP-Adapter") as error:
        engine.generate(request, pictures=Pictures(control=(reference_picture(),)))
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def and_reference(models, scale=0.8):
    """Composable diffusion by hand over diffusers' SD3 pipeline with InstantX's adapter: raw transformer calls, one
    per text (the negative, each ``AND`` part), each given its rows' image embeddings in ``joint_attention_kwargs``
    (the negative: zeros, diffusers' negative picture; each part: the picture's); positive ``u + Σ wᵢ·(cᵢ − u)``."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(models["sd3"])
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(models["root"] / "models" / "ipadapter"), weight_name=ADAPTER,
                         image_encoder_folder=str(models["root"] / "encoder_folder"))  # fmt: skip
    pipe.set_ip_adapter_scale(scale)
    with torch.no_grad():
        red, negative, red_pooled, negative_pooled = pipe.encode_prompt("a red circle", None, None,
                                                                        negative_prompt="dog")  # fmt: skip
        square, _, square_pooled, _ = pipe.encode_prompt("a blue square", None, None, negative_prompt="dog")
        picture = pipe.encode_image(reference_picture(), "cpu")
    rows = ((negative, negative_pooled, torch.zeros_like(picture)), (red, red_pooled, picture),
            (square, square_pooled, picture))  # fmt: skip
    forward = pipe.transformer.forward

    def composable(hidden_states, timestep, encoder_hidden_states, pooled_projections, **kwargs):
        kwargs.pop("return_dict", None)
        kwargs.pop("joint_attention_kwargs", None)  # (the pipeline's: [negative, picture] rows)
        x, t = hidden_states[1:], timestep[1:]  # the prompt's half of CFG (the halves' latents are equal)
        u, a, b = (forward(hidden_states=x, timestep=t, encoder_hidden_states=e, pooled_projections=p,
                           joint_attention_kwargs={"ip_adapter_image_embeds": image}, return_dict=False,
                           **kwargs)[0] for e, p, image in rows)  # fmt: skip
        return (torch.cat([u, u + 1.0 * (a - u) + 0.6 * (b - u)]),)

    pipe.transformer.forward = composable
    return pipe(prompt_embeds=red, pooled_prompt_embeds=red_pooled, negative_prompt_embeds=negative,
                negative_pooled_prompt_embeds=negative_pooled, width=32, height=32, num_inference_steps=4,
                guidance_scale=4.0, generator=generators([5]),
                ip_adapter_image=reference_picture()).images[0]  # fmt: skip


def test_and_prompts_give_every_part_the_units_picture(engine, models):
    """SD3's AND (one batched call of the negative and each part) with an IP-Adapter unit: each row its picture."""
    expected = and_reference(models)
    changes = dict(prompt="a red circle AND a blue square :0.6", negative_prompt="dog", guidance=4.0)
    result = paint(engine, models, [unit(weight=0.8)], **changes)
    assert_pixels_close(result.images[0], expected)
    plain = paint(engine, models, [], **changes).images[0]
    assert np.abs(pixels(expected) - pixels(plain)).max() > 10  # the adapter changes the AND picture
    first_only = paint(engine, models, [unit(weight=0.8)], prompt="a red circle", negative_prompt="dog", guidance=4.0)
    assert np.abs(pixels(expected) - pixels(first_only.images[0])).max() > 2  # and the second part counts
