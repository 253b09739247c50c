"""Philox4x32-10 and the NV (CUDA-compatible) normal noise.

Sources of the expected values:
- Random123 1.14 ``tests/kat_vectors``: the philox4x32 known answers (7 and 10 rounds).
- AUTOMATIC1111 ``modules/rng_philox.py`` docstring: ``Generator(seed=0).randn((3, 4))``, which is also what
  ``torch.randn(3, 4, device="cuda")`` prints after ``torch.manual_seed(0)``.
- Second draws and large seeds: computed with A1111's ``rng_philox.Generator`` (numpy 2.4), outside this repo.
"""

import numpy as np
import pytest
import torch

from jupyter_sd.engine.philox import PhiloxGenerator, philox4x32_10, randn

PI_COUNTER = [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]
PI_KEY = [0xA4093822, 0x299F31D0]

# (rounds, counter, key, expected), from Random123's kat_vectors.
KNOWN_ANSWERS = [
    (7, [0, 0, 0, 0], [0, 0], [0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48]),
    (7, [0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662]),
    (7, PI_COUNTER, PI_KEY, [0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A]),
    (10, [0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    (10, [0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (10, PI_COUNTER, PI_KEY, [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]

SEED0_FIRST = [
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
]
SEED0_SECOND = [
    [0.18082589, -0.5522627, 0.9238134, -0.73497033],
    [1.3799946, 0.8676307, 0.12965593, -0.94064],
    [0.8109096, 0.8820514, -1.0132601, -0.3633632],
]


@pytest.mark.parametrize(("rounds", "counter", "key", "expected"), KNOWN_ANSWERS)
def test_known_answers(rounds, counter, key, expected):
    out = philox4x32_10(np.array(counter, dtype=np.uint32), np.array(key, dtype=np.uint32), rounds=rounds)
    assert out.dtype == np.uint32
    assert out.tolist() == expected


def test_known_answers_vectorised():
    ten = [case for case in KNOWN_ANSWERS if case[0] == 10]
    counters = np.array([case[1] for case in ten], dtype=np.uint32).T
    keys = np.array([case[2] for case in ten], dtype=np.uint32).T
    out = philox4x32_10(counters, keys)
    assert out.shape == (4, 3)
    assert out.T.tolist() == [case[3] for case in ten]


def test_philox_rejects_wrong_word_counts():
    with pytest.raises(ValueError):
        philox4x32_10(np.zeros(3, dtype=np.uint32), np.zeros(2, dtype=np.uint32))


def test_seed0_matches_cuda_values():
    noise = randn(0, (3, 4))
    np.testing.assert_allclose(noise.numpy(), SEED0_FIRST, rtol=0, atol=1e-6)


def test_generator_second_draw_continues_stream():
    generator = PhiloxGenerator(0)
    first = generator.randn((3, 4))
    second = generator.randn((3, 4))
    assert generator.offset == 2
    np.testing.assert_allclose(first.numpy(), SEED0_FIRST, rtol=0, atol=1e-6)
    np.testing.assert_allclose(second.numpy(), SEED0_SECOND, rtol=0, atol=1e-6)
    assert torch.equal(second, randn(0, (3, 4), offset=1))


def test_elements_do_not_depend_on_shape():
    # One counter per element: a bigger draw starts with the smaller one, whatever the shape.
    small = randn(7, (2, 3)).flatten()
    big = randn(7, (4, 5, 6)).flatten()
    assert torch.equal(big[:6], small)


def test_distribution():
    noise = randn(12345, (1_000_000,)).double()
    assert abs(noise.mean().item()) < 0.005
    assert abs(noise.std().item() - 1.0) < 0.005
    assert abs((noise.abs() < 1).double().mean().item() - 0.6827) < 0.005
    assert torch.isfinite(noise).all()


@pytest.mark.parametrize("shape", [(1, 4, 128, 128), (4, 64, 64), (5,), (), (2, 0, 3)])
def test_shape_and_dtype(shape):
    noise = randn(1, shape)
    assert noise.shape == torch.Size(shape)
    assert noise.dtype == torch.float32
    assert noise.device.type == "cpu"
    assert PhiloxGenerator(1).randn(torch.Size(shape)).shape == torch.Size(shape)


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (2**32 + 5, [-2.8427474, 1.3404924, 0.27223086, 1.4550629]),
        (2**63 + 12345, [-1.6362311, -0.6657968, 0.54265803, -1.1241958]),
    ],
)
def test_large_seeds(seed, expected):
    np.testing.assert_allclose(randn(seed, (4,)).numpy(), expected, rtol=0, atol=1e-6)


def test_seed_words_are_distinct():
    # The high 32 bits of the seed are the second key word, not ignored or folded into the first.
    assert not torch.equal(randn(2**32, (8,)), randn(0, (8,)))
    assert not torch.equal(randn(2**32, (8,)), randn(1, (8,)))


def test_seed_range_follows_torch_manual_seed():
    assert torch.equal(randn(-1, (8,)), randn(2**64 - 1, (8,)))
    assert torch.equal(randn(-(2**63), (8,)), randn(2**63, (8,)))
    with pytest.raises(ValueError):
        randn(2**64, (8,))
    with pytest.raises(ValueError):
        PhiloxGenerator(-(2**63) - 1)
    with pytest.raises(ValueError):
        randn(0, (8,), offset=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU to compare with torch's CUDA randn")
def test_matches_torch_cuda_randn():
    shape = (4, 64, 64)
    props = torch.cuda.get_device_properties(0)
    threads = props.multi_processor_count * getattr(props, "max_threads_per_multi_processor", 2048)
    if threads < int(np.prod(shape)):
        pytest.skip("this GPU launches fewer threads than elements, so CUDA's layout differs")
    generator = PhiloxGenerator(31337)
    torch.manual_seed(31337)
    for _ in range(3):
        expected = torch.randn(shape, device="cuda").cpu()
        # CUDA's Box-Muller uses float32 and the __sincosf intrinsic: a few ulps apart, more where u is near 1.
        torch.testing.assert_close(generator.randn(shape), expected, rtol=1e-4, atol=1e-3)
    torch.manual_seed(0)
    np.testing.assert_allclose(randn(0, (3, 4)).numpy(), torch.randn(3, 4, device="cuda").cpu().numpy(), atol=1e-6)
