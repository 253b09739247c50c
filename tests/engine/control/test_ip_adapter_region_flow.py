"""Effective region masks on Flux (XLabs') and SD3.5 (InstantX's) IP-Adapter units, against formulas in the test.

The references are diffusers' own pipelines with ``load_ip_adapter``, their IP-Adapter processors replaced by ones
written here that mask the adapter's contribution by formula: the picture's mask made black and white at 0.5, brought
to the layer's image tokens by bicubic interpolation (as diffusers brings SD's masks to a layer), and multiplied into
each adapter's part. Flux's part of each adapter is diffusers' processor run with that adapter's scale alone (its
third output); SD3's is computed here from the processor's weights (its image-and-adapter attention, times the scale,
through the output projection) and added to the processor's output without the adapter.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3
from helpers.tiny_flow_controlnet import tiny_flux_controlnet
from helpers.tiny_flux_ip_adapter import tiny_vit_l_encoder, xlabs_flux_adapter
from helpers.tiny_ip_adapter import reference_picture, save_adapter, save_encoder_file
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
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
SIZE = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Flux with two XLabs adapters and their ViT-L; a tiny SD3 with InstantX's adapter and its SigLIP."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    root = tmp_path_factory.mktemp("region-flow")
    flux, sd3 = make_tiny_flux(root / "flux"), make_tiny_sd3(root / "sd3", layers=2)
    transformer = FluxPipeline.from_pretrained(flux).transformer
    encoder = tiny_vit_l_encoder()
    encoder.save_pretrained(str(root / "vit_folder"))
    save_encoder_file(encoder, root / "models" / "clip_vision" / "clip_vision_l.safetensors")
    for name, seed in (("flux-a", 1), ("flux-b", 2)):
        save_adapter(
            xlabs_flux_adapter(transformer, 24, seed=seed), root / "models" / "ipadapter" / f"{name}.safetensors"
        )
    tiny_flux_controlnet(seed=1).save_pretrained(root / "models" / "ControlNet" / "flux_cn")
    siglip = tiny_siglip()
    save_siglip_folder(siglip, root / "siglip_folder")
    save_comfy_file(siglip, root / "models" / "clip_vision" / "sigclip_vision_patch14_384.safetensors")
    sd3_transformer = StableDiffusion3Pipeline.from_pretrained(sd3).transformer
    save_pickle(instantx_sd3_adapter(sd3_transformer, 32, seed=1), root / "models" / "ipadapter" / "ip-adapter.bin")
    before = library.models_dir()
    library.set_models_dir(root / "models")
    yield {"root": root, "flux": flux, "sd3": sd3}
    library.set_models_dir(before)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def half(side: str) -> Image.Image:
    """A black RGB picture whose `side` half is white (a user's mask file)."""
    mask = Image.new("RGB", (SIZE, SIZE))
    mask.paste((255, 255, 255), (0, 0, SIZE // 2, SIZE) if side == "left" else (SIZE // 2, 0, SIZE, SIZE))
    return mask


def on_tokens(mask: Image.Image | None, tokens: int) -> torch.Tensor | float:
    """The formula: black/white at 0.5, bicubic to the square grid of `tokens` image tokens, one value a token."""
    if mask is None:
        return 1.0
    white = torch.tensor(np.asarray(mask.convert("L"), dtype=np.float32) / 255 > 0.5, dtype=torch.float32)
    side = math.isqrt(tokens)
    return F.interpolate(white[None, None], size=(side, side), mode="bicubic").reshape(1, tokens, 1)


class FluxReference(FluxIPAdapterAttnProcessor):
    """diffusers' processor run once per adapter with that adapter's scale alone; each part times its mask."""

    masks: tuple = ()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None,
                 ip_hidden_states=None, ip_adapter_masks=None):  # fmt: skip
        scales, added = list(self.scale), 0
        for index in range(len(scales)):
            self.scale = [scale if j == index else 0.0 for j, scale in enumerate(scales)]
            image, text, part = super().__call__(
                attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, ip_hidden_states
            )
            added = added + part * on_tokens(self.masks[index], hidden_states.shape[1])
        self.scale = scales
        return image, text, added


class SD3Reference(SD3IPAdapterJointAttnProcessor2_0):
    """The processor's output without the adapter, plus its part computed here times the mask."""

    mask = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, ip_hidden_states=None,
                 temb=None):  # fmt: skip
        out = super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, None, temb)
        if ip_hidden_states is None or self.scale == 0:
            return out
        batch, heads = hidden_states.shape[0], attn.heads

        def split(x):
            return x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2)

        query, key, value = (split(f(hidden_states)) for f in (attn.to_q, attn.to_k, attn.to_v))
        ip = self.norm_ip(ip_hidden_states, temb=temb)
        ip_key, ip_value = self.norm_ip_k(split(self.to_k_ip(ip))), split(self.to_v_ip(ip))
        mixed = F.scaled_dot_product_attention(
            self.norm_q(query), torch.cat([self.norm_k(key), ip_key], 2), torch.cat([value, ip_value], 2)
        )
        mixed = mixed.transpose(1, 2).reshape(batch, hidden_states.shape[1], -1)
        added = F.linear(mixed * self.scale * on_tokens(self.mask, hidden_states.shape[1]), attn.to_out[0].weight)
        return (out[0] + added, *out[1:]) if isinstance(out, tuple) else out + added


