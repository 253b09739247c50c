"""``depth_marigold`` on a tiny Marigold pipeline built from config and saved in the hub repo's layout where the
annotators' weights go, against diffusers' own ``MarigoldDepthPipeline`` called here and sd-webui-controlnet's
post-processing written out here (the decoded depth's channel mean d, ``0.5 − 0.5·d``, clipped, ×255, 8 bits).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, MarigoldDepthPipeline, UNet2DConditionModel
from helpers.annotator_nets import offline_refusal
from helpers.fake_web import FakeWebServer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from jupyter_sd import library
from jupyter_sd.engine.control.annotator_nets import unload_annotators
from jupyter_sd.engine.control.annotator_weights import WEIGHTS
from jupyter_sd.engine.control.preprocessors import preprocess

_END = "<|endoftext|>"
_SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": _END, "unk_token": _END, "pad_token": "!"}


def _tokenizer(folder: Path) -> CLIPTokenizer:
    """SD 2's tokenizer files as the repo has them (vocab.json, merges.txt and two configs), on a tiny vocabulary."""
    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    vocab.update({f"{ch}</w>": len(vocab) for ch in "abcdefghijklmnopqrstuvwxyz"})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(_SPECIAL))
    config = {**_SPECIAL, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return CLIPTokenizer.from_pretrained(folder)


def _save_tiny_marigold(folder: Path) -> None:
    """Marigold's parts at tiny widths: an 8-channel UNet (picture latent and depth latent), a 4-level VAE (÷8),
    a CLIP text encoder for the empty prompt, Marigold v1.0's DDIM schedule (v-prediction), saved as diffusers does."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=29,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction",
    )
    pipe = MarigoldDepthPipeline(
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(folder.parent / "tokenizer-files"),
        prediction_type="depth",
        default_denoising_steps=10,
        default_processing_resolution=768,
    )
    pipe.save_pretrained(folder)
    for name in folder.joinpath("tokenizer").iterdir():  # the repo's four files, not transformers' own save
        name.unlink()
    for name in folder.parent.joinpath("tokenizer-files").iterdir():
        (folder / "tokenizer" / name.name).write_bytes(name.read_bytes())


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("marigold") / "marigold-depth-v1-0"
    _save_tiny_marigold(folder)
    return folder


@pytest.fixture()
def marigold(saved, tmp_path) -> Path:
    root = tmp_path / "models"
    folder = root / "ControlNet" / "annotators" / "marigold" / "marigold-depth-v1-0"
    for path in saved.rglob("*"):
        if path.is_file():
            (folder / path.relative_to(saved)).parent.mkdir(parents=True, exist_ok=True)
            (folder / path.relative_to(saved)).write_bytes(path.read_bytes())
    before = library.models_dir()
    library.set_models_dir(root)
    unload_annotators()
    yield folder
    unload_annotators()
    library.set_models_dir(before)


def _picture(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) % 200], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


def _extension_map(pipe: MarigoldDepthPipeline, padded: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """diffusers' pipeline run on the padded picture as it is; its depth latent decoded as the extension does."""
    out = pipe(
        padded,
        num_inference_steps=steps,
        ensemble_size=1,
        processing_resolution=0,
        match_input_resolution=False,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        output_latent=True,
    )
    with torch.no_grad():
        depth = pipe.vae.decode(out.latent / pipe.vae.config.scaling_factor).sample.mean(dim=1)[0]
    return ((0.5 - depth * 0.5) * 255.0).clip(0, 255).numpy().astype(np.uint8)


def test_the_saved_pipeline_has_the_hub_repos_files(saved):
    files = {path.relative_to(saved).as_posix() for path in saved.rglob("*") if path.is_file()}
    assert files == set(WEIGHTS["marigold"].files)


def test_marigold_map_is_the_pipelines_depth_inverted_at_the_processor_resolution(marigold):
    image = _picture(70, 90)  # at 128: 128×165 (bicubic up), padded to 128×192
    made = preprocess("depth_marigold", image, 128, 3, seed=5)  # Threshold A: Steps
    scaled = cv2.resize(image, (165, 128), interpolation=cv2.INTER_CUBIC)
    padded = np.pad(scaled, [[0, 0], [0, 27], [0, 0]], mode="edge")
    pipe = MarigoldDepthPipeline.from_pretrained(marigold, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    expected = _extension_map(pipe, padded, 3, 5)[:128, :165]
    assert made.shape == (128, 165, 3)
    assert (made == made[:, :, :1]).all()  # grey, in three channels
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > 20


def test_pixel_perfect_picks_the_processor_resolution_from_the_size_painted(marigold):
    made = preprocess("depth_marigold", _picture(70, 90), -1, 1, pixel_perfect=(180, 140, "Just Resize"))
    assert made.shape == (140, 180, 3)  # short side 70 × 2: not the default 768


def test_a_folder_that_is_not_a_marigold_pipeline_is_refused_in_one_line(marigold):
    (marigold / "unet" / "config.json").write_text("not a config")
    with pytest.raises(ValueError, match="is not a Marigold depth pipeline") as refused:
        preprocess("depth_marigold", _picture(64, 64), 128, 1)
    assert "\n" not in str(refused.value)


def test_missing_weights_offline_are_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "depth_marigold", _picture(64, 64), 128)
    assert "ControlNet/annotators/marigold/marigold-depth-v1-0" in line and "prs-eth/marigold-depth-v1-0" in line
    assert "offline" in line


def test_the_pipeline_downloads_into_its_subfolders(saved, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    with FakeWebServer() as web:
        monkeypatch.setenv("HF_ENDPOINT", web.base)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        for name in WEIGHTS["marigold"].files:
            web.add_hub_file("prs-eth/marigold-depth-v1-0", name, (saved / name).read_bytes())
        before = library.models_dir()
        library.set_models_dir(tmp_path / "models")
        try:
            made = preprocess("depth_marigold", _picture(64, 64), 128, 1)
        finally:
            unload_annotators()
            library.set_models_dir(before)
    folder = tmp_path / "models" / "ControlNet" / "annotators" / "marigold" / "marigold-depth-v1-0"
    for name in WEIGHTS["marigold"].files:
        assert (folder / name).read_bytes() == (saved / name).read_bytes()
    assert made.shape == (128, 128, 3) and not list(folder.rglob("*.part"))
