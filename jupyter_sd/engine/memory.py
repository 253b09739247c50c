"""Fitting the GPU: offload, attention slicing, VAE tiling, the fp16 VAE rescue, and the fast mode for big GPUs.

A free Colab T4 has about 15 GB of VRAM: SDXL in fp16 fits whole, a 6 GB card needs model offload, and SDXL's VAE
in fp16 can overflow into a black (NaN) picture. Each function here is one stage the engine calls; none of them
changes what is painted, only where and how the tensors live (the VAE rescue redoes a decode in float32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

GB = 2**30
TILE_ABOVE = 1536 * 1536
"""``--vae-tiling auto`` tiles pictures with more pixels than this."""
_OFFLOADED = "_jupyter_sd_offload"


def component_gb(pipe: Any) -> dict[str, float]:
    """The size of each model in the pipeline in GB (what has to sit on the GPU, all or one at a time)."""
    sizes = {}
    for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, name, None)
        params = list(getattr(module, "parameters", lambda: [])())
        if params:
            sizes[name] = sum(p.numel() * p.element_size() for p in params) / GB
    return sizes


def offload_for(free_gb: float, sizes: dict[str, float], activations_gb: float) -> str:
    """Auto offload from the free VRAM and each model's size (`loading.plan.plan_memory` decides).

    None when everything fits with room to work, model offload when the biggest model fits with half a GB to spare
    (one model on the GPU at a time), else sequential (layer by layer). `activations_gb` is the family's working
    memory for one native-size picture (`Family.activations_gb`).
    """
    from .loading.plan import plan_memory

    return plan_memory(sizes, free_gb, None, activations_gb).offload


def free_vram_gb(device: str) -> float | None:
    """Free memory on a CUDA device in GB (None elsewhere)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free / GB


def check_offload(mode: str, device: str) -> None:
    """Refuse, before anything loads, model or sequential offload where there is no CUDA device to offload to.

    Raises
    ------
    ValueError
        One line naming the option, what is allowed here and the value.
    """
    if mode in ("model", "sequential") and not device.startswith("cuda"):
        msg = (
            f"offload: '{mode}' offload moves weights between the CPU and a CUDA GPU, and this runs on {device} "
            f"(allowed here: auto, none) (got '{mode}')"
        )
        raise ValueError(msg)


def choose_offload(mode: str, device: str, pipe: Any, family: Any) -> tuple[str, str, bool]:
    """Resolve ``--offload`` to none, model or sequential, with words for the load line and whether to tile the VAE.

    ``auto`` asks `loading.plan.plan_memory` (free VRAM, host RAM, each part's size).

    Raises
    ------
    ValueError
        For model or sequential offload where there is no CUDA device to offload to.
    """
    from .loading.plan import free_ram_gb, gpu_name, plan_memory

    check_offload(mode, device)
    if mode != "auto":
        return mode, "", False
    free = free_vram_gb(device)
    if free is None:
        return "none", "", False
    sizes, activations = component_gb(pipe), family.activations_gb
    encoders = [getattr(pipe, name) for name in ("text_encoder", "text_encoder_2", "text_encoder_3") if name in sizes]
    mapped = bool(encoders) and all(getattr(e, "_jupyter_sd_map", None) is not None for e in encoders)
    choice = plan_memory(sizes, free, free_ram_gb(), activations, gpu_name(device), family.text_encoders, mapped)
    return choice.offload, f"{choice.words} ({free:.1f} GB free)", choice.vae_tiled