def flux_reference(models, names, scales, masks, cls="FluxPipeline", steps=4, **call):
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(models["flux"])
    pipe.set_progress_bar_config(disable=True)
    folder = str(models["root"] / "models" / "ipadapter")
    pipe.load_ip_adapter([folder] * len(names), weight_name=[f"{n}.safetensors" for n in names],
                         image_encoder_pretrained_model_name_or_path=str(models["root"] / "vit_folder"),
                         image_encoder_dtype=torch.float32)  # fmt: skip
    pipe.set_ip_adapter_scale(list(scales))
    for processor in pipe.transformer.attn_processors.values():
        if isinstance(processor, FluxIPAdapterAttnProcessor):
            processor.__class__, processor.masks = FluxReference, tuple(masks)
    pictures = [reference_picture(seed=i) for i in range(len(names))]
    base = dict(num_inference_steps=steps, width=SIZE, height=SIZE, guidance_scale=3.5, generator=generators([5]))
    return pipe(PROMPT, ip_adapter_image=pictures, **base, **call).images[0]


def sd3_reference(models, scale, mask, cls="StableDiffusion3Pipeline", steps=4, **call):
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(models["sd3"])
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(models["root"] / "models" / "ipadapter"), weight_name="ip-adapter.bin",
                         image_encoder_folder=str(models["root"] / "siglip_folder"))  # fmt: skip
    pipe.set_ip_adapter_scale(scale)
    for processor in pipe.transformer.attn_processors.values():
        if isinstance(processor, SD3IPAdapterJointAttnProcessor2_0):
            processor.__class__, processor.mask = SD3Reference, mask
    base = dict(num_inference_steps=steps, width=SIZE, height=SIZE, guidance_scale=7.0, generator=generators([5]))
    return pipe(PROMPT, ip_adapter_image=reference_picture(seed=0), **base, **call).images[0]


def request(models, family, units, **changes):
    base = dict(prompt=PROMPT, model=str(models[family]), steps=4, seed=5, width=SIZE, height=SIZE, rng="cpu",
                preview="none", save=False, allow_pickle=True, controlnet=read_units(units))  # fmt: skip
    return PaintRequest(**{**base, **changes})


def paint(engine, models, family, units, masks, init_image=None, mask_image=None, **changes):
    pictures = tuple(reference_picture(seed=i) for i in range(len(units)))
    return engine.generate(
        request(models, family, units, **changes),
        pictures=Pictures(init_image, mask_image, control=pictures, control_masks=tuple(masks)),
    )


