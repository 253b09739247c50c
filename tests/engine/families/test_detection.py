"""Which family a model is: from a loaded pipeline's class, a folder's model_index.json, a single file's tensors."""

from __future__ import annotations

import json

import pytest
import torch

from jupyter_sd.engine import Engine
from jupyter_sd.engine.families import (
    FAMILIES,
    family_for_class,
    family_named,
    family_of_checkpoint,
    family_of_folder,
)
from jupyter_sd.recipe.request import PaintRequest

NAMES = ("SDXL", "SD2", "SD1", "Chroma", "Flux.2 [dev]", "Flux.2 klein", "Flux", "SD3", "Z-Image", "Qwen-Image")


@pytest.mark.parametrize(
    ("keys", "name"),
    [
        (["conditioner.embedders.1.model.ln_final.weight", "model.diffusion_model.input_blocks.0.0.weight"], "SDXL"),
        (["cond_stage_model.model.ln_final.weight", "model.diffusion_model.input_blocks.0.0.weight"], "SD2"),
        (["cond_stage_model.transformer.text_model.final_layer_norm.weight"], "SD1"),
        (["model.diffusion_model.input_blocks.0.0.weight"], "SD1"),  # no text encoder inside: SD 1, as before
        (["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"], "Flux"),
        (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"], "Flux"),
        (["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"], "SD3"),
        (["double_blocks.0.img_attn.qkv.weight", "distilled_guidance_layer.in_proj.bias"], "Chroma"),
        (["model.diffusion_model.layers.0.adaLN_modulation.0.weight", "cap_embedder.0.weight"], "Z-Image"),
        (["cap_embedder.0.weight", "layers.0.adaLN_modulation.0.bias", "layers.0.attention.qkv.weight"], "Z-Image"),
        (["transformer_blocks.0.img_mod.1.weight", "txt_norm.weight", "img_in.weight"], "Qwen-Image"),
        (["double_blocks.0.img_attn.qkv.weight", "single_stream_modulation.lin.weight"], "Flux.2 klein"),
        (["single_stream_modulation.lin.weight", "guidance_in.in_layer.weight"], "Flux.2 [dev]"),  # klein's + guidance
        (
            [
                "model.diffusion_model.single_stream_modulation.lin.weight",
                "model.diffusion_model.guidance_in.in_layer.weight",
            ],
            "Flux.2 [dev]",
        ),
        (["double_blocks.0.img_attn.qkv.weight", "guidance_in.in_layer.weight"], "Flux"),  # Flux.1-dev's guidance
    ],
)
def test_single_file_family_from_tensor_names(keys, name):
    assert family_of_checkpoint(keys).name == name


@pytest.mark.parametrize(
    ("class_name", "width", "unet", "second", "name"),
    [
        ("StableDiffusionPipeline", 768, True, False, "SD1"),
        ("StableDiffusionPipeline", 1024, True, False, "SD2"),
        ("StableDiffusionInpaintPipeline", 1024, True, False, "SD2"),
        ("StableDiffusionXLImg2ImgPipeline", 1280, True, True, "SDXL"),
        ("StableDiffusionControlNetPipeline", 768, True, False, "SD1"),  # an undeclared UNet class: as before
        ("StableDiffusionXLControlNetPipeline", 2048, True, True, "SDXL"),
        ("FluxPipeline", 0, False, True, "Flux"),  # a second text encoder no longer makes it SDXL
        ("StableDiffusion3Pipeline", 0, False, True, "SD3"),
        ("ChromaPipeline", 0, False, False, "Chroma"),
        ("ChromaInpaintPipeline", 0, False, False, "Chroma"),
        ("ZImagePipeline", 0, False, False, "Z-Image"),
        ("ZImageImg2ImgPipeline", 0, False, False, "Z-Image"),
        ("QwenImagePipeline", 0, False, False, "Qwen-Image"),
        ("QwenImageInpaintPipeline", 0, False, False, "Qwen-Image"),
        ("Flux2KleinPipeline", 0, False, False, "Flux.2 klein"),
    ],
)
def test_family_from_pipeline_class(class_name, width, unet, second, name):
    assert family_for_class(class_name, width, unet, second).name == name


LUMINA2 = ["cap_embedder.0.weight", "cap_embedder.1.weight", "layers.0.adaLN_modulation.1.weight",
           "layers.0.adaLN_modulation.1.bias", "layers.0.attention.qkv.weight",
           "context_refiner.0.attention.qkv.weight", "final_layer.adaLN_modulation.1.weight", "x_embedder.weight",
           "norm_final.weight"]  # fmt: skip
"""Lumina Image 2.0's tensor names as ComfyUI's NextDiT holds them: ``adaLN_modulation`` is SiLU then Linear."""


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a_lumina2_file_is_one_line_not_zimage(prefix, tmp_path):
    from jupyter_sd.engine.loading.files import inspect

    with pytest.raises(ValueError) as caught:
        family_of_checkpoint([prefix + name for name in LUMINA2])
    names = ", ".join(NAMES)
    assert str(caught.value) == (
        f"model: this file is a Lumina 2 model; Lumina 2 is not a family jupyter_sd paints (supported: {names})"
    )
    path = _saved([prefix + name for name in LUMINA2], tmp_path / "lumina_2.safetensors")
    with pytest.raises(ValueError, match="^model: 'lumina_2.safetensors' is a Lumina 2 model; Lumina") as caught:
        Engine().generate(PaintRequest(prompt="a fox", model=str(path), steps=1, width=64, height=64, save=False))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
    zimage = [name.replace("adaLN_modulation.1", "adaLN_modulation.0") for name in LUMINA2]
    assert inspect(_saved(zimage, tmp_path / "z.safetensors")).family.name == "Z-Image"


def _saved(names, path):
    from safetensors.torch import save_file

    save_file({name: torch.zeros(2, 2) for name in names}, str(path))
    return path


def test_a_model_of_no_family_is_one_line(tmp_path):
    with pytest.raises(ValueError) as info:
        family_for_class("WanPipeline", 0, False, True)
    assert str(info.value) == (
        f"model: WanPipeline is not a model family jupyter_sd paints yet (supported: {', '.join(NAMES)})"
    )
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "HunyuanImagePipeline"}))
    with pytest.raises(ValueError, match="^model: HunyuanImagePipeline is not a model family"):
        family_of_folder(folder)


