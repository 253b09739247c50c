"""The noise of a batch, made exactly as A1111 makes it: random sources, seeds, variation seeds, seed resize.

A1111 gives each image its own generator seeded with the image's seed (its ``ImageRNG``): the starting noise is
that generator's first (C, H, W) draw, and ancestral samplers draw their step noise from it afterwards (or from
generators reseeded at seed + ENSD). Which generator depends on the request's ``rng``, as A1111's RNG setting:

- ``cpu``: torch's CPU generator, which is also what diffusers draws from ``torch.Generator("cpu").manual_seed``,
  so plain seeds give the same pictures on both paths (diffusers keeps drawing the step noise itself);
- ``nv``: CUDA's Philox numbers computed on the CPU (philox.py), on every device;
- ``gpu``: A1111's default: torch's own CUDA generator on a CUDA device, the Philox emulation elsewhere (CPU, MPS),
  so a seed paints the same noise on a T4, a Mac and a CPU. (A1111 itself falls back to the CPU generator on MPS.)

Variation seeds mix in a second noise with A1111's `slerp`, quirks kept (see there). Every mode's first pass and
the hires pass draw through a `NoiseSource`; step_noise.py hands its later draws to the scheduler.
"""

from __future__ import annotations

from typing import Any, Callable

from .philox import PhiloxGenerator

SLERP_FALLBACK_DOT = 0.9995


def slerp(val: float, low: Any, high: Any) -> Any:
    """A1111's spherical interpolation of two noises, exactly as its ``modules/rng.py`` computes it.

    Its quirks are part of the recipe and kept: the tensors are single images' noise of shape (C, H, W), so the
    norms are taken over dim 1 (the rows, not the whole tensor) and the angle is one per (channel, column); when the
    mean cosine exceeds 0.9995 it falls back to ``low * val + high * (1 - val)`` (weights as A1111 wrote them,
    the reverse of what the slerp would give).

    Parameters
    ----------
    val
        The variation strength: 0 gives `low` (the seed's noise), 1 gives `high` (the variation seed's).
    low, high
        Noise tensors of one image, shape (C, H, W).
    """
    import torch

    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > SLERP_FALLBACK_DOT:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def noise_device(rng: str, device: Any = "cpu") -> Any:
    """The torch device whose generator draws for `rng` on `device`, or None for the Philox emulation.

    ``gpu`` on a CUDA device is CUDA's own generator (the numbers the emulation reproduces, made at full speed).
    """
    import torch

    device = torch.device(device)
    if rng == "cpu":
        return torch.device("cpu")
    if rng == "gpu" and device.type == "cuda":
        return device
    return None


def new_generator(rng: str, seed: int, device: Any = "cpu") -> Any:
    """A generator for `seed` from the `rng` source: a ``torch.Generator`` or a `PhiloxGenerator`."""
    import torch

    where = noise_device(rng, device)
    if where is None:
        return PhiloxGenerator(int(seed))
    return torch.Generator(where).manual_seed(int(seed))


def draw(generator: Any, shape: tuple[int, ...]) -> Any:
    """The generator's next float32 standard normal tensor of `shape`, on the generator's device."""
    import torch

    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=generator.device)
    return generator.randn(shape)


def _randn(seed: int, shape: tuple[int, ...], generator: Any = None, rng: str = "cpu", device: Any = "cpu") -> Any:
    return draw(generator if generator is not None else new_generator(rng, seed, device), shape)


def batch_seeds(seed: int, variation_seed: int, variation_strength: float, first: int, count: int) -> tuple[list, list]:
    """Seeds and variation seeds of images ``first … first+count-1`` of a request, by A1111's rule.

    Without a variation the seed counts up over the images; with one (strength > 0) the seed stays fixed and the
    variation seed counts up instead.
    """
    if variation_strength > 0:
        return [seed] * count, [variation_seed + first + k for k in range(count)]
    return [seed + first + k for k in range(count)], [variation_seed + first + k for k in range(count)]


