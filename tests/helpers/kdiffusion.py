"""k-diffusion's samplers (what AUTOMATIC1111 runs) as a reference, loaded from the installed package's files.

The PyPI package is installed with ``--no-deps`` (its dependencies pin torchvision, which would pull a CUDA torch),
so ``import k_diffusion`` fails: its ``__init__`` imports every submodule. We load only ``sampling.py`` and
``external.py`` under a stand-in package whose ``utils`` holds the one helper they use; nothing is copied here.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, Callable

INSTALL_HINT = "pip install --no-deps k-diffusion"
_PACKAGE = "_jupyter_sd_kdiffusion_reference"


def package_dir() -> Path | None:
    """The installed ``k_diffusion`` folder (found without importing it), or None."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / "sampling.py").is_file() and (folder / "external.py").is_file() else None


def _append_dims(x: Any, target_dims: int) -> Any:
    """k-diffusion's ``utils.append_dims``: trailing singleton dimensions up to `target_dims`."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[_PACKAGE], name, module)
    return module


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """Return k-diffusion's ``(sampling, external)`` modules; raise ImportError when the files are not installed."""
    if _PACKAGE in sys.modules:
        package = sys.modules[_PACKAGE]
        return package.sampling, package.external
    folder = package_dir()
    if folder is None:
        raise ImportError(INSTALL_HINT)
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(folder)]
    package.utils = types.SimpleNamespace(append_dims=_append_dims)
    sys.modules[_PACKAGE] = package
    sys.modules[f"{_PACKAGE}.utils"] = package.utils  # type: ignore[assignment]
    stubbed = "torchdiffeq" not in sys.modules and importlib.util.find_spec("torchdiffeq") is None
    if stubbed:  # only log_likelihood needs it; stand in while sampling.py imports, then take it back
        sys.modules["torchdiffeq"] = types.SimpleNamespace(odeint=None)  # type: ignore[assignment]
    try:
        return _load("sampling", folder / "sampling.py"), _load("external", folder / "external.py")
    except BaseException:
        for name in (_PACKAGE, f"{_PACKAGE}.utils", f"{_PACKAGE}.sampling", f"{_PACKAGE}.external"):
            sys.modules.pop(name, None)
        raise
    finally:
        if stubbed:
            sys.modules.pop("torchdiffeq", None)


def compvis_denoiser(external: types.ModuleType, unet: Any, alphas_cumprod: Any) -> Any:
    """k-diffusion's CompVisDenoiser over a diffusers UNet: eps from ``unet(x * c_in, t(sigma), cond)``."""

    def eps(x: Any, t: Any, cond: Any = None) -> Any:
        return unet(x, t, encoder_hidden_states=cond).sample

    return external.DiscreteEpsDDPMDenoiser(eps, alphas_cumprod, quantize=False)


def cfg_denoiser(denoiser: Any, uncond: Any, cond: Any, scale: float) -> Callable[..., Any]:
    """A1111's CFG denoiser for one prompt: ``uncond + (cond - uncond) * scale`` on the denoised predictions."""
    import torch

    def model(x: Any, sigma: Any) -> Any:
        n = x.shape[0]
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([cond, uncond]))
        denoised_cond, denoised_uncond = out[:n], out[n:]
        return denoised_uncond + (denoised_cond - denoised_uncond) * scale

    return model


def generator_noise_sampler(generator: Any, shape: tuple[int, ...]) -> Callable[[Any, Any], Any]:
    """Step noise as diffusers' ancestral schedulers draw it: the image's CPU generator, continuing."""
    import torch

    return lambda sigma, sigma_next: torch.randn(shape, generator=generator)


# -- the reference picture: k-diffusion's sampler driving a pipeline's UNet, as A1111 does ------------------------

K_SAMPLERS = {
    "EulerDiscreteScheduler": "sample_euler",
    "EulerAncestralDiscreteScheduler": "sample_euler_ancestral",
    "HeunDiscreteScheduler": "sample_heun",
    "LMSDiscreteScheduler": "sample_lms",
    "KDPM2DiscreteScheduler": "sample_dpm_2",
    "KDPM2AncestralDiscreteScheduler": "sample_dpm_2_ancestral",
    "DPMSolverSDEScheduler": "sample_dpmpp_sde",
    "DDIMScheduler": "sample_euler",  # DDIM (eta 0) is Euler's step over its own timesteps, ending at t = 0
}
"""The k-diffusion function A1111 runs for each diffusers class our sampler table names."""

DISCARD_PENULTIMATE = {"sample_dpm_2", "sample_dpm_2_ancestral", "sample_dpmpp_3m_sde"}
"""A1111's ``discard_next_to_last_sigma`` samplers."""

ANCESTRAL = {"sample_euler_ancestral", "sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral"}
BROWNIAN = {"sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"}