def place(pipe: Any, device: str, offload: str) -> Any:
    """Put the pipeline on its device, whole, split (text encoders on the CPU) or offloaded (diffusers' hooks)."""
    if offload == "text-cpu":
        from .loading.text_on_cpu import place_split

        place_split(pipe, device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    setattr(pipe, _OFFLOADED, offload)
    return pipe


def set_attention(pipe: Any, mode: str) -> bool:
    """``--attention``: PyTorch's fused SDPA (diffusers' default) or sliced attention, which needs less memory.

    Returns whether the attention processors were reset (which undoes fused QKV projections).
    """
    denoiser = getattr(pipe, "unet", None)
    sliced = denoiser is not None and any(
        type(p).__name__ == "SlicedAttnProcessor" for p in denoiser.attn_processors.values()
    )
    if mode == "slicing" and not sliced:
        pipe.enable_attention_slicing()
        return True
    if mode == "sdpa" and sliced:
        pipe.disable_attention_slicing()
        return True
    return False


def wants_tiling(mode: str, width: int, height: int) -> bool:
    """Whether ``--vae-tiling`` means tiles for a picture of this size."""
    return mode == "on" or (mode == "auto" and width * height > TILE_ABOVE)


def set_vae_tiling(pipe: Any, on: bool) -> None:
    """Decode in tiles, or whole (diffusers 0.42 keeps the switch on the VAE, not the pipeline)."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    vae.enable_tiling() if on else vae.disable_tiling()


class VaeGuard:
    """Wrap the VAE's ``decode`` to rescue a NaN picture and an out-of-memory decode.

    A NaN/Inf picture from a half-precision VAE is decoded again in float32, and an out-of-memory in the decode is
    retried once in tiles, each said in one line (as A1111 does).

    After a rescue the VAE stays in float32 for the rest of the session, so the next picture is right first time.
    """

    def __init__(self, vae: Any, notice: Callable[[str], None] | None = None) -> None:
        self.vae = vae
        self.notice = notice or (lambda text: None)
        self.rescued = 0
        self.tiled_retries = 0
        self._decode = vae.decode
        vae.decode = self.decode

    def decode(self, z: Any, *args: Any, **kwargs: Any) -> Any:
        """The VAE's decode, with the rescue and the retry."""
        import torch

        z = z.to(self.vae.dtype)
        try:
            output = self._decode(z, *args, **kwargs)
        except Exception as error:
            if not _is_oom(error) or getattr(self.vae, "use_tiling", True):
                raise
            _free_cuda()
            self.vae.enable_tiling()
            self.tiled_retries += 1
            self.notice("out of memory decoding the picture: retried in tiles (--vae-tiling on)")
            output = self._decode(z, *args, **kwargs)
        sample = output[0] if isinstance(output, tuple) else output.sample
        if torch.isfinite(sample).all():
            return output
        if self.vae.dtype == torch.float32:  # nothing to rescue with: the model itself is broken here
            return output
        from .quiet import quiet

        with quiet():  # diffusers warns about casting with to(); we mean it
            self.vae.to(torch.float32)
        self.rescued += 1
        self.notice(
            f"the VAE produced NaN in {str(z.dtype).replace('torch.', '')}: decoded again in float32 (it stays "
            "float32 now; --vae madebyollin/sdxl-vae-fp16-fix avoids this)"
        )
        return self._decode(z.float(), *args, **kwargs)


def _is_oom(error: BaseException) -> bool:
    text = str(error).lower()
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in text


def _free_cuda() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class FastMode:
    """``--fast``: channels_last, fused QKV projections, SDPA, and ``torch.compile`` of the UNet's repeated blocks.

    Regional compilation (diffusers' ``compile_repeated_blocks``) compiles one transformer block and reuses it, so
    the first compile takes seconds, not minutes. Compiled graphs stay with the pipeline across cells; the first
    picture at a new size (or batch) compiles again once, and `before_call` says so.
    """

    def __init__(self, pipe: Any, device: str) -> None:
        import torch

        self.compiled = False
        self.shapes: set[tuple[int, int, int]] = set()
        self.applied: list[str] = []
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)
        self.applied.append("channels_last")
        if hasattr(pipe, "fuse_qkv_projections"):
            try:
                pipe.fuse_qkv_projections()
                self.applied.append("fused QKV")
            except Exception:  # a model whose attention can't be fused (added KV projections): keep it unfused
                pass
        self.applied.append("SDPA")
        if not device.startswith("cuda"):
            self.reason = f"torch.compile is used on CUDA only (here: {device})"
            return
        if hasattr(denoiser, "compile_repeated_blocks") and getattr(denoiser, "_repeated_blocks", None):
            denoiser.compile_repeated_blocks(fullgraph=True)
        else:
            denoiser.compile(fullgraph=False)
        self.compiled = True
        self.applied.append("torch.compile (repeated blocks)")
        self.reason = ""

    def fuse_again(self, pipe: Any) -> None:
        """Fuse the QKV projections again after the attention processors were reset (slicing turned off)."""
        if "fused QKV" in self.applied:
            pipe.fuse_qkv_projections()

    def unfuse(self, pipe: Any) -> bool:
        """Undo the fused QKV projections (a LoRA patches the unfused ones); True if they were fused."""
        if "fused QKV" not in self.applied or not hasattr(pipe, "unfuse_qkv_projections"):
            return False
        pipe.unfuse_qkv_projections()
        self.applied.remove("fused QKV")
        return True

    def describe(self) -> str:
        """The line said once when fast mode is set up."""
        text = "fast mode: " + ", ".join(self.applied)
        return text + (f"; {self.reason}" if self.reason else "")

    def before_call(self, width: int, height: int, n: int) -> str:
        """A line to show before painting at a size not compiled yet (empty when nothing compiles)."""
        shape = (width, height, n)
        if not self.compiled or shape in self.shapes:
            return ""
        first = not self.shapes
        self.shapes.add(shape)
        what = "compiling" if first else "new size: compiling again"
        return f"fast mode: {what} for {width}x{height}{f' ×{n}' if n > 1 else ''} (once per size)…"


