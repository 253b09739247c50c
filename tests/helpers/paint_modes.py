"""What the img2img, inpaint and hires-fix tests share: pictures with structure, masks, requests, raw pipelines.

The test files wrap `raw_pipelines` and `Engine()` in their own module-scoped fixtures (a fixture imported by name
would shadow the test's argument), so each file loads its pipelines once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jupyter_sd.recipe.request import PaintRequest


def generators(seeds: list[int]) -> list[Any]:
    """One seeded CPU generator per seed, as a diffusers reference call takes them."""
    import torch

    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def init_picture(size: int = 16) -> Image.Image:
    """A picture with structure (a disc and a gradient), so img2img has something to keep."""
    x = np.linspace(0, 255, size, dtype=np.float32)
    array = np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)), np.full((size, size), 90.0)], -1)
    image = Image.fromarray(array.astype(np.uint8))
    ImageDraw.Draw(image).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(200, 30, 40))
    return image


def box_mask(size: int, box: tuple[int, int, int, int]) -> Image.Image:
    """A square L mask, white (repaint) inside `box`."""
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, box)
    return mask


def tiny_request(model_dir: Path | str, **options: Any) -> PaintRequest:
    """A request on the tiny model: 6 steps, seed 5, no previews, nothing saved (options override)."""
    base = dict(prompt="a red circle", model=str(model_dir), steps=6, seed=5, preview_interval=0, save=False)
    base["rng"] = "cpu"  # the references are diffusers drawing from CPU generators
    return PaintRequest(**{**base, **options})


def raw_pipelines(model_dir: Path | str) -> dict[str, Any]:
    """Plain diffusers pipelines of the model, loaded on their own (not the engine's objects), and its scheduler
    config (``"config"``) to build each test's sampler from."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, StableDiffusionPipeline

    txt2img = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    pipes = {
        "txt2img": txt2img,
        "img2img": AutoPipelineForImage2Image.from_pretrained(model_dir, safety_checker=None),
        "inpaint": AutoPipelineForInpainting.from_pretrained(model_dir, safety_checker=None),
        "config": dict(txt2img.scheduler.config),
    }
    for name in ("txt2img", "img2img", "inpaint"):
        pipes[name].set_progress_bar_config(disable=True)
    return pipes


def raw_txt2img(model_dir: Path | str) -> Any:
    """Plain diffusers txt2img of the model, loaded on its own, with its scheduler config kept as ``_base``."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe._base = dict(pipe.scheduler.config)
    return pipe


def euler_request(model_dir: Path | str, steps: int, **changes: Any) -> PaintRequest:
    """'a red circle', seed 3, Euler, CPU noise, no previews, nothing saved (changes override)."""
    base = {"prompt": "a red circle", "model": str(model_dir), "steps": steps, "seed": 3, "sampler": "Euler"}
    return PaintRequest(**{**base, "rng": "cpu", "preview": "none", "save": False, **changes})


def outline_map(size: int = 32, width: int = 2) -> Image.Image:
    """A ready control map (module none): a white square outline (at 6..25 of 32, scaled) and a diagonal on black."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    corner, far = 6 * size // 32, 25 * size // 32
    draw.rectangle([corner, corner, far, far], outline=(255, 255, 255), width=width)
    draw.line([0, size - 1, size - 1, 0], fill=(255, 255, 255), width=width)
    return image


def square_outline(size: int = 32) -> Image.Image:
    """A ready control map (module none): a white square outline on black."""
    image = Image.new("RGB", (size, size))
    ImageDraw.Draw(image).rectangle([6, 6, 25, 25], outline=(255, 255, 255), width=2)
    return image