def flux_unit(model, weight):
    return {"module": "ip-adapter_clip_l", "model": model, "weight": weight}


def sd3_unit(weight):
    return {"module": "ip-adapter_siglip", "model": "ip-adapter", "weight": weight}


def test_flux_two_units_left_and_right_equal_the_formula(engine, models):
    units, masks = [flux_unit("flux-a", 0.9), flux_unit("flux-b", 0.8)], (half("left"), half("right"))
    expected = flux_reference(models, ("flux-a", "flux-b"), (0.9, 0.8), masks)
    result = paint(engine, models, "flux", units, masks)
    assert_pixels_close(result.images[0], expected)
    unmasked = paint(engine, models, "flux", units, ()).images[0]
    assert np.abs(pixels(unmasked) - pixels(result.images[0])).max() > 5  # the masks change the picture


def test_flux_white_is_no_mask_and_black_is_weight_zero(engine, models):
    units = [flux_unit("flux-a", 0.9), flux_unit("flux-b", 0.8)]
    white, black = Image.new("L", (SIZE, SIZE), 255), Image.new("L", (SIZE, SIZE))
    plain = pixels(paint(engine, models, "flux", units, ()).images[0])
    assert np.array_equal(pixels(paint(engine, models, "flux", units, (white, None)).images[0]), plain)
    off = paint(engine, models, "flux", units, (None, black)).images[0]
    zero = paint(engine, models, "flux", [units[0], flux_unit("flux-b", 0)], ()).images[0]
    assert np.array_equal(pixels(off), pixels(zero))
    assert np.abs(pixels(off) - plain).max() > 5


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_flux_img2img_and_inpaint_with_a_mask_equal_the_formula(engine, models, mode):
    init, mask = init_picture(SIZE), box_mask(SIZE, (8, 8, 24, 24))
    cls, extra = ("FluxImg2ImgPipeline", {}) if mode == "img2img" else ("FluxInpaintPipeline", {"mask_image": mask})
    region = (half("right"),)
    expected = flux_reference(models, ("flux-a",), (0.8,), region, cls=cls, steps=6, image=init, strength=0.65,
                              **extra)  # fmt: skip
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    changes = dict(init="x", strength=0.6, steps=6, mask="m" if mode == "inpaint" else "", mask_blur=0)
    paint_mask = mask if mode == "inpaint" else None
    result = paint(engine, models, "flux", [flux_unit("flux-a", 0.8)], region, init, paint_mask, **changes)
    assert_pixels_close(result.images[0], expected)


def test_flux_hires_pass_takes_the_mask_at_its_size(engine, models):
    hires, units = {"hires": 2, "hires_steps": 2, "hires_denoise": 0.6}, [flux_unit("flux-a", 0.9)]
    plain = paint(engine, models, "flux", units, (), **hires).images[0]
    white = paint(engine, models, "flux", units, (Image.new("L", (8, 8), 255),), **hires).images[0]
    masked = paint(engine, models, "flux", units, (half("left"),), **hires).images[0]
    assert masked.size == plain.size == (2 * SIZE, 2 * SIZE)
    assert np.array_equal(pixels(white), pixels(plain))
    assert np.abs(pixels(masked) - pixels(plain)).max() > 5