class MemoryPlan:
    """What `setup` decided for one loaded pipeline, and the per-picture stage (`before_call`)."""

    def __init__(self, offload: str, why: str, fast: FastMode | None) -> None:
        self.offload = offload
        self.why = why
        self.fast = fast

    def describe(self) -> str:
        """Words for the load line: how the weights are stored (GGUF Q4_K, fp8), the offload mode, and why."""
        where = self.why if self.offload == "none" else self.why or f"{self.offload} offload"
        return ", ".join(filter(None, [getattr(self, "stored", ""), where]))  # auto on CUDA: kept all on the GPU

    def before_call(self, pipe: Any, request: Any, notice: Callable[[str], None]) -> None:
        """Per picture: attention, tiling, the VAE guard (which may have been swapped by --vae), compile notices."""
        if set_attention(pipe, request.attention) and self.fast is not None and request.attention == "sdpa":
            self.fast.fuse_again(pipe)
        tiled = request.vae_tiling == "auto" and getattr(self, "vae_tiled", False)
        set_vae_tiling(pipe, tiled or wants_tiling(request.vae_tiling, request.width, request.height))
        guard = getattr(pipe.vae, "_jupyter_sd_guard", None)
        if guard is None:
            guard = VaeGuard(pipe.vae)
            pipe.vae._jupyter_sd_guard = guard
        guard.notice = notice
        if self.fast is not None:
            if "<lora:" in request.prompt.lower() and self.fast.unfuse(pipe):
                notice("fast mode: QKV projections unfused, so the LoRA applies")
            line = self.fast.before_call(request.width, request.height, request.n)
            if line:
                notice(line)


def setup(pipe: Any, device: str, family: Any, offload: str, fast: bool) -> tuple[Any, MemoryPlan]:
    """Place a freshly loaded (CPU) pipeline on its device as ``--offload`` says, and set up ``--fast``.

    Raises
    ------
    ValueError
        For offload where there is no CUDA device.
    """
    mode, why, tiled = choose_offload(offload, device, pipe, family)
    pipe = place(pipe, device, mode)
    fast_mode = FastMode(pipe, device) if fast else None
    plan = MemoryPlan(mode, why, fast_mode)
    plan.vae_tiled = tiled  # the plan found no room for a whole decode: --vae-tiling auto tiles every picture
    plan.stored = getattr(pipe, "_jupyter_sd_quant", "")  # GGUF Q8_0, fp8 (loading/quant.py)
    return pipe, plan


def peak_rss_gb() -> float | None:
    """The process's peak resident memory so far in GB (Linux/macOS), for the single-file loading ratio."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return peak / (GB if sys.platform == "darwin" else 2**20)


def process_memory_gb() -> float | None:
    """The kernel's resident memory, where the platform tells it (psutil comes with ipykernel)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return None
    return round(psutil.Process().memory_info().rss / 2**30, 2)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the device (or host) running out of memory, whatever the backend calls it."""
    text = str(error).lower()
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


def out_of_memory_message(request: Any) -> str:
    """The one line an out-of-memory picture gets: what was asked and what to try."""
    return (
        f"out of memory painting {request.n} image(s) at {request.size or 'native size'}: "
        "try a smaller size or -n, --dtype float16, or %paint unload"
    )


def recover() -> None:
    """Free what a failed call left behind, so the engine stays usable."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
