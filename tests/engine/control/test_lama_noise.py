"""``inpaint_only+lama``'s start noise, painted: sd-webui-controlnet's ``HackedImageRNG`` on every draw of the picture's
size, in txt2img, img2img and inpaint, against diffusers' own ControlNet pipelines given that noise.

The references build the mixed noise here from the formula: the map's RGB (−1..1) through the VAE (sampled with a
generator of the seed, scaled), the model's ᾱ at t = 999 from its betas (scaled_linear, written out), and
``√ᾱ·latent + √(1−ᾱ)·noise`` with the seed's CPU noise; an ancestral sampler's step noise is mixed the same way.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files
from helpers.lama_net import lama_state
from helpers.paint_modes import box_mask, generators, init_picture, tiny_request
from helpers.pixels import assert_pixels_close
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.control.unit_maps import unit_map
from jupyter_sd.engine.control.wiring import lama_mix
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.engine.seeds import NoiseSource
from jupyter_sd.recipe.control_units import parse_unit_text, read_units


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def nets(tiny_model_dir, tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    root = tmp_path_factory.mktemp("lama-noise")
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    folder = save_folder(tiny_controlnet(raw.unet, seed=4), root / "inpaint_cn")
    with annotator_files(root / "models", {"lama/ControlNetLama.pth": lama_state(seed=5)}):
        yield {"raw": raw, "folder": folder, "model": ControlNetModel.from_pretrained(folder)}


def alpha_999() -> float:
    """SD's ᾱ at t = 999: betas linear in √β from 0.00085 to 0.012 over 1000 steps (scaled_linear)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return float(np.prod(1.0 - betas))


def map_latent(raw, rgb: np.ndarray, seed: int = 5) -> torch.Tensor:
    """The map's RGB (H×W×3, 0..255) as the VAE's scaled latent, sampled with a generator of `seed`."""
    pixels_ = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        dist = raw.vae.encode(pixels_).latent_dist
    return dist.sample(generator=torch.Generator().manual_seed(seed)) * raw.vae.config.scaling_factor


def mixer(latent: torch.Tensor):
    a = alpha_999()
    return lambda noise: a**0.5 * latent.to(noise) + (1 - a) ** 0.5 * noise


def reference(nets, kind, mix, sampler="DPM++ 2M", monkeypatch=None, **call):
    """diffusers' ControlNet pipeline of `kind`, seed 5, 6 steps; its noise the seed's, through `mix` (None: as drawn).

    With `monkeypatch` the step noise an ancestral sampler draws goes through `mix` too.
    """
    from diffusers import (
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetInpaintPipeline,
        StableDiffusionControlNetPipeline,
    )

    cls = {
        "txt2img": StableDiffusionControlNetPipeline,
        "img2img": StableDiffusionControlNetImg2ImgPipeline,
        "inpaint": StableDiffusionControlNetInpaintPipeline,
    }[kind]
    raw = nets["raw"]
    pipe = cls(**raw.components, controlnet=nets["model"])
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler(sampler, "Automatic", dict(raw.scheduler.config))
    gens = generators([5])
    base = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": gens, "controlnet_conditioning_scale": 1.0}
    if mix is not None and kind == "txt2img":
        base["latents"] = mix(torch.randn((1, 4, 8, 8), generator=gens[0]))
    elif mix is not None:  # A1111 noises the init with the seed's first draw (diffusers' comes after the VAE's)
        add_noise, ours = pipe.scheduler.add_noise, mix(torch.randn((1, 4, 8, 8), generator=generators([5])[0]))
        pipe.scheduler.add_noise = lambda x, noise, t: add_noise(x, ours, t)
    conditioning = build_conditioning(raw, "a red circle", "", 6).pipeline_kwargs()
    namespace = inspect.unwrap(type(pipe.scheduler).step).__globals__
    if monkeypatch is None or mix is None or "randn_tensor" not in namespace:  # (a sampler that draws no noise)
        return pipe(**conditioning, **{**base, **call}).images[0]
    drawn = namespace["randn_tensor"]
    with monkeypatch.context() as patch:  # the ancestral sampler's step noise, mixed as well
        patch.setitem(namespace, "randn_tensor", lambda *args, **kwargs: mix(drawn(*args, **kwargs)))
        return pipe(**conditioning, **{**base, **call}).images[0]


def lama_unit(nets):
    return read_units([{"module": "inpaint_only+lama", "model": str(nets["folder"])}])


class UNetInputs:
    """Every latent batch the UNets are called with while it is on (the class's forward, so any pipeline's)."""

    def __init__(self, monkeypatch) -> None:
        from diffusers import UNet2DConditionModel

        self.seen: list[torch.Tensor] = []
        forward = UNet2DConditionModel.forward

        def recording(unet, sample, *args, **kwargs):
            self.seen.append(sample.detach().clone())
            return forward(unet, sample, *args, **kwargs)

        monkeypatch.setattr(UNet2DConditionModel, "forward", recording)

    def take(self) -> list[torch.Tensor]:
        seen, self.seen = self.seen, []
        return seen


