"""Control modes and guidance windows against the formulas sd-webui-controlnet and diffusers use."""

import pytest

from jupyter_sd.engine.control.weights import active_steps, conditional_only, residual_scales


def test_balanced_scales_every_residual_by_the_weight():
    assert residual_scales(0.8, "Balanced", 13) == [0.8] * 13
    assert residual_scales(1.2, 0, 10) == [1.2] * 10


@pytest.mark.parametrize("mode", ["My prompt is more important", "ControlNet is more important", 1, 2])
def test_soft_injection_over_thirteen_residuals(mode):
    scales = residual_scales(0.5, mode, 13)
    assert scales == pytest.approx([0.5 * 0.825 ** (12 - i) for i in range(13)])
    assert scales[-1] == 0.5 and scales[0] == pytest.approx(0.5 * 0.0994, abs=1e-4)


def test_sdxl_keeps_the_first_ten_soft_scales():
    expected = [0.825**k for k in range(12, 2, -1)]
    assert residual_scales(1.0, "My prompt is more important", 10) == pytest.approx(expected)


def test_hires_pass_softens_canny_and_mlsd_only():
    assert residual_scales(1.0, "Balanced", 13, hires=True, module="canny")[0] == pytest.approx(0.825**12)
    assert residual_scales(1.0, "Balanced", 13, hires=True, module="mlsd")[5] == pytest.approx(0.825**7)
    assert residual_scales(1.0, "Balanced", 13, hires=True, module="depth_midas") == [1.0] * 13
    assert residual_scales(1.0, "Balanced", 13, hires=False, module="canny") == [1.0] * 13


@pytest.mark.parametrize("mode", ["Balanced", "My prompt is more important"])
def test_per_block_weights_replace_the_ladder_in_every_pass(mode):
    weights = tuple(0.1 * i for i in range(13))  # sd-webui-controlnet's hook: control_scales = advanced_weighting
    assert residual_scales(0.5, mode, 13, advanced=weights) == list(weights)
    assert residual_scales(0.5, mode, 13, hires=True, module="canny", advanced=weights) == list(weights)


def test_conditional_half_only_for_controlnet_is_more_important():
    assert conditional_only("ControlNet is more important") and conditional_only(2)
    assert not conditional_only("Balanced") and not conditional_only("My prompt is more important")


def test_guidance_windows():
    # diffusers: keep = 1 - (i/n < start or (i+1)/n > end)
    steps, start, end = 20, 0.1, 0.5
    assert active_steps(steps, start, end) == [not (i / 20 < 0.1 or (i + 1) / 20 > 0.5) for i in range(20)]
    assert sum(active_steps(steps, start, end)) == 8  # steps 2..9
    assert sum(active_steps(steps, start, end, rule="a1111")) == 9  # steps 2..10: i/n ≤ end
    assert all(active_steps(7, 0, 1)) and all(active_steps(7, 0, 1, rule="a1111"))
    with pytest.raises(ValueError, match="unknown guidance rule"):
        active_steps(10, 0, 1, rule="comfy")
