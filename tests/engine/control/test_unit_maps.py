"""A unit's picture to the tensor its ControlNet sees, against OpenCV references."""

import cv2
import numpy as np
import torch

from jupyter_sd.engine.control.unit_maps import unit_map
from jupyter_sd.recipe.control_units import parse_unit_text


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=2).astype(np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (250, 20, 20), -1)
    return image


def test_pixel_perfect_canny_unit_is_the_canny_of_the_picture_at_the_painted_size():
    image = _picture(100, 150)  # painted at 768×512: Pixel Perfect picks 512, the map is 768×512 already
    unit = parse_unit_text("Module: canny, Model: m, Pixel Perfect: True, Threshold A: 50, Threshold B: 120")
    made = unit_map(unit, image, 768, 512)
    scaled = cv2.resize(image, (768, 512), interpolation=cv2.INTER_CUBIC)  # 512 is a multiple of 64: no padding
    edges = cv2.Canny(scaled, 50, 120)
    np.testing.assert_array_equal(made.detected[:, :, 0], edges)
    np.testing.assert_array_equal(made.fitted, made.detected)
    tensor = made.tensor()
    assert tensor.shape == (1, 3, 512, 768) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor[0, 1], torch.from_numpy(edges).float() / 255)


def test_a_ready_map_is_fitted_by_the_resize_mode():
    ready = _picture(100, 200)
    made = unit_map(parse_unit_text("Module: none, Model: m, Resize Mode: Crop and Resize"), ready, 128, 128)
    reference = cv2.resize(ready, (256, 128), interpolation=cv2.INTER_CUBIC)[:, 64:192]
    np.testing.assert_array_equal(made.fitted, reference)


def test_inpaint_unit_tensor_marks_the_mask():
    image = _picture(64, 64)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    made = unit_map(parse_unit_text("Module: inpaint_only, Model: m"), image, 128, 128, mask=mask)
    tensor = made.tensor()
    assert tensor.shape == (1, 3, 128, 128)
    assert (tensor[0, :, :, 64:] == -1).all()
    # the colours are scaled as float, unrounded and unclipped as the extension scales them (cubic may overshoot)
    assert (tensor[0, :, :, :64] > -0.02).all() and tensor[0, :, :, :64].min() < 0
