"""SDXL Union / ProMax ControlNets: units painting through Engine.generate against diffusers' own
``StableDiffusionXLControlNetUnion*Pipeline`` (separately loaded parts, the same embeddings, CPU generators and
sampler), the control type each unit takes, the ``Union Control Type`` round trip, and the one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, save_union_file, tiny_controlnet, tiny_union
from PIL import Image, ImageDraw

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.control.union import unit_control_type
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import ControlUnit, infotext_units, read_units
from jupyter_sd.recipe.request import PaintRequest


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    """A tiny SDXL model; a ProMax-shaped union ControlNet as a folder and as one file; a 6-type union; raw parts."""
    from diffusers import ControlNetUnionModel, StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    root = tmp_path_factory.mktemp("union")
    model = make_tiny_sdxl(root / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    raw.set_progress_bar_config(disable=True)
    promax = tiny_union(raw.unet, seed=3)
    folder = save_folder(promax, root / "union_folder")
    return {
        "model": model,
        "raw": raw,
        "folder": folder,
        "file": save_union_file(promax, root / "diffusion_pytorch_model_promax.safetensors"),
        "six": save_union_file(tiny_union(raw.unet, seed=4, control_types=6), root / "union_six.safetensors"),
        "plain": save_folder(tiny_controlnet(raw.unet, seed=5), root / "plain_cn"),
        "net": ControlNetUnionModel.from_pretrained(folder),  # the reference's own copy
        "config": dict(raw.scheduler.config),
    }


def hint(flip: bool = False) -> Image.Image:
    image = Image.new("RGB", (16, 16))
    ImageDraw.Draw(image).rectangle([2, 4, 13, 11], outline=(255, 255, 255))
    ImageDraw.Draw(image).line([0, 15, 15, 0], fill=(200, 200, 200))
    return image.transpose(Image.FLIP_LEFT_RIGHT) if flip else image


def reference(xl, kind, controlnet, **call):
    """diffusers' own union pipeline of `kind` over the raw parts: 'a red circle', 4 steps, seed 1, DPM++ 2M."""
    import diffusers

    name = {"txt2img": "", "img2img": "Img2Img", "inpaint": "Inpaint"}[kind]
    pipe = getattr(diffusers, f"StableDiffusionXLControlNetUnion{name}Pipeline")(
        **xl["raw"].components, controlnet=controlnet
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", xl["config"])
    embeddings = build_conditioning(xl["raw"], "a red circle", "", 4).pipeline_kwargs()
    base = {"num_inference_steps": 4, "guidance_scale": 7.0, "generator": generators([1]), "width": 16, "height": 16}
    base["controlnet_conditioning_scale"] = 1.0
    return pipe(**embeddings, **{**base, **call}).images[0]


def request(xl, units, **options):
    base = dict(prompt="a red circle", model=str(xl["model"]), steps=4, seed=1, width=16, height=16, rng="cpu")
    base.update(preview="none", save=False, sampler="DPM++ 2M", controlnet=read_units(units))
    return PaintRequest(**{**base, **options})


def test_two_units_of_one_union_file_equal_diffusers_multi_union(engine, xl):
    """Two units naming the same ProMax file (loaded once, offline, shaped from the UNet): Depth and Hard Edge maps,
    their weights and guidance windows, against diffusers' MultiControlNetUnionModel of the folder's model twice."""
    from diffusers.models.controlnets import MultiControlNetUnionModel

    expected = reference(
        xl,
        "txt2img",
        MultiControlNetUnionModel([xl["net"], xl["net"]]),
        control_image=[hint(), hint(flip=True)],
        control_mode=[1, 3],
        controlnet_conditioning_scale=[0.7, 1.2],
        control_guidance_start=[0.0, 0.25],
        control_guidance_end=[0.5, 1.0],
    )
    units = [
        {"module": "none", "model": str(xl["file"]), "weight": 0.7, "guidance_end": 0.5, "union_control_type": "Depth"},
        {"module": "none", "model": str(xl["file"]), "weight": 1.2, "guidance_start": 0.25, "union_control_type": 3},
    ]
    result = engine.generate(request(xl, units), pictures=Pictures(control=(hint(), hint(flip=True))))
    assert_pixels_close(result.images[0], expected)
    swapped = reference(xl, "txt2img", xl["net"], control_image=[hint()], control_mode=[5])
    assert np.abs(pixels(swapped) - pixels(expected)).max() > 5  # the control type changes the picture

    written = result.params
    assert written["ControlNet 0"].endswith("Union Control Type: Depth")
    assert written["ControlNet 1"].endswith("Union Control Type: Hard Edge")
    assert "Model: diffusion_pytorch_model_promax [" in written["ControlNet 0"]
    pasted = infotext_units(written)
    assert [unit.union_control_type for unit in pasted.values()] == ["Depth", "Hard Edge"]
    assert pasted[1].guidance_start == 0.25 and pasted[1].weight == 1.2


def test_img2img_and_inpaint_with_a_union_folder_equal_diffusers(engine, xl):
    """A diffusers union folder (config class ControlNetUnionModel); tile_resample at rate 1 keeps the picture, and
    its Control Type is Tile (6), as the extension's Tile filter lists it."""
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    units = [{"module": "tile_resample", "model": str(xl["folder"]), "weight": 0.9, "threshold_a": 1}]
    call = {"control_image": [init], "control_mode": [6], "controlnet_conditioning_scale": 0.9}
    # A1111's strength 0.6 at 4 steps: t_enc = 2, 3 steps run = diffusers' strength 0.875
    expected = reference(xl, "img2img", xl["net"], image=init, strength=0.875, **call)
    result = engine.generate(request(xl, units, init="x", strength=0.6), pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)
    assert result.params["ControlNet 0"].endswith("Union Control Type: Tile")

    painted = reference(xl, "inpaint", xl["net"], image=init, mask_image=mask, strength=0.875, **call)
    expected = Image.composite(painted, init, mask)
    options = {"init": "x", "mask": "m", "strength": 0.6, "mask_blur": 0}
    result = engine.generate(request(xl, units, **options), pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)


def test_each_module_takes_the_extensions_control_type():
    types = {
        "canny": "Hard Edge",
        "lineart_anime": "Hard Edge",
        "mlsd": "Hard Edge",
        "softedge_pidinet": "Soft Edge",
        "scribble_xdog": "Soft Edge",
        "depth_anything_v2": "Depth",
        "dw_openpose_full": "OpenPose",
        "normal_bae": "Normal Map",
        "seg_ofade20k": "Segmentation",
        "blur_gaussian": "Tile",
        "tile_colorfix": "Tile",
        "inpaint_only": "Inpaint",
    }
    assert {module: unit_control_type(ControlUnit(module=module)) for module in types} == types
    chosen = ControlUnit(module="canny", union_control_type="Soft Edge")  # the unit's own choice wins
    assert unit_control_type(chosen) == "Soft Edge"
    assert read_units(["Module: none, Union Control Type: openpose"])[0].union_control_type == "OpenPose"
    with pytest.raises(ValueError, match="unknown union control type 'sketch'; one of: OpenPose, Depth"):
        read_units([{"module": "none", "union_control_type": "sketch"}])


def one_line(engine, xl, units, pictures, match):
    with pytest.raises(ValueError, match=match) as error:
        engine.generate(request(xl, units), pictures=pictures)
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_union_refusals_are_one_line(engine, xl, tmp_path):
    pictures = Pictures(control=(hint(), hint()))
    none = {"module": "none", "model": str(xl["file"])}
    one_line(engine, xl, [none], pictures, "module 'none' needs a 'Union Control Type: Depth'")
    six = {"module": "tile_resample", "model": str(xl["six"])}
    one_line(engine, xl, [six], pictures, r"union_six knows 6 control types \(OpenPose.*Segmentation\), not Tile")
    from safetensors.torch import save_file

    other = {f"control_model.{k}": v for k, v in tiny_union(xl["raw"].unet).state_dict().items()}
    renamed = tmp_path / "union_ldm.safetensors"
    save_file({k: v.contiguous() for k, v in other.items() if "controlnet_cond_embedding" not in k}, str(renamed))
    one_line(engine, xl, [{**none, "model": str(renamed)}], pictures, "union_ldm.safetensors is a union ControlNet in")


def soft_hook(weight, cond_only):
    """sd-webui-controlnet's formulas as a hook on one model: residual i × weight × 0.825^(12−i); cond half only."""
    import torch

    def hook(module, args, output):
        down, mid = output
        residuals = [r * (weight * 0.825 ** (12 - i)) for i, r in enumerate([*down, mid])]
        if cond_only:
            residuals = [torch.cat([torch.zeros_like(r[:1]), r[1:]]) for r in residuals]
        return tuple(residuals[:-1]), residuals[-1]

    return hook


def test_control_modes_of_two_units_of_one_model_follow_their_windows(engine, xl):
    """One union file in two units, "ControlNet is more important" (0.8, steps 2-4) and "My prompt is more important"
    (1.1, steps 1-2): each step's residuals take the formula of the unit that runs, while diffusers skips the other.
    The reference: two separate copies, each with its formula as a hook (scale 1: the hook applies the weight)."""
    from diffusers import ControlNetUnionModel
    from diffusers.models.controlnets import MultiControlNetUnionModel

    first, second = (ControlNetUnionModel.from_pretrained(xl["folder"]) for _ in range(2))
    first.register_forward_hook(soft_hook(0.8, cond_only=True))
    second.register_forward_hook(soft_hook(1.1, cond_only=False))
    expected = reference(
        xl,
        "txt2img",
        MultiControlNetUnionModel([first, second]),
        control_image=[hint(), hint(flip=True)],
        control_mode=[1, 2],
        controlnet_conditioning_scale=[1.0, 1.0],
        control_guidance_start=[0.25, 0.0],
        control_guidance_end=[1.0, 0.5],
    )
    model = {"module": "none", "model": str(xl["file"])}
    units = [
        {**model, "weight": 0.8, "guidance_start": 0.25, "control_mode": 2, "union_control_type": "Depth"},
        {**model, "weight": 1.1, "guidance_end": 0.5, "control_mode": 1, "union_control_type": "Soft Edge"},
    ]
    result = engine.generate(request(xl, units), pictures=Pictures(control=(hint(), hint(flip=True))))
    assert_pixels_close(result.images[0], expected)


def test_union_models_by_name_from_the_controlnet_folder(engine, xl, tmp_path, offline):
    """A renamed ProMax file and a folder whose config names xinsir's own class (``ControlNetModel_Union``), both in
    ControlNet/, are found by name and load as union models, offline; their pictures equal the folder's own."""
    import json
    import shutil

    from diffusers import ControlNetUnionModel

    from jupyter_sd import library

    models = tmp_path / "models" / "ControlNet"
    shutil.copytree(xl["folder"], models / "controlnet-union-sdxl-1.0")
    config = models / "controlnet-union-sdxl-1.0" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "ControlNetModel_Union"}))
    shutil.copy(xl["file"], models / "controlnet-union-promax-sdxl.safetensors")
    library.set_models_dir(tmp_path / "models")
    try:
        pictures = Pictures(control=(hint(),))
        painted = {
            name: engine.generate(
                request(xl, [{"module": "none", "model": name, "union_control_type": 1}]), pictures=pictures
            )
            for name in ("controlnet-union-sdxl-1.0", "controlnet-union-promax-sdxl")
        }
        loaded = engine._pipe.__dict__["_jupyter_sd_controlnets"].values()
    finally:
        library.set_models_dir(None)
    assert sum(isinstance(item.model, ControlNetUnionModel) for item in loaded) >= 2
    first, second = (pixels(result.images[0]) for result in painted.values())
    assert np.array_equal(first, second)  # the same weights, through the folder and the single file
    expected = reference(xl, "txt2img", xl["net"], control_image=[hint()], control_mode=[1])
    assert_pixels_close(painted["controlnet-union-sdxl-1.0"].images[0], expected)