def test_sd3_unit_with_a_mask_equals_the_formula_white_is_none_black_is_zero(engine, models):
    expected = sd3_reference(models, 0.8, half("left"))
    result = paint(engine, models, "sd3", [sd3_unit(0.8)], (half("left"),))
    assert_pixels_close(result.images[0], expected)
    plain = pixels(paint(engine, models, "sd3", [sd3_unit(0.8)], ()).images[0])
    assert np.abs(pixels(result.images[0]) - plain).max() > 5
    white = paint(engine, models, "sd3", [sd3_unit(0.8)], (Image.new("L", (SIZE, SIZE), 255),)).images[0]
    assert np.array_equal(pixels(white), plain)
    black = paint(engine, models, "sd3", [sd3_unit(0.8)], (Image.new("L", (SIZE, SIZE)),)).images[0]
    zero = paint(engine, models, "sd3", [sd3_unit(0)], ()).images[0]
    assert np.array_equal(pixels(black), pixels(zero))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_sd3_img2img_and_inpaint_with_a_mask_equal_the_formula(engine, models, mode):
    init, mask = init_picture(SIZE), box_mask(SIZE, (8, 8, 24, 24))
    cls, extra = ("StableDiffusion3Img2ImgPipeline", {}) if mode == "img2img" else ("StableDiffusion3InpaintPipeline",
                                                                                     {"mask_image": mask})  # fmt: skip
    region = half("right")
    expected = sd3_reference(models, 0.8, region, cls=cls, steps=6, image=init, strength=0.65, **extra)
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    changes = dict(init="x", strength=0.6, steps=6, mask="m" if mode == "inpaint" else "", mask_blur=0)
    paint_mask = mask if mode == "inpaint" else None
    result = paint(engine, models, "sd3", [sd3_unit(0.8)], (region,), init, paint_mask, **changes)
    assert_pixels_close(result.images[0], expected)
    if mode == "inpaint":  # the region mask changes the inpainted picture: the test can fail
        plain = paint(engine, models, "sd3", [sd3_unit(0.8)], (), init, paint_mask, **changes).images[0]
        assert np.abs(pixels(plain) - pixels(result.images[0])).max() > 3


def test_flux_masks_are_recorded_and_load_request_repaints_them(models, tmp_path):
    from jupyter_sd.painting.session import render
    from jupyter_sd.painting.store import load_request

    left = tmp_path / "left.png"
    half("left").save(left)
    units = read_units([{**flux_unit("flux-a", 0.9), "image": reference_picture(seed=0)}])
    units = (replace(units[0], effective_region_mask=str(left)),)
    painted = render(
        request(models, "flux", [], controlnet=units, save=True, outdir=str(tmp_path / "out")), reraise_interrupt=False
    )
    with Image.open(painted.paths[0]) as png:
        records = json.loads(png.text["jupyter_sd"])["controlnet_masks"]
    assert records[0]["path"] == str(left.resolve())
    again = load_request(painted.paths[0])
    assert again.controlnet[0].effective_region_mask == str(left.resolve())
    repainted = render(again.replace(save=False), reraise_interrupt=False)
    assert np.array_equal(pixels(repainted.images[0]), pixels(painted.images[0]))
    unmasked = render(request(models, "flux", [], controlnet=(replace(units[0], effective_region_mask=None),)))
    assert np.abs(pixels(unmasked.images[0]) - pixels(painted.images[0])).max() > 5


def test_flux_controlnet_img2img_hands_the_masks_with_the_embeddings(engine, models):
    """Flux's ControlNet img2img takes the adapter's embeddings in ``joint_attention_kwargs``; the masks go too."""
    init, control = init_picture(SIZE), {"module": "none", "model": "flux_cn", "weight": 0.7}
    changes = dict(init="x", strength=0.6, steps=4, guidance=1.0)

    def painted(weight, mask):
        units = [control, flux_unit("flux-a", weight)]
        return pixels(paint(engine, models, "flux", units, (None, mask), init, **changes).images[0])

    plain, zero = painted(0.9, None), painted(0.0, None)
    assert np.array_equal(painted(0.9, Image.new("L", (SIZE, SIZE), 255)), plain)
    assert np.array_equal(painted(0.9, Image.new("L", (SIZE, SIZE))), zero)
    left = painted(0.9, half("left"))
    assert np.abs(left - plain).max() > 2 and np.abs(left - zero).max() > 2
