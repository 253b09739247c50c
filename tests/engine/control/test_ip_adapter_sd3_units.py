"""Several SD3.5 IP-Adapter units (one InstantX adapter file, a picture each) against a formula written here.

The reference is diffusers' ``StableDiffusion3Pipeline`` with InstantX's file loaded by ``load_ip_adapter`` (for
its weights), called without ``ip_adapter_image``: every attention block's processor is one written here from the
formula — the joint attention of the image and text tokens, plus for each unit ``scaleᵢ·maskᵢ·attn(q, [k; k_ipᵢ],
[v; v_ipᵢ])`` from the adapter's own weights (``norm_ip``, ``to_k_ip``, ``to_v_ip``, its RMS norms) on that unit's
Resampler output (diffusers' ``image_proj`` with the step's timestep, the picture's SigLIP states; zeros for CFG's
negative half), then the output projection. Each unit's scale follows sd-webui-controlnet's window: step i of n acts
unless i/n is outside start..end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_sd3
from helpers.tiny_ip_adapter import reference_picture
from helpers.tiny_sd3_ip_adapter import instantx_sd3_adapter, save_comfy_file, save_pickle, tiny_siglip
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import infotext_units, read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
ADAPTER = "ip-adapter.bin"
PICTURES = (reference_picture(seed=0), reference_picture(seed=7))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny SD3; ``ipadapter/`` with InstantX's adapter, the SigLIP encoder in ``clip_vision/``."""
    from diffusers import StableDiffusion3Pipeline

    root = tmp_path_factory.mktemp("sd3-units")
    sd3 = make_tiny_sd3(root / "sd3", layers=2)
    transformer = StableDiffusion3Pipeline.from_pretrained(sd3).transformer
    save_comfy_file(tiny_siglip(), root / "models" / "clip_vision" / "sigclip_vision_patch14_384.safetensors")
    save_pickle(instantx_sd3_adapter(transformer, 32, seed=1), root / "models" / "ipadapter" / ADAPTER)
    before = library.models_dir()
    library.set_models_dir(root / "models")
    yield {"root": root, "sd3": sd3}
    library.set_models_dir(before)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _heads(tensor, attn):
    return tensor.view(tensor.shape[0], -1, attn.heads, tensor.shape[-1] // attn.heads).transpose(1, 2)


def _tokens(tensor):
    return tensor.transpose(1, 2).reshape(tensor.shape[0], tensor.shape[2], -1)


class FormulaProcessor:
    """One block's attention by the formula: joint attention, plus each unit's part times its scale and mask."""

    def __init__(self, adapter, units):
        self.adapter, self.units = adapter, units  # units: the step's [(ip hidden states, temb, scale, mask)]

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        a, count = self.adapter, hidden_states.shape[1]
        q, k, v = (_heads(f(hidden_states), attn) for f in (attn.to_q, attn.to_k, attn.to_v))
        cq, ck, cv = (
            _heads(f(encoder_hidden_states), attn) for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)
        )
        query = torch.cat([_norm(attn.norm_q, q), _norm(attn.norm_added_q, cq)], dim=2)
        key = torch.cat([_norm(attn.norm_k, k), _norm(attn.norm_added_k, ck)], dim=2)
        out = _tokens(F.scaled_dot_product_attention(query, key, torch.cat([v, cv], dim=2)))
        image, text = out[:, :count], out[:, count:]
        for ip, temb, scale, mask in self.units:
            normed = a.norm_ip(ip, temb=temb)
            ip_key, ip_value = _heads(a.to_k_ip(normed), attn), _heads(a.to_v_ip(normed), attn)
            part = F.scaled_dot_product_attention(
                a.norm_q(q), torch.cat([a.norm_k(k), a.norm_ip_k(ip_key)], dim=2), torch.cat([v, ip_value], dim=2)
            )
            image = image + scale * _mask_at(mask, count) * _tokens(part)
        image = attn.to_out[1](attn.to_out[0](image))
        return image, (None if attn.context_pre_only else attn.to_add_out(text))


def _norm(norm, tensor):
    return tensor if norm is None else norm(tensor)  # (a block without qk norms: SD3 Medium's first)


def _mask_at(mask, count, made={}):  # noqa: B006 (the masks made, kept for the test's run)
    if mask is None:
        return 1.0
    from diffusers.image_processor import IPAdapterMaskProcessor

    if (id(mask), count) not in made:
        picture = IPAdapterMaskProcessor().preprocess(mask, height=32, width=32)
        made[id(mask), count] = IPAdapterMaskProcessor.downsample(picture[:, 0], 1, count, 1)
    return made[id(mask), count]