def test_sd2_folder_is_told_from_sd1_by_its_text_width(tmp_path):
    folder = tmp_path / "sd2"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["x", "y"]}))
    (folder / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024}))
    assert family_of_folder(folder).name == "SD2"


def test_every_family_is_declared_whole():
    """Each family names its txt2img class (a real diffusers class), a pipeline class for each mode (diffusers', or
    one of ours where diffusers has none: Flux.2 [dev]'s inpaint), a native size and preview factors per channel."""
    import diffusers

    for family in FAMILIES:
        assert family_named(family.name) is family
        assert hasattr(diffusers, family.pipelines["txt2img"]) and all(hasattr(diffusers, n) for n in family.classes)
        for name in family.pipelines.values():
            assert issubclass(family.pipeline_type(name), diffusers.DiffusionPipeline), (family.name, name)
        assert len(family.latent_rgb["factors"]) == family.latent_channels and family.native_size >= 512


def test_a_flux_single_file_without_configs_is_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "flux1-dev.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError) as info:
        Engine().generate(PaintRequest(prompt="a fox", model=str(path), steps=1))
    text = str(info.value)
    assert text.startswith("model: 'flux1-dev.safetensors' is a Flux file; pass --model-config with a diffusers Flux")
    assert "\n" not in text and len(text) < 200


def test_auto_dtype_is_the_familys_half_precision(tmp_path):
    """Flux overflows in float16: ``--dtype auto`` gives it bfloat16 on a GPU, float32 on the CPU, as for SD."""
    from jupyter_sd.engine.families import FLUX, SD1
    from jupyter_sd.engine.models import ModelSource, pick_dtype, source_family

    assert pick_dtype("auto", "cuda", FLUX) is torch.bfloat16 and pick_dtype("auto", "cuda", SD1) is torch.float16
    assert pick_dtype("auto", "cpu", FLUX) is torch.float32 and pick_dtype("float16", "cuda", FLUX) is torch.float16
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert source_family(ModelSource(str(folder), "folder", "flux")) is FLUX


def test_a_forge_flux_recipe_pastes_its_distilled_cfg():
    from jupyter_sd.recipe.paste import request_from_infotext

    text = "a fox\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 5, Seed: 1"
    request = request_from_infotext(text)
    assert request.distilled_cfg == 5.0 and request.guidance == 1.0 and request.sampler == "Euler"