def unmixed(noise: torch.Tensor) -> torch.Tensor:
    return noise


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler a"])
def test_txt2img_starts_from_the_maps_latent_diffused_to_t_999(engine, nets, tiny_model_dir, monkeypatch, sampler):
    picture = init_picture()  # txt2img: no mask, so the map is the picture itself (LaMa fills nothing)
    hint = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    mix = mixer(map_latent(nets["raw"], np.asarray(picture)))
    inputs = UNetInputs(monkeypatch)
    request = tiny_request(tiny_model_dir, sampler=sampler, controlnet=lama_unit(nets))
    result = engine.generate(request, pictures=Pictures(control=(picture,)))
    painted = inputs.take()
    expected = reference(nets, "txt2img", mix, sampler, monkeypatch, image=hint)
    wanted = inputs.take()
    assert_pixels_close(result.images[0], expected)
    assert len(painted) == len(wanted) == 6
    for ours, theirs in zip(painted, wanted):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)  # (float noise of the embeddings)
    reference(nets, "txt2img", unmixed, sampler, monkeypatch, image=hint)  # the seed's noise alone
    assert (inputs.take()[0] - wanted[0]).abs().max() > 0.01  # the map's latent is in the first step's input
    if sampler == "Euler a":  # every step's draw is mixed, not the first one alone
        reference(nets, "txt2img", mix, sampler, None, image=hint)
        first_only = inputs.take()
        torch.testing.assert_close(first_only[0], wanted[0])
        assert (first_only[1] - wanted[1]).abs().max() > 1e-3


def test_img2img_and_inpaint_noise_the_init_with_the_mixed_noise(engine, nets, tiny_model_dir, monkeypatch):
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    hint = torch.from_numpy(np.asarray(init, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    mix = mixer(map_latent(nets["raw"], np.asarray(init)))
    inputs = UNetInputs(monkeypatch)
    request = tiny_request(tiny_model_dir, init="x", strength=0.8, controlnet=lama_unit(nets))
    result = engine.generate(request, pictures=Pictures(init))  # the unit takes the init as its picture
    painted = inputs.take()
    # A1111's strength 0.8 at 6 steps: t_enc = 4, 5 steps from level 1 = diffusers' strength 0.85
    expected = reference(nets, "img2img", mix, image=init, control_image=hint, strength=0.85)
    wanted = inputs.take()
    assert_pixels_close(result.images[0], expected)
    torch.testing.assert_close(painted[0], wanted[0], atol=1e-5, rtol=1e-5)
    reference(nets, "img2img", unmixed, image=init, control_image=hint, strength=0.85)
    assert (inputs.take()[0] - wanted[0]).abs().max() > 0.01

    lama = unit_map(parse_unit_text("Module: inpaint_only+lama, Model: m"), init, 16, 16, mask=mask)
    filled = lama.fitted[:, :, :3]
    assert np.abs(filled[4:12, 4:12] - np.asarray(init, dtype=np.float32)[4:12, 4:12]).max() > 10  # LaMa filled
    mix = mixer(map_latent(nets["raw"], filled))
    request = tiny_request(tiny_model_dir, init="x", mask="m", strength=0.8, mask_blur=0, controlnet=lama_unit(nets))
    result = engine.generate(request, pictures=Pictures(init, mask))
    painted = inputs.take()
    call = {"image": init, "mask_image": mask, "control_image": lama.tensor(), "strength": 0.85}
    expected = reference(nets, "inpaint", mix, **call, height=16, width=16)
    wanted = inputs.take()
    assert_pixels_close(result.images[0], Image.composite(expected, init, mask))
    torch.testing.assert_close(painted[0], wanted[0], atol=1e-5, rtol=1e-5)
    mix = mixer(map_latent(nets["raw"], np.asarray(init)))  # the picture unfilled: another start
    reference(nets, "inpaint", mix, **call, height=16, width=16)
    assert (inputs.take()[0] - wanted[0]).abs().max() > 1e-3


def test_the_mix_acts_on_every_draw_of_a_source_and_only_for_lama_units(nets):
    source = NoiseSource("cpu", [7, 8], "cpu")
    assert not source.supplies_steps  # cpu: diffusers draws the steps, unless a mix must reach them
    source.mix = lambda noise: noise * 2 + 1
    assert source.supplies_steps
    drawn = [torch.Generator().manual_seed(seed) for seed in (7, 8)]
    first = torch.stack([torch.randn((4, 3, 3), generator=g) for g in drawn])
    torch.testing.assert_close(source.first((4, 3, 3)), first * 2 + 1)
    step = torch.stack([torch.randn((4, 3, 3), generator=g) for g in drawn])
    torch.testing.assert_close(source.next((4, 3, 3)), step * 2 + 1)

    class Units:
        units = list(read_units([{"module": "inpaint_only", "model": "m"}]))
        maps = [unit_map(units[0], init_picture(), 16, 16)]

    assert lama_mix(None, nets["raw"], 5) is None and lama_mix(Units(), nets["raw"], 5) is None
    Units.units = list(lama_unit(nets))
    latent = map_latent(nets["raw"], Units.maps[0].fitted[:, :, :3])
    noise = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(lama_mix(Units(), nets["raw"], 5)(noise), mixer(latent)(noise), atol=1e-5, rtol=0)