def reference(models, weights, windows=None, masks=None, steps=4):
    """diffusers' SD3 pipeline, its blocks' attention by `FormulaProcessor`, one unit per weight (PICTURES' order)."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(models["sd3"])
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(models["root"] / "models" / "ipadapter"), weight_name=ADAPTER,
                         image_encoder_folder=None)  # fmt: skip
    from jupyter_sd.engine.control.ip_adapter_files import load_siglip

    encoder, processor = load_siglip(
        models["root"] / "models" / "clip_vision" / "sigclip_vision_patch14_384.safetensors", False
    )
    pipe.register_modules(image_encoder=encoder, feature_extractor=processor)
    transformer = pipe.transformer
    with torch.no_grad():
        embeds = [pipe.encode_image(picture, "cpu") for picture in PICTURES[: len(weights)]]
    windows, masks = windows or [(0.0, 1.0)] * len(weights), masks or [None] * len(weights)
    state = {"step": 0, "units": []}

    def before_step(module, args, kwargs):
        done = state["step"] / steps
        state["step"] += 1
        state["units"].clear()
        for embed, weight, (start, end), mask in zip(embeds, weights, windows, masks):
            ip, temb = transformer.image_proj(torch.cat([torch.zeros_like(embed), embed]), kwargs["timestep"])
            scale = 0.0 if done < start or done > end else weight
            state["units"].append((ip, temb, scale, mask))

    transformer.register_forward_pre_hook(before_step, with_kwargs=True)
    transformer.set_attn_processor(
        {
            name: FormulaProcessor(p, state["units"]) if hasattr(p, "to_k_ip") else p  # (the Resampler's stay)
            for name, p in transformer.attn_processors.items()
        }
    )
    return pipe(PROMPT, num_inference_steps=steps, width=32, height=32, guidance_scale=7.0,
                generator=generators([5])).images[0]  # fmt: skip


def paint(engine, models, units, masks=(), **changes):
    base = dict(prompt=PROMPT, model=str(models["sd3"]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, allow_pickle=True, controlnet=read_units(units))  # fmt: skip
    pictures = Pictures(control=PICTURES[: len(units)], control_masks=tuple(masks))
    return engine.generate(PaintRequest(**{**base, **changes}), pictures=pictures)


def unit(weight, **values):
    return {"module": "ip-adapter_siglip", "model": "ip-adapter", "weight": weight, **values}


def test_two_units_equal_the_sum_of_their_parts_and_round_trip(engine, models):
    expected = reference(models, (0.8, 0.6))
    result = paint(engine, models, [unit(0.8), unit(0.6)])
    assert_pixels_close(result.images[0], expected)
    first = paint(engine, models, [unit(0.8)]).images[0]
    assert np.abs(pixels(expected) - pixels(first)).max() > 2  # the second unit changes the picture
    assert result.params["ControlNet 1"].startswith("Module: ip-adapter_siglip, Model: ip-adapter [")
    assert "Weight: 0.6" in result.params["ControlNet 1"]
    pasted = infotext_units(result.params)
    again = paint(engine, models, [unit(0), unit(0)], controlnet=tuple(pasted[i] for i in sorted(pasted)))
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))


def test_one_unit_is_diffusers_own_path_and_the_formula(engine, models):
    """One unit: the formula alone, and pixel for pixel what a fresh engine paints with one (diffusers' processor)."""
    one = paint(engine, models, [unit(0.8)]).images[0]
    assert_pixels_close(one, reference(models, (0.8,)))
    paint(engine, models, [unit(0.8), unit(0.6)])  # the same adapter, its processors given two units before
    fresh = paint(Engine(), models, [unit(0.8)]).images[0]
    assert np.array_equal(pixels(one), pixels(fresh))


def test_a_unit_at_weight_zero_paints_the_other_alone(engine, models):
    alone = paint(engine, models, [unit(0.8)]).images[0]
    both = paint(engine, models, [unit(0.8), unit(0)]).images[0]
    assert_pixels_close(both, alone)  # (the pictures are encoded as one batch of two: equal up to rounding)


def test_windows_are_per_unit(engine, models):
    windows = [(0.0, 0.5), (0.5, 1.0)]
    expected = reference(models, (0.8, 0.9), windows)
    result = paint(engine, models, [unit(0.8, guidance_end=0.5), unit(0.9, guidance_start=0.5)])
    assert_pixels_close(result.images[0], expected)
    whole = paint(engine, models, [unit(0.8), unit(0.9)]).images[0]
    assert np.abs(pixels(expected) - pixels(whole)).max() > 2  # the windows change the picture


def test_region_masks_are_per_unit(engine, models):
    left = Image.new("L", (32, 32), 0)
    left.paste(255, (0, 0, 16, 32))
    right = Image.eval(left, lambda v: 255 - v)
    expected = reference(models, (0.8, 0.9), masks=[left, right])
    result = paint(engine, models, [unit(0.8), unit(0.9)], masks=(left, right))
    assert_pixels_close(result.images[0], expected)
    unmasked = paint(engine, models, [unit(0.8), unit(0.9)]).images[0]
    assert np.abs(pixels(expected) - pixels(unmasked)).max() > 2  # the masks change the picture


def test_and_prompts_give_every_part_each_units_picture(engine, models):
    """SD3's AND (one batched call of the negative and each part): each row gets every unit's picture."""
    changes = dict(prompt="a red circle AND a blue square :0.6", negative_prompt="dog", guidance=4.0)
    one = paint(engine, models, [unit(0.8)], **changes).images[0]
    zero = paint(engine, models, [unit(0.8), unit(0)], **changes).images[0]
    two = paint(engine, models, [unit(0.8), unit(0.6)], **changes).images[0]
    assert_pixels_close(zero, one)
    assert np.abs(pixels(two) - pixels(one)).max() > 2  # the second unit acts in the AND picture
