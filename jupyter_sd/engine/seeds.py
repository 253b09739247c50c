"""The starting noise of a batch, made exactly as A1111 makes it: seeds, variation seeds, seed resize.

A1111 draws each image's noise as one (C, H, W) tensor from a CPU generator seeded with the image's seed, which
is what diffusers draws from ``torch.Generator("cpu").manual_seed(seed)`` too, so plain seeds give the same
pictures on both paths. Variation seeds mix in a second noise with A1111's `slerp`, quirks kept (see there).
Every mode's first pass and the hires pass use `image_noise`.
"""

from __future__ import annotations

from typing import Any

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


def _randn(seed: int, shape: tuple[int, ...], generator: Any = None) -> Any:
    import torch

    if generator is None:
        generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator, device="cpu")


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
) -> Any:
    """The starting noise of a batch, (B, C, H, W) float32 on the CPU, as A1111's ``ImageRNG.first()``.

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
            subnoise = _randn(subseed, noise_shape)
        if noise_shape != shape:
            noise = _randn(seed, noise_shape)
        else:
            noise = _randn(seed, shape, generator)
        if subnoise is not None:
            noise = slerp(strength, noise, subnoise)
        if noise_shape != shape:
            noise = _paste_centred(noise, _randn(seed, shape, generator))
        noises.append(noise)
    return torch.stack(noises)


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
    """Whether the request's noise differs from what diffusers draws from the seeds alone."""
    return request.variation_strength > 0 or bool(request.seed_resize_from)
