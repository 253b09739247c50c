"""A1111's NGMS and Skip Early CFG: exactly A1111's skipped calls, the positive prediction there."""

import numpy as np
import pytest
import torch
from helpers.paint_modes import euler_request

from jupyter_sd.engine import Engine
from jupyter_sd.engine.ngms import skips_early, skips_negative
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.paste import request_from_infotext

STEPS = 20


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(model, **changes):
    return euler_request(model, STEPS, **changes)


def _paint_counting(engine, request):
    """Paint, recording every UNet call's batch (2 = both CFG halves, 1 = the negative skipped) and timestep."""
    pipe = engine.pipeline(request)
    timesteps, batches = [], []
    hooks = [  # the pipeline's call (its timestep), and what really runs inside (conv_in sees the batch computed)
        pipe.unet.register_forward_pre_hook(
            lambda m, a, k: timesteps.append(float(torch.as_tensor(a[1]).flatten()[0])), with_kwargs=True
        ),
        pipe.unet.conv_in.register_forward_pre_hook(lambda m, a: batches.append(a[0].shape[0])),
    ]
    try:
        result = engine.generate(request)
    finally:
        for hook in hooks:
            hook.remove()
    return result, list(zip(batches, timesteps))


def test_the_skip_rule_is_a1111s():
    # A1111's CFG denoiser: (step % 2 or all steps) and s_min_uncond > 0 and sigma < s_min_uncond
    assert [skips_negative(i, 0.5, 1.0, False) for i in range(4)] == [False, True, False, True]
    assert all(skips_negative(i, 0.5, 1.0, True) for i in range(4))
    assert not skips_negative(1, 1.0, 1.0, False) and not skips_negative(1, 0.5, 0.0, False)


@pytest.mark.parametrize("all_steps", [False, True])
def test_exactly_a1111s_calls_skip_the_negative_half(engine, tiny_model_dir, all_steps):
    request = _request(tiny_model_dir, ngms=1.0, ngms_all=all_steps)
    result, calls = _paint_counting(engine, request)
    alphas = engine._pipe.scheduler.alphas_cumprod.double()
    log_sigmas = (((1 - alphas) / alphas) ** 0.5).log()
    sigmas = []  # k-diffusion's t → σ: log σ interpolated between the training timesteps
    for _, t in calls:
        low = int(t)
        high = min(low + 1, len(alphas) - 1)
        sigmas.append(float((log_sigmas[low] + (log_sigmas[high] - log_sigmas[low]) * (t - low)).exp()))
    skipped = [i for i in range(STEPS) if (i % 2 == 1 or all_steps) and sigmas[i] < 1.0]
    assert len(calls) == STEPS and skipped and len(skipped) < STEPS  # the setting really splits the run
    assert [batch for batch, _ in calls] == [1 if i in skipped else 2 for i in range(STEPS)]
    assert "NGMS: 1" in result.infotext(0) and ("NGMS all steps: True" in result.infotext(0)) == all_steps


def test_skipping_every_call_is_the_positive_prediction_alone(engine, tiny_model_dir):
    """NGMS above the highest noise level, on every call: no negative half anywhere, so CFG gives the positive
    prediction back — raw diffusers without CFG (guidance 1) from the same noise."""
    from diffusers import StableDiffusionPipeline

    result = engine.generate(_request(tiny_model_dir, ngms=15.0, ngms_all=True))
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    raw.scheduler = make_scheduler("Euler", "Automatic", dict(raw.scheduler.config))
    expected = raw(
        "a red circle", num_inference_steps=STEPS, guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(3)
    ).images[0]
    diff = np.abs(np.asarray(result.images[0], dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() <= 1
    plain = engine.generate(_request(tiny_model_dir)).images[0]
    assert np.abs(np.asarray(plain, dtype=int) - np.asarray(expected, dtype=int)).max() > 10  # CFG mattered


def test_ngms_is_pasted_back():
    request = request_from_infotext("a fox\nSteps: 20, Sampler: Euler, Seed: 1, NGMS: 0.8, NGMS all steps: True")
    assert (request.ngms, request.ngms_all) == (0.8, True)


# -- Skip Early CFG (A1111's skip_early_cond, as Forge has it) -------------------------------------------------------


def test_skip_early_rule_is_a1111s():
    # A1111: skip_early_cond != 0 and step / total_steps <= skip_early_cond
    assert [skips_early(i, 10, 0.25) for i in range(5)] == [True, True, True, False, False]
    assert not any(skips_early(i, 10, 0.0) for i in range(10)) and all(skips_early(i, 10, 1.0) for i in range(10))


@pytest.mark.parametrize(("sampler", "calls"), [("Euler", STEPS), ("Heun", 2 * STEPS - 1)])
def test_skip_early_skips_the_first_calls_of_the_run(engine, tiny_model_dir, sampler, calls):
    """Heun calls the model twice a step (A1111's second-order samplers count 2·steps − 1 calls): the fraction is of
    the calls, as A1111's denoiser counts them."""
    result, seen = _paint_counting(engine, _request(tiny_model_dir, sampler=sampler, skip_early_cfg=0.3))
    skipped = [i for i in range(calls) if i / calls <= 0.3]
    assert [batch for batch, _ in seen] == [1 if i in skipped else 2 for i in range(calls)]
    assert "Skip Early CFG: 0.3" in result.infotext(0)


def test_skip_early_wins_where_both_would_skip_and_ngms_goes_on_after(engine, tiny_model_dir):
    _, seen = _paint_counting(engine, _request(tiny_model_dir, skip_early_cfg=0.2, ngms=15.0))
    early = [i for i in range(STEPS) if i / STEPS <= 0.2]
    assert [batch for batch, _ in seen] == [1 if i in early or i % 2 else 2 for i in range(STEPS)]


def test_skipping_early_on_every_call_is_the_positive_prediction_alone(engine, tiny_model_dir):
    every = engine.generate(_request(tiny_model_dir, skip_early_cfg=1.0)).images[0]
    ngms = engine.generate(_request(tiny_model_dir, ngms=15.0, ngms_all=True)).images[0]  # raw diffusers at CFG 1
    assert np.array_equal(np.asarray(every), np.asarray(ngms))


def test_skip_early_is_pasted_back():
    request = request_from_infotext("a fox\nSteps: 20, Sampler: Euler, Seed: 1, Skip Early CFG: 0.25")
    assert request.skip_early_cfg == 0.25
