"""The built-in ControlNet preprocessors against sd-webui-controlnet's formulas, written out here with OpenCV/numpy."""

import cv2
import numpy as np
import pytest
from PIL import Image

from jupyter_sd.engine.control.modules import MODULES, find_module, module_params
from jupyter_sd.engine.control.preprocessors import inpaint_hint, preprocess, shuffle_seed
from jupyter_sd.engine.control.resolution import pixel_perfect_resolution


def _picture(height=90, width=140, seed=0):
    """Shapes on a gradient with a little noise: edges for canny, dark lines for lineart, a range for threshold."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2)
    image = image.astype(np.float32) + rng.normal(0, 6, (height, width, 3))
    image[20:60, 30:70] = (230, 40, 40)
    image[y + x > 150] *= 0.4
    image[:, 100:103] = 10  # a dark line
    return image.clip(0, 255).astype(np.uint8)


def _scaled_padded(image, res):
    """Short side to `res` (cubic up, area down), then edge-padded to multiples of 64; and the unpadded size."""
    h, w = image.shape[:2]
    k = res / min(h, w)
    th, tw = int(np.round(h * k)), int(np.round(w * k))
    scaled = cv2.resize(image, (tw, th), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    ph, pw = (64 - th % 64) % 64, (64 - tw % 64) % 64
    return np.pad(scaled, ((0, ph), (0, pw), (0, 0)), mode="edge"), th, tw


def test_canny_default_thresholds_and_size():
    image = _picture()
    padded, th, tw = _scaled_padded(image, 512)
    edges = cv2.Canny(padded, 100, 200)[:th, :tw]
    got = preprocess("canny", image)
    assert got.shape == (512, 796, 3) and (th, tw) == (512, 796)
    np.testing.assert_array_equal(got, np.dstack([edges] * 3))
    assert edges.any()
    low = preprocess("canny", image, 256, 20, 60)
    padded, th, tw = _scaled_padded(image, 256)
    np.testing.assert_array_equal(low[:, :, 0], cv2.Canny(padded, 20, 60)[:th, :tw])


def test_canny_downscales_with_area():
    image = _picture(600, 700)
    got = preprocess("canny", image, 300)
    padded, th, tw = _scaled_padded(image, 300)
    assert got.shape == (300, 350, 3)
    np.testing.assert_array_equal(got[:, :, 1], cv2.Canny(padded, 100, 200)[:th, :tw])


def test_invert_none_colorfix_keep_the_size():
    image = _picture()
    np.testing.assert_array_equal(preprocess("invert", image), 255 - image.astype(np.int16))
    np.testing.assert_array_equal(preprocess("none", image), image)
    np.testing.assert_array_equal(preprocess("tile_colorfix", image, threshold_a=16), image)
    np.testing.assert_array_equal(preprocess("invert (from white bg & black line)", image), 255 - image.astype(int))


def test_blur_gaussian_default_sigma_nine():
    image = _picture()
    padded, th, tw = _scaled_padded(image, 512)
    reference = cv2.GaussianBlur(np.ascontiguousarray(padded[:th, :tw]), (0, 0), 9.0)
    np.testing.assert_array_equal(preprocess("blur_gaussian", image), reference)
    padded, th, tw = _scaled_padded(image, 128)
    reference = cv2.GaussianBlur(np.ascontiguousarray(padded[:th, :tw]), (0, 0), 2.5)
    np.testing.assert_array_equal(preprocess("blur_gaussian", image, 128, 2.5), reference)


def test_scribble_xdog_with_uint8_arithmetic():
    image = _picture()
    for threshold in (32, 8):
        padded, th, tw = _scaled_padded(image, 512)
        g1 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 0.5)
        g2 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 5.0)
        dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
        reference = np.zeros_like(padded)
        reference[2 * (255 - dog) > threshold] = 255  # numpy's uint8 arithmetic, wrapping as the extension's does
        got = preprocess("scribble_xdog", image, threshold_a=-1 if threshold == 32 else threshold)
        np.testing.assert_array_equal(got, reference[:th, :tw])
        assert 0 < (got == 255).mean() < 1


def test_lineart_standard_median_scaling():
    image = _picture()
    padded, th, tw = _scaled_padded(image, 512)
    x = padded.astype(np.float32)
    intensity = np.min(cv2.GaussianBlur(x, (0, 0), 6.0) - x, axis=2).clip(0, 255)
    intensity = intensity / max(16, np.median(intensity[intensity > 8])) * 127
    reference = intensity.clip(0, 255).astype(np.uint8)[:th, :tw]
    got = preprocess("lineart_standard", image)
    np.testing.assert_array_equal(got, np.dstack([reference] * 3))
    assert got.max() > 100
    flat = np.full((64, 64, 3), 128, np.uint8)  # no line at all: divided by 16, all black
    assert not preprocess("lineart_standard", flat).any()


def test_threshold_binarises_the_darkest_channel():
    image = _picture()
    padded, th, tw = _scaled_padded(image, 512)
    reference = np.where(np.min(padded, axis=2) > 127, 255, 0).astype(np.uint8)[:th, :tw]
    np.testing.assert_array_equal(preprocess("threshold", image)[:, :, 2], reference)
    padded, th, tw = _scaled_padded(image, 64)
    reference = np.where(np.min(padded, axis=2) > 40, 255, 0).astype(np.uint8)[:th, :tw]
    np.testing.assert_array_equal(preprocess("threshold", image, 64, 40)[:, :, 0], reference)


def test_tile_resample_divides_the_size():
    image = _picture(91, 140)
    np.testing.assert_array_equal(preprocess("tile_resample", image), image)
    np.testing.assert_array_equal(preprocess("tile_resample", image, threshold_a=1.05), image)
    got = preprocess("tile_resample", image, threshold_a=2.5)
    assert got.shape == (36, 56, 3)
    np.testing.assert_array_equal(got, cv2.resize(image, (56, 36), interpolation=cv2.INTER_AREA))


def test_shuffle_is_the_seeded_smooth_flow_at_512():
    image = _picture()
    padded, th, tw = _scaled_padded(image, 512)
    scaled = np.ascontiguousarray(padded[:th, :tw])
    np.random.seed(1234 + 7)  # the extension seeds numpy's global generator with seed + subseed

    def disk(h, w, f=256):
        noise = np.random.uniform(low=0, high=1, size=((h // f) + 2, (w // f) + 2, 1))
        noise = cv2.resize(noise, (w + 2 * f, h + 2 * f), interpolation=cv2.INTER_CUBIC)[f : f + h, f : f + w]
        noise -= noise.min()
        return (noise / noise.max())[:, :, None]

    fx, fy = disk(th, tw) * (tw - 1), disk(th, tw) * (th - 1)
    reference = cv2.remap(scaled, np.concatenate([fx, fy], axis=2).astype(np.float32), None, cv2.INTER_LINEAR)
    got = preprocess("shuffle", image, processor_res=64, seed=shuffle_seed(1234, 7))
    np.testing.assert_array_equal(got, reference)  # Processor Res is fixed at 512 for shuffle
    assert not np.array_equal(got, preprocess("shuffle", image, seed=99))


def test_inpaint_only_carries_the_mask_and_the_hint_marks_it():
    image = _picture()
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[10:40, 50:90] = 255
    got = preprocess("inpaint_only", image, mask=Image.fromarray(mask))
    assert got.shape == (90, 140, 4)
    np.testing.assert_array_equal(got[:, :, :3], image)
    np.testing.assert_array_equal(got[:, :, 3], mask)
    hint = inpaint_hint(got)
    assert np.all(hint[10:40, 50:90] == -1)
    np.testing.assert_allclose(hint[50:, :], image[50:, :].astype(np.float32) / 255.0)
    unmasked = preprocess("inpaint_global_harmonious", image)
    assert not unmasked[:, :, 3].any()


def test_pil_rgba_grey_inputs_as_hwc3():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0  # in float32, as the extension's HWC3
    over_white = (rgba[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha)).clip(0, 255).astype(np.uint8)
    np.testing.assert_array_equal(preprocess("none", Image.fromarray(rgba, "RGBA")), over_white)
    grey = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    np.testing.assert_array_equal(preprocess("invert", Image.fromarray(grey)), np.dstack([255 - grey] * 3))


def test_pixel_perfect_resolution_from_the_target():
    # a 300×200 input painted at 512×768: covering it scales by 768/200, fitting it by 512/300
    assert pixel_perfect_resolution((300, 200), 512, 768, "Crop and Resize") == 768
    assert pixel_perfect_resolution((300, 200), 512, 768, "Just Resize") == 768
    assert pixel_perfect_resolution((300, 200), 512, 768, "Resize and Fill") == round(512 / 300 * 200)
    assert pixel_perfect_resolution((300, 200), 512, 768, 2) == 341
    image = _picture(200, 300)
    got = preprocess("canny", image, 512, pixel_perfect=(512, 768, "Resize and Fill"))
    assert min(got.shape[:2]) == 341


def test_defaults_and_ignored_values():
    canny = find_module("canny")
    assert module_params(canny) == (512, 100.0, 200.0)
    assert module_params(find_module("blur_gaussian")) == (512, 9.0, None)
    assert module_params(find_module("scribble_xdog")) == (512, 32.0, None)
    assert module_params(find_module("threshold")) == (512, 127.0, None)
    assert module_params(find_module("tile_resample")) == (None, 1.0, None)
    assert module_params(find_module("tile_colorfix")) == (None, 8.0, None)
    assert module_params(find_module("shuffle"), 64) == (512, None, None)
    assert module_params(find_module("depth_marigold")) == (768, 20.0, None)  # Resolution 768, Steps 20
    assert module_params(find_module("none"), 0.5, 64, 64) == (None, None, None)  # unused values are ignored
    assert set(MODULES) >= {"none", "canny", "invert", "blur_gaussian", "scribble_xdog", "shuffle"}


@pytest.mark.parametrize(
    ("module", "args", "words"),
    [
        ("sobel", {}, ["unknown preprocessor 'sobel'", "canny"]),
        ("mediapipe_face", {}, ["mediapipe", "not built in yet"]),
        ("depth_hand_refiner", {}, ["hand refiner", "not built in yet"]),
        ("depth_marigold", {"threshold_a": 60}, ["Threshold A", "Steps", "1..50", "60"]),
        ("depth_marigold", {"processor_res": 64}, ["Processor Res", "128..2048"]),
        ("canny", {"threshold_a": 300}, ["Threshold A", "Low Threshold", "1..255", "300"]),
        ("canny", {"threshold_b": 0}, ["Threshold B", "High Threshold"]),
        ("canny", {"processor_res": 32}, ["Processor Res", "64..2048"]),
        ("blur_gaussian", {"threshold_a": 100}, ["Sigma", "0.01..64"]),
        ("tile_resample", {"threshold_a": 0.5}, ["Down Sampling Rate"]),
    ],
)
def test_refusals_are_one_line(module, args, words):
    with pytest.raises(ValueError) as caught:
        preprocess(module, _picture(), **args)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200, message
    for word in words:
        assert word in message, message


def test_mask_size_and_mask_on_a_non_inpaint_module_refused():
    with pytest.raises(ValueError, match="one size"):
        preprocess("inpaint_only", _picture(), mask=np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="takes no mask"):
        preprocess("canny", _picture(), mask=np.zeros((90, 140), np.uint8))
