"""CUDA-compatible normal noise on any device (AUTOMATIC1111's "NV" RNG source).

After ``torch.manual_seed(seed)``, ``torch.randn(shape, device="cuda")`` draws its noise from curand's
Philox4x32-10 generator: element ``i`` gets its own counter (subsequence ``i`` in counter words 2 and 3,
the generator's offset in words 0 and 1), the key is the 64-bit seed (low word first), and the first two
output words feed a Box-Muller transform whose sine branch is the sample. Recomputing that with numpy lets
a CPU or Apple machine reproduce images made on an NVIDIA card, and makes NV noise independent of the GPU.

The transform is evaluated in float64 from curand's float32 constants, then rounded to float32: this equals
A1111's NV generator bit for bit, and CUDA (float32 with the ``__sincosf`` intrinsic) to a few ulps.

The element-per-thread layout is what CUDA uses while the tensor has no more elements than the kernel
launches threads (SMs times threads per SM: about 270 000 on an H100 but 40 960 on a T4, fewer than the
65 536 of a 1024-pixel SDXL latent); A1111's NV source assumes it for every size, and so does this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["PhiloxGenerator", "philox4x32_10", "randn"]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_MULTIPLIERS = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_KEY_BUMPS = (0x9E3779B9, 0xBB67AE85)
# curand's float32 constants (2**-32 and 2**-32 * 2*pi rounded to float32), used in float64 afterwards.
_TWO_POW32_INV = float(np.float32(2.0**-32))
_TWO_POW32_INV_2PI = float(np.float32(2.0**-32) * np.float32(2.0 * np.pi))


def philox4x32_10(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Apply the Philox4x32 bijection (Random123) to many counters at once.

    Parameters
    ----------
    counter : numpy.ndarray
        Shape ``(4, ...)``: the four 32-bit counter words, one column per block.
    key : numpy.ndarray
        Shape ``(2, ...)``, broadcastable against one counter word: the two 32-bit key words.
    rounds : int, optional
        Number of rounds; 10 is what curand uses, 7 is only here for Random123's known answers.

    Returns
    -------
    numpy.ndarray
        ``uint32`` array shaped like ``counter``: the four output words of each block.
    """
    counter = np.asarray(counter, dtype=np.uint64)
    key = np.asarray(key, dtype=np.uint64)
    if counter.shape[:1] != (4,) or key.shape[:1] != (2,):
        raise ValueError(f"counter needs 4 words and key 2 words, got shapes {counter.shape} and {key.shape}")
    c0, c1, c2, c3 = (word & _MASK32 for word in counter)
    k0, k1 = (word & _MASK32 for word in key)
    for round_index in range(rounds):
        if round_index:
            k0 = (k0 + _KEY_BUMPS[0]) & _MASK32
            k1 = (k1 + _KEY_BUMPS[1]) & _MASK32
        # Each product of two 32-bit words fits in uint64: its high half mixes, its low half moves.
        p0 = c0 * _MULTIPLIERS[0]
        p1 = c2 * _MULTIPLIERS[1]
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & _MASK32
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3)).astype(np.uint32)


def _seed_words(seed: int) -> tuple[int, int]:
    """Split a seed into the (low, high) key words, wrapping negatives as ``torch.manual_seed`` does."""
    seed = int(seed)
    if not -(2**63) <= seed <= _MASK64:
        raise ValueError(f"seed must be in [-2**63, 2**64 - 1], got {seed}")
    seed &= _MASK64
    return seed & _MASK32, seed >> 32


def randn(seed: int, shape: tuple[int, ...], offset: int = 0) -> torch.Tensor:
    """Draw standard normal noise equal to CUDA's ``torch.randn`` for this seed and generator offset.

    Parameters
    ----------
    seed : int
        The seed given to ``torch.manual_seed`` (any value it accepts, up to ``2**64 - 1``).
    shape : tuple of int
        Shape of the result.
    offset : int, optional
        How many earlier ``randn`` calls the generator has served since it was seeded (curand's
        Philox offset divided by 4), so that later draws continue the same stream.

    Returns
    -------
    torch.Tensor
        ``float32`` tensor on the CPU.
    """
    import torch

    shape = tuple(int(size) for size in shape)
    if offset < 0 or offset > _MASK64:
        raise ValueError(f"offset must be in [0, 2**64 - 1], got {offset}")
    count = int(np.prod(shape, dtype=np.int64))
    index = np.arange(count, dtype=np.uint64)
    counter = np.zeros((4, count), dtype=np.uint64)
    counter[0] = offset & _MASK32
    counter[1] = offset >> 32
    counter[2] = index & _MASK32
    counter[3] = index >> 32
    words = philox4x32_10(counter, np.array(_seed_words(seed), dtype=np.uint64)[:, None])
    # curand's Box-Muller: u in (0, 1] from word 0, angle in (0, 2*pi) from word 1; the sine is the first output.
    u = words[0] * _TWO_POW32_INV + _TWO_POW32_INV / 2
    angle = words[1] * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
    noise = np.sqrt(-2.0 * np.log(u)) * np.sin(angle)
    return torch.from_numpy(noise.astype(np.float32).reshape(shape))


class PhiloxGenerator:
    """A seeded NV generator whose successive draws continue one stream, like A1111's ``rng_philox.Generator``.

    Each ``randn`` call takes the next offset: one CUDA ``torch.randn`` call, one element per thread, uses one
    4-word Philox block per thread, so torch moves the offset on by one block.

    Parameters
    ----------
    seed : int
        The seed, as given to ``torch.manual_seed``.
    """

    def __init__(self, seed: int) -> None:
        _seed_words(seed)  # fail early on a seed torch would refuse
        self.seed = int(seed)
        self.offset = 0

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Draw the next tensor of standard normal noise from this generator's stream.

        Parameters
        ----------
        shape : tuple of int
            Shape of the result.

        Returns
        -------
        torch.Tensor
            ``float32`` tensor on the CPU.
        """
        noise = randn(self.seed, shape, self.offset)
        self.offset += 1
        return noise
