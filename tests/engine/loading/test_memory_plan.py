"""The memory plan of ``--offload auto`` as a pure function of sizes, free VRAM and host RAM (GB, made-up cards)."""

from __future__ import annotations

from jupyter_sd.engine.families import FLUX, SDXL
from jupyter_sd.engine.loading.plan import MemoryChoice, plan_memory

# Flux.1-dev's parts in GB: the transformer in bf16 / GGUF Q8_0 / Q4_K, CLIP-L, T5-XXL in bf16 and fp8, the VAE.
FLUX_BF16 = {"transformer": 22.2, "text_encoder": 0.23, "text_encoder_2": 8.9, "vae": 0.16}
FLUX_Q4K = {**FLUX_BF16, "transformer": 6.5}
FLUX_Q4K_T5_FP8 = {**FLUX_Q4K, "text_encoder_2": 4.6}
FLUX_Q4K_T5_Q8 = {**FLUX_Q4K, "text_encoder_2": 5.1}
SDXL_FP16 = {"unet": 4.8, "text_encoder": 0.23, "text_encoder_2": 1.3, "vae": 0.16}


def _plan(sizes, vram, ram=None, family=FLUX, gpu="15 GB T4", mapped=False):
    return plan_memory(sizes, vram, ram, family.activations_gb, gpu, family.text_encoders, mapped)


def test_no_cuda_means_no_plan():
    assert _plan(FLUX_BF16, None, 12.7) == MemoryChoice("none", False, "")


def test_everything_on_a_big_gpu():
    choice = _plan(FLUX_BF16, 79.0, 120.0, gpu="80 GB H100")
    assert choice == MemoryChoice("none", False, "on a 80 GB H100: all on the GPU")


def test_flux_q4k_on_a_free_t4_encodes_on_the_cpu():
    """A free Colab: 15.8 GB of weights exceed the T4's 14.7 GB and the host's 12.7 GB. The transformer and VAE fit
    the GPU with room to work (6.7 + 4 GB), the text encoders the host RAM (9.1 GB): they encode on the CPU."""
    choice = _plan(FLUX_Q4K, 14.7, 12.7)
    assert choice == MemoryChoice(
        "text-cpu", False, "on a 15 GB T4: transformer and VAE on GPU, CLIP and T5 encode on CPU"
    )
    q5k = {**FLUX_Q4K_T5_Q8, "transformer": 8.4}  # 13.9 GB of GGUF files: a T5 Q8_0 gives its pages back
    mapped = _plan(q5k, 14.7, 12.7, mapped=True)
    assert mapped.words == "on a 15 GB T4: transformer and VAE on GPU, CLIP and T5 encode on CPU then free"


def test_flux_q4k_on_a_t4_with_room_in_host_ram_takes_turns_on_the_gpu():
    """With 30 GB of host RAM every part can wait there: T5 encodes on the GPU (faster) and goes back."""
    choice = _plan(FLUX_Q4K, 14.7, 30.0)
    assert (choice.offload, choice.vae_tiled) == ("model", False)
    assert choice.words == (
        "on a 15 GB T4: transformer on GPU while painting, CLIP and T5 encode on GPU then return to CPU"
    )


def test_host_ram_short_with_no_gpu_room_for_the_transformer_says_so():
    """Flux Q8_0 (12.7 GB) cannot stay on the T4 with room to work: turns, and the line says the RAM is short."""
    choice = _plan({**FLUX_Q4K_T5_Q8, "transformer": 12.7}, 14.7, 12.7)
    assert choice.offload == "model"
    assert choice.words.endswith("host RAM short (18.2 GB of weights, 12.7 GB free): use GGUF/fp8 files")


def test_a_transformer_that_barely_fits_takes_turns_with_little_room():
    choice = _plan(FLUX_Q4K_T5_FP8, 7.5, 30.0, gpu="8 GB RTX")
    assert (choice.offload, choice.vae_tiled) == ("model", False)  # 6.5 GB + 4 GB of work > 7.5 GB; the VAE fits
    assert choice.words == "on a 8 GB RTX: transformer on GPU (little room to work), CLIP and T5 one at a time"


def test_a_transformer_that_does_not_fit_goes_layer_by_layer():
    choice = _plan(FLUX_BF16, 14.7, 60.0)
    assert (choice.offload, choice.vae_tiled) == ("sequential", False)
    assert "layer by layer: the transformer (22.2 GB) does not fit" in choice.words
    assert "the text_encoder_2 (8.9 GB) does not fit" in _plan(FLUX_Q4K, 7.5, 30.0).words  # T5 in bf16 on 8 GB


def test_sdxl_keeps_its_thresholds_and_names_its_clips():
    assert _plan(SDXL_FP16, 14.5, family=SDXL).offload == "none"
    choice = _plan(SDXL_FP16, 8.5, family=SDXL)
    assert choice.offload == "model" and "unet on GPU while painting, CLIP encode" in choice.words
    assert _plan(SDXL_FP16, 5.8, family=SDXL).words.endswith("unet on GPU (little room to work), CLIP one at a time")


def test_a_small_card_decodes_in_tiles():
    """4 GB free: no room for a whole Flux decode (0.16 GB VAE + 4 GB of work): tiles, whatever the picture size."""
    choice = _plan(FLUX_Q4K_T5_FP8, 3.8, 30.0, gpu="4 GB GTX")
    assert (choice.offload, choice.vae_tiled) == ("sequential", True) and choice.words.endswith(", VAE tiled")
    assert _plan(SDXL_FP16, 3.0, family=SDXL).offload == "sequential"


def test_auto_offload_on_cuda_asks_the_plan(monkeypatch):
    """`memory.choose_offload` on a (pretended) CUDA device: the plan's mode, words and tiling reach the load line."""
    from types import SimpleNamespace

    import torch

    from jupyter_sd.engine import memory

    pipe = SimpleNamespace(transformer=torch.nn.Linear(1024, 1024), text_encoder_2=torch.nn.Linear(1024, 512))
    monkeypatch.setattr(
        memory, "free_vram_gb", lambda device: 0.005
    )  # 5 MB: the 4 MB transformer fits alone, not with T5
    mode, words, tiled = memory.choose_offload("auto", "cuda", pipe, SimpleNamespace(activations_gb=0.0001,
                                               text_encoders=("clip_l", "t5")))  # fmt: skip
    assert (mode, tiled) == ("model", False)
    assert words == "on a GPU: transformer on GPU while painting, T5 encode on GPU then return to CPU (0.0 GB free)"