def test_an_inpaint_unit_gives_promax_the_picture_with_the_area_black(engine, xl):
    """inpaint_only on ProMax (Control Type Inpaint, 7): its map is the init with the masked area black, as xinsir
    trained it (the SD1.5 inpaint ControlNet's −1 there is not what ProMax knows)."""
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    hole = np.asarray(init).copy()
    hole[np.asarray(mask) > 127] = 0
    call = {"control_image": [Image.fromarray(hole)], "control_mode": [7], "strength": 0.875}
    painted = reference(xl, "inpaint", xl["net"], image=init, mask_image=mask, **call)
    units = [{"module": "inpaint_only", "model": str(xl["file"])}]
    options = {"init": "x", "mask": "m", "strength": 0.6, "mask_blur": 0}
    result = engine.generate(request(xl, units, **options), pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], Image.composite(painted, init, mask))
    assert result.params["ControlNet 0"].endswith("Union Control Type: Inpaint")


def residual_sum_reference(xl, union_map, plain_map, union_window=(0.0, 0.5), plain_weight=0.8):
    """Plain diffusers SDXL whose UNet is handed, each step, the sum of both ControlNets' residuals computed here:
    the union net (Depth, weight 1, its window by diffusers' rule) and the ordinary one (its weight), each called
    on the UNet's own batch, text and SDXL conditions, with its map repeated for CFG's two halves."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(**xl["raw"].components)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", xl["config"])
    union, plain = xl["net"], ControlNetModel.from_pretrained(xl["plain"])

    def as_tensor(image):  # the map in 0..1, once per CFG half
        return torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)

    depth = torch.zeros(1, union.config.num_control_type)
    depth[0, 1] = 1
    forward, step = pipe.unet.forward, [0]

    def with_residuals(sample, t, encoder_hidden_states, **kwargs):
        i, start, end = step[0], *union_window
        step[0] += 1
        added = kwargs["added_cond_kwargs"]
        common = dict(encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added, return_dict=False)
        down, mid = plain(sample, t, controlnet_cond=as_tensor(plain_map), conditioning_scale=plain_weight, **common)
        if not (i / 4 < start or (i + 1) / 4 > end):
            down_u, mid_u = union(sample, t, controlnet_cond=[as_tensor(union_map)], control_type=depth.repeat(2, 1),
                                  control_type_idx=[1], conditioning_scale=1.0, **common)  # fmt: skip
            down, mid = [a + b for a, b in zip(down_u, down)], mid_u + mid
        kwargs.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        return forward(sample, t, encoder_hidden_states, **kwargs)

    pipe.unet.forward = with_residuals
    try:
        embeddings = build_conditioning(xl["raw"], "a red circle", "", 4).pipeline_kwargs()
        return pipe(**embeddings, num_inference_steps=4, guidance_scale=7.0, generator=generators([1]), width=16,
                    height=16).images[0]  # fmt: skip
    finally:
        del pipe.unet.forward


def test_union_and_ordinary_controlnets_in_one_picture_add_their_residuals(engine, xl):
    """A ProMax Depth unit (window 0-0.5) and an ordinary ControlNet (weight 0.8) in one SDXL picture: the union
    pipeline's Multi model holds the ordinary net wrapped, and the UNet gets both nets' residuals summed."""
    units = [
        {"module": "none", "model": str(xl["file"]), "guidance_end": 0.5, "union_control_type": "Depth"},
        {"module": "none", "model": str(xl["plain"]), "weight": 0.8},
    ]
    result = engine.generate(request(xl, units), pictures=Pictures(control=(hint(), hint(flip=True))))
    expected = residual_sum_reference(xl, hint(), hint(flip=True))
    assert_pixels_close(result.images[0], expected)
    union_only = engine.generate(request(xl, units[:1]), pictures=Pictures(control=(hint(),)))
    assert np.abs(pixels(union_only.images[0]) - pixels(expected)).max() > 5  # the ordinary unit paints too
    assert result.params["ControlNet 0"].endswith("Union Control Type: Depth")
    assert "Union Control Type" not in result.params["ControlNet 1"]