def image_noise(
    shape: tuple[int, int, int],
    seeds: list[int],
    subseeds: list[int] | None = None,
    strength: float = 0.0,
    resize_from: tuple[int, int] | None = None,
    generators: list[Any] | None = None,
    rng: str = "cpu",
    device: Any = "cpu",
) -> Any:
    """The starting noise of a batch, (B, C, H, W) float32, as A1111's ``ImageRNG.first()``.

    Parameters
    ----------
    shape
        One image's latent shape (C, H, W).
    seeds, subseeds
        Each image's seed and variation seed.
    strength
        Variation strength (0 = the seed's noise alone).
    resize_from
        ``(width, height)`` in pixels of "Seed resize from": the noise is made at that size and pasted centred
        into noise of this size (cropped when larger), so a seed keeps its composition at another size.
    generators
        The per-image generators the sampler goes on to use (ancestral samplers draw their step noise from them);
        the image's noise at `shape` is drawn from them, so their state afterwards is what A1111's and diffusers'
        own first draw leaves. Fresh ones seeded with `seeds` when omitted.
    rng, device
        The random source (``cpu``, ``gpu``, ``nv``) and the device painted on: they pick the generators made here
        (the variation and seed-resize noise, and the per-image ones when `generators` is omitted).
    """
    import torch

    channels, height, width = shape
    noise_shape = shape
    if resize_from is not None and resize_from[0] > 0 and resize_from[1] > 0:
        noise_shape = (channels, resize_from[1] // 8, resize_from[0] // 8)
    noises = []
    for index, seed in enumerate(seeds):
        generator = generators[index] if generators is not None else None
        subnoise = None
        if subseeds is not None and strength != 0:
            subseed = subseeds[index] if index < len(subseeds) else 0
            subnoise = _randn(subseed, noise_shape, None, rng, device)
        if noise_shape != shape:
            noise = _randn(seed, noise_shape, None, rng, device)
        else:
            noise = _randn(seed, shape, generator, rng, device)
        if subnoise is not None:
            noise = slerp(strength, noise, subnoise.to(noise.device))
        if noise_shape != shape:
            noise = _paste_centred(noise, _randn(seed, shape, generator, rng, device).to(noise.device))
        noises.append(noise)
    return torch.stack(noises)


class NoiseSource:
    """The per-image generators of one pass of a batch (A1111's ``ImageRNG``): its starting noise, then its steps.

    With ``rng="cpu"`` pass the CPU generators diffusers is handed, so the starting noise advances them as
    diffusers' own first draw would, and diffusers draws the step noise itself (`supplies_steps` is False).

    `mix`, when set, changes every draw (B, C, H, W) before it is handed out, the starting noise and each step's, as
    sd-webui-controlnet's ``HackedImageRNG`` wraps A1111's ``ImageRNG`` for ``inpaint_only+lama`` (control/wiring.py).
    """

    def __init__(self, rng: str, seeds: list[int], device: Any = "cpu", generators: list[Any] | None = None) -> None:
        self.rng, self.seeds, self.device = rng, list(seeds), device
        self.generators = generators if generators is not None else [new_generator(rng, s, device) for s in seeds]
        self.mix: Callable[[Any], Any] | None = None

    @property
    def supplies_steps(self) -> bool:
        """Whether the step noise must come from here (diffusers can only draw from torch generators it is given).

        With a `mix` it must: diffusers' own step draws would go unmixed.
        """
        return self.rng != "cpu" or self.mix is not None

    def first(
        self,
        shape: tuple[int, int, int],
        subseeds: list[int] | None = None,
        strength: float = 0.0,
        resize_from: tuple[int, int] | None = None,
    ) -> Any:
        """The starting noise (B, C, H, W), drawn from the per-image generators (see `image_noise`)."""
        noise = image_noise(shape, self.seeds, subseeds, strength, resize_from, self.generators, self.rng, self.device)
        return noise if self.mix is None else self.mix(noise)

    def reseed(self, delta: int) -> None:
        """A1111's ENSD: after the starting noise, each image's generator restarts from its seed + `delta`."""
        self.generators = [new_generator(self.rng, seed + delta, self.device) for seed in self.seeds]

    def next(self, shape: tuple[int, ...]) -> Any:
        """The next step noise (B, *shape): one draw from each image's generator, as A1111's ``ImageRNG.next()``."""
        import torch

        noise = torch.stack([draw(generator, shape).to(self.device) for generator in self.generators])
        return noise if self.mix is None else self.mix(noise)


def _paste_centred(small: Any, canvas: Any) -> Any:
    """A1111's seed resize: `small` pasted into the middle of `canvas`, both (C, H, W), cropping what overhangs."""
    dx = (canvas.shape[2] - small.shape[2]) // 2
    dy = (canvas.shape[1] - small.shape[1]) // 2
    w = small.shape[2] if dx >= 0 else small.shape[2] + 2 * dx
    h = small.shape[1] if dy >= 0 else small.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    dx, dy = max(-dx, 0), max(-dy, 0)
    canvas[:, ty : ty + h, tx : tx + w] = small[:, dy : dy + h, dx : dx + w]
    return canvas


def needs_own_noise(request: Any) -> bool:
    """Whether the request's noise differs from what diffusers draws from CPU generators of the seeds alone."""
    return request.variation_strength > 0 or bool(request.seed_resize_from) or request.rng != "cpu"