def k_function(scheduler: str, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The k-diffusion sampler (and its extra arguments) for a sampler-table entry, or None when A1111 has none."""
    if scheduler == "DPMSolverMultistepScheduler":
        algorithm, order = overrides.get("algorithm_type", "dpmsolver++"), overrides.get("solver_order", 2)
        if algorithm == "dpmsolver++" and order == 2:
            return "sample_dpmpp_2m", {}
        if algorithm == "sde-dpmsolver++" and order == 2:
            return "sample_dpmpp_2m_sde", {"solver_type": overrides.get("solver_type", "midpoint")}
        if algorithm == "sde-dpmsolver++" and order == 3:
            return "sample_dpmpp_3m_sde", {}
        return None
    name = K_SAMPLERS.get(scheduler)
    return (name, {}) if name else None


def ddim_timesteps(steps: int) -> list[int]:
    """A1111's DDIM timesteps (``sd_samplers_timesteps``): ``range(0, 1000, 1000 // steps) + 1``, high to low."""
    return [min(t + 1, 999) for t in range(0, 1000, 1000 // steps)][::-1]


def k_sigmas(sampling: Any, denoiser: Any, function: str, schedule: str, steps: int, ddim: bool = False) -> Any:
    """A1111's ``get_sigmas``: the schedule type's sigmas (Automatic: the denoiser's own), penultimate discarded."""
    import torch

    if ddim:
        t = torch.tensor([*ddim_timesteps(steps), 0], dtype=torch.float32)
        return denoiser.t_to_sigma(t)
    discard = function in DISCARD_PENULTIMATE
    n = steps + 1 if discard else steps
    sigma_min, sigma_max = denoiser.sigmas[0].item(), denoiser.sigmas[-1].item()
    if schedule == "Karras":
        sigmas = sampling.get_sigmas_karras(n, sigma_min, sigma_max)
    elif schedule == "Exponential":
        sigmas = sampling.get_sigmas_exponential(n, sigma_min, sigma_max)
    elif schedule in ("Automatic", "Uniform", "Normal"):  # the denoiser's own (Normal equals it for eps models)
        sigmas = denoiser.get_sigmas(n)
    elif schedule == "SGM Uniform":  # A1111's sgm_uniform: n + 1 evenly spaced timesteps, the last dropped
        t = torch.linspace(denoiser.sigma_to_t(denoiser.sigmas[-1]), denoiser.sigma_to_t(denoiser.sigmas[0]), n + 1)
        sigmas = sampling.append_zero(denoiser.t_to_sigma(t[:-1]))
    elif schedule == "Simple":  # A1111's simple_scheduler: every (1000 / n)-th training sigma from the top
        stride = len(denoiser.sigmas) / n
        sigmas = sampling.append_zero(torch.stack([denoiser.sigmas[-(1 + int(i * stride))] for i in range(n)]))
    else:
        raise ValueError(f"no k-diffusion schedule for {schedule!r}")
    return torch.cat([sigmas[:-2], sigmas[-1:]]) if discard else sigmas


def reference_latents(
    pipe: Any,
    sampler: str,
    schedule: str,
    steps: int,
    seed: int,
    guidance: float,
    embeds: Any,
    latent_shape: tuple[int, ...],
) -> Any:
    """The latents A1111 ends with: k-diffusion's sampler over the pipeline's UNet, from the seed's CPU noise.

    `schedule` is the concrete schedule type ("Automatic" meaning the denoiser's own uniform timesteps); `embeds`
    is ``cat([uncond, cond])`` as the pipeline gave its UNet.
    """
    import torch

    from jupyter_sd.recipe.samplers import SAMPLERS

    spec = SAMPLERS[sampler]
    found = k_function(spec.scheduler, spec.overrides)
    if found is None:
        raise ValueError(f"{sampler}: no k-diffusion sampler in A1111")
    function, extra = found
    sampling, external = load()
    alphas_cumprod = torch.cumprod(1 - _betas(pipe.scheduler.config), 0)
    denoiser = compvis_denoiser(external, pipe.unet, alphas_cumprod)
    ddim = spec.scheduler == "DDIMScheduler"
    sigmas = k_sigmas(sampling, denoiser, function, schedule, steps, ddim)
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(latent_shape, generator=generator)
    # A1111 scales its noise by sigma_max; DDIM (a timesteps sampler) starts from the noise itself, VP-scaled
    x = noise * (1 + sigmas[0] ** 2) ** 0.5 if ddim else noise * sigmas[0]
    if function in ANCESTRAL:
        extra["noise_sampler"] = generator_noise_sampler(generator, latent_shape)
    elif function in BROWNIAN:
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        extra["noise_sampler"] = sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=[seed])
    uncond, cond = embeds.chunk(2)
    model = cfg_denoiser(denoiser, uncond, cond, guidance)
    with torch.no_grad():
        out = getattr(sampling, function)(model, x, sigmas, disable=True, **extra)
    return out / (1 + sigmas[-1] ** 2) ** 0.5 if ddim else out


def _betas(config: Any) -> Any:
    """The model's training betas (SD's scaled-linear schedule, as diffusers' config names it)."""
    import torch

    start, end, count = config["beta_start"], config["beta_end"], config["num_train_timesteps"]
    if config["beta_schedule"] == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, count, dtype=torch.float32) ** 2
    return torch.linspace(start, end, count, dtype=torch.float32)


def decode(pipe: Any, latents: Any) -> Any:
    """The pipeline's VAE decode and postprocess (what the engine shows): one PIL image per latent."""
    import torch

    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(image, output_type="pil")
