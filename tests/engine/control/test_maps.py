"""Control maps fitted to the size painted, against OpenCV references and the properties the extension keeps."""

import cv2
import numpy as np
import pytest

from jupyter_sd.engine.control.maps import fit_map, scale_map


def _smooth(height, width):
    """A map of many colours (a gradient), scaled with area down and cubic up."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=2).astype(np.uint8)


def test_just_resize_of_a_smooth_map():
    smooth = _smooth(100, 150)
    np.testing.assert_array_equal(
        fit_map(smooth, 60, 40, "Just Resize"), cv2.resize(smooth, (60, 40), interpolation=cv2.INTER_AREA)
    )
    np.testing.assert_array_equal(
        fit_map(smooth, 300, 256, 0), cv2.resize(smooth, (300, 256), interpolation=cv2.INTER_CUBIC)
    )
    np.testing.assert_array_equal(fit_map(smooth, 150, 100, "Just Resize"), smooth)


def test_few_colours_are_scaled_nearest():
    segments = np.zeros((40, 60, 3), np.uint8)
    segments[:, 20:] = (10, 200, 30)
    segments[25:, :] = (120, 120, 250)
    got = fit_map(segments, 90, 70, "Just Resize")
    np.testing.assert_array_equal(got, cv2.resize(segments, (90, 70), interpolation=cv2.INTER_NEAREST))
    assert len(np.unique(got.reshape(-1, 3), axis=0)) == 3


def test_crop_and_resize_keeps_the_middle():
    smooth = _smooth(100, 200)  # to 128×128: scaled by 1.28 to 256×128, the middle 128 columns kept
    reference = cv2.resize(smooth, (256, 128), interpolation=cv2.INTER_CUBIC)[:, 64:192]
    np.testing.assert_array_equal(fit_map(smooth, 128, 128, "Crop and Resize"), reference)
    assert fit_map(smooth, 128, 128, "Inner Fit (Scale to Fit)").shape == (128, 128, 3)


def test_resize_and_fill_pads_with_the_median_border_colour():
    smooth = _smooth(100, 200)  # to 128×128: scaled by 0.64 to 128×64, centred, rows 32..96
    got = fit_map(smooth, 128, 128, "Resize and Fill")
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    fill = np.median(border, axis=0).astype(np.uint8)
    np.testing.assert_array_equal(got[32:96], cv2.resize(smooth, (128, 64), interpolation=cv2.INTER_AREA))
    assert (got[:32] == fill).all() and (got[96:] == fill).all()


def test_black_and_white_blobs_stay_black_and_white():
    blobs = np.zeros((50, 50, 3), np.uint8)
    cv2.circle(blobs, (25, 25), 12, (255, 255, 255), -1)
    got = fit_map(blobs, 120, 120, "Just Resize")
    grey = cv2.resize(blobs, (120, 120), interpolation=cv2.INTER_CUBIC).astype(np.float32).mean(axis=2)
    _, reference = cv2.threshold(grey.clip(0, 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    np.testing.assert_array_equal(got, np.dstack([reference] * 3))


@pytest.mark.parametrize(("width", "height"), [(200, 140), (48, 32)])
def test_one_pixel_lines_stay_one_pixel_wide(width, height):
    edges = np.zeros((70, 100, 3), np.uint8)
    edges[5:65, 30] = 255  # a vertical line
    edges[50, 50:95] = 255  # a horizontal one
    got = scale_map(edges, width, height)[:, :, 0]
    assert set(np.unique(got)) <= {0, 255}
    column = got[int(height * 0.15) : int(height * 0.6), : int(width * 0.45)]
    assert ((column == 255).sum(axis=1) == 1).all()  # one white pixel a row: the vertical line, one pixel wide
    row = got[int(height * 0.6) :, int(width * 0.55) : int(width * 0.9)]
    assert ((row == 255).sum(axis=0) == 1).all()


def test_inpaint_mask_scaled_binary_and_border_masked():
    colour = _smooth(40, 80)
    mask = np.zeros((40, 80), np.uint8)
    mask[10:30, 20:40] = 200
    rgba = np.dstack([colour, mask])
    got = fit_map(rgba, 80, 80, "Resize and Fill")  # scaled to 80×40, rows 20..60
    assert got.shape == (80, 80, 4)
    assert set(np.unique(got[:, :, 3])) == {0, 255}
    assert (got[:20, :, 3] == 255).all() and (got[60:, :, 3] == 255).all()
    np.testing.assert_array_equal(got[20:60, :, 3], np.where(mask > 127, 255, 0))
