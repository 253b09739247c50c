"""The ``text-cpu`` placement of ``--offload auto``: text encoders encode on the CPU, the rest lives on the GPU.

No GPU here: the meta device stands in for the accelerator (the transformer and VAE go there, so nothing on it can
compute, and a tensor that lands there by mistake shows). The prompt must still be encoded, on the CPU, and handed
over on the "GPU"; a GGUF T5 must give its file pages back after each encode and encode the same afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from helpers.gguf_files import write_gguf_text_encoder
from helpers.tiny_flow import make_tiny_flux
from transformers import T5EncoderModel

from jupyter_sd.engine import memory
from jupyter_sd.engine.loading import gguf_text

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    """The tiny Flux folder and its T5 as a Q8_0 GGUF file."""
    folder = make_tiny_flux(tmp_path_factory.mktemp("flux"))
    t5 = T5EncoderModel.from_pretrained(folder / "text_encoder_2")
    path = write_gguf_text_encoder(t5, folder.parent / "t5-Q8_0.gguf", "Q8_0")
    return folder, path


def _pipe(flux):
    folder, path = flux
    config = T5EncoderModel.config_class.from_pretrained(folder / "text_encoder_2")
    t5 = gguf_text.load_encoder((T5EncoderModel, config), path, torch.float32)
    return FluxPipeline.from_pretrained(folder, text_encoder_2=t5, dtype=torch.float32)


def _encode(pipe, device="cpu"):
    embeds, pooled, _ = pipe.encode_prompt(PROMPT, None, device=torch.device(device), max_sequence_length=16)
    return embeds, pooled


def test_text_encoders_encode_on_the_cpu_for_a_pipeline_on_another_device(flux):
    pipe = _pipe(flux)
    expected = _encode(pipe)
    assert {p.device.type for p in pipe.components["transformer"].parameters()} == {"cpu"}
    memory.place(pipe, "meta", "text-cpu")
    where = {name: {p.device.type for p in getattr(pipe, name).parameters()} for name in
             ("transformer", "vae", "text_encoder", "text_encoder_2")}  # fmt: skip
    assert where == {"transformer": {"meta"}, "vae": {"meta"}, "text_encoder": {"cpu"}, "text_encoder_2": {"cpu"}}
    # on CUDA, diffusers' pipe.device prefers the accelerator over the CPU: the call's device is the GPU's
    embeds, pooled = _encode(pipe, "meta")
    assert (embeds.device.type, pooled.device.type) == ("meta", "meta")  # encoded, then handed to the "GPU"
    assert embeds.shape == expected[0].shape and pooled.shape == expected[1].shape
    assert pipe.text_encoder_2._jupyter_sd_released == 1  # the GGUF T5 gave its pages back
    assert not hasattr(pipe.text_encoder, "_jupyter_sd_released")  # a plain CLIP holds no map: it stays


def test_a_released_gguf_encoder_encodes_the_same_and_paints_the_same(flux):
    plain = _pipe(flux)
    split = memory.place(_pipe(flux), "cpu", "text-cpu")
    call = {"prompt": PROMPT, "height": 32, "width": 32, "num_inference_steps": 2, "max_sequence_length": 16}
    images = [pipe(**call, generator=torch.Generator().manual_seed(3)).images[0] for pipe in (plain, split, split)]
    assert split.text_encoder_2._jupyter_sd_released == 2  # freed after each picture's encode, read back for the next
    reference = np.asarray(images[0], dtype=int)
    assert reference.std() > 1
    for image in images[1:]:
        assert np.array_equal(np.asarray(image, dtype=int), reference)


def test_auto_offload_chooses_the_cpu_for_mapped_encoders_when_host_ram_is_short(monkeypatch):
    """`memory.choose_offload` with (pretended) 5 MB of VRAM and 3 MB of host RAM: a 4 MB transformer fits the GPU,
    the 2 MB of a GGUF-mapped T5 need not stay in RAM: it encodes on the CPU and frees its pages."""
    from types import SimpleNamespace

    from jupyter_sd.engine.loading import plan

    t5 = torch.nn.Linear(1024, 512)
    pipe = SimpleNamespace(transformer=torch.nn.Linear(1024, 1024), text_encoder_2=t5)
    monkeypatch.setattr(memory, "free_vram_gb", lambda device: 0.005)
    monkeypatch.setattr(plan, "free_ram_gb", lambda: 0.003)
    family = SimpleNamespace(activations_gb=0.0001, text_encoders=("clip_l", "t5"))
    mode, words, _ = memory.choose_offload("auto", "cuda", pipe, family)
    assert (mode, words) == ("text-cpu", "on a GPU: transformer and VAE on GPU, T5 encode on CPU (0.0 GB free)")
    t5._jupyter_sd_map = object()  # as gguf_text leaves it
    assert memory.choose_offload("auto", "cuda", pipe, family)[1].endswith("T5 encode on CPU then free (0.0 GB free)")
