"""depth_leres++ on tiny weights in res101.pth's and latest_net_G.pth's layouts: the merge network against pix2pix's
U-Net written with torch.nn.functional, and the map against the extension's double estimation computed here
(LeReS's functional forward at 448, bicubic resizes, the merge input's −1..1 stretch, ``(out + 1) / 2`` stretched
to 0..1, then depth_leres's 16-bit/8-bit map).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.leres_net import leres_reference, leres_state
from helpers.merge_net import merge_reference, merge_state

from jupyter_sd.engine.control.leres import LeReS
from jupyter_sd.engine.control.leres_boost import blend_mask, refine_patch, select_patches
from jupyter_sd.engine.control.leres_merge import MergeNet
from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x * 3 + y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


@pytest.fixture()
def boost(tmp_path):
    files = {"leres/res101.pth": {"depth_model": leres_state()}, "leres/latest_net_G.pth": merge_state(ngf=1)}
    with annotator_files(tmp_path / "models", files) as folder:
        yield files, folder


def _leres(state, image, side):
    bgr = cv2.resize(image[:, :, ::-1].copy(), (side, side)).astype(np.float32)
    x = (bgr - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    with torch.no_grad():
        depth = leres_reference(state, torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0, 0].numpy()
    depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(depth, (1024, 1024), interpolation=cv2.INTER_CUBIC)


def _expected(files, image, near, background):
    """The extension's estimateboost when R_x (448) is over the picture's side: the double estimation alone."""
    low = high = _leres(files["leres/res101.pth"]["depth_model"], image, 448)
    pair = [(d - d.min()) / (d.max() - d.min()) * 2 - 1 for d in (low, high)]
    with torch.no_grad():
        out = merge_reference(files["leres/latest_net_G.pth"], torch.from_numpy(np.stack(pair)[None]).float())
    merged = ((out + 1) / 2)[0, 0].numpy()
    merged = (merged - merged.min()) / (merged.max() - merged.min())
    depth = cv2.resize(merged, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    made = np.clip(np.rint(np.floor(65535 * (depth - depth.min()) / (depth.max() - depth.min())) * 255 / 65535), 0, 255)
    made[made <= near * 255 / 100] = 0
    made = 255 - made
    made[made <= background * 255 / 100] = 0
    return made.astype(np.uint8)


def test_merge_net_is_pix2pix_unet_with_the_files_names():
    state = merge_state(levels=7, ngf=2)
    net = MergeNet(state)
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state)
    x = torch.randn(1, 2, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), merge_reference(state, x))
    assert net(x).shape == (1, 1, 128, 128)


def test_depth_leres_plus_plus_has_depth_leres_sliders():
    module = find_module("depth_leres++")
    assert (module.threshold_a.label, module.threshold_b.label) == ("Remove Near %", "Remove Background %")
    assert module_params(module) == (512, 0.0, 0.0)


@pytest.mark.parametrize(("near", "background"), [(0, 0), (20, 30)])
def test_map_is_the_extensions_double_estimation(boost, near, background):
    files, _ = boost
    image = _picture(192, 192)  # a multiple of 64: no resize, no padding; R_x is 448 > 192: no local boosting
    made = preprocess("depth_leres++", image, 192, near, background)
    expected = _expected(files, image, near, background)
    assert made.shape == (192, 192, 3) and (made[:, :, 0] == made[:, :, 2]).all()
    difference = np.abs(made[:, :, 0].astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    assert made[:, :, 0].std() > 10  # a real depth, not a flat picture


def test_a_side_under_the_boosts_search_is_refused_in_one_line(boost):
    with pytest.raises(ValueError, match="depth_leres\\+\\+ needs a picture side of at least 160") as refused:
        preprocess("depth_leres++", _picture(128, 128), 128)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_weights_of_another_network_are_refused_in_one_line(boost):
    _, folder = boost
    torch.save({"model.model.0.weight": torch.zeros(1)}, folder / "leres" / "latest_net_G.pth")
    with pytest.raises(ValueError, match="latest_net_G.pth is not LeReS\\+\\+'s merge network") as refused:
        preprocess("depth_leres++", _picture(192, 192), 192)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_missing_merge_network_offline_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "ControlNet" / "annotators" / "leres"
    folder.mkdir(parents=True)
    torch.save({"depth_model": leres_state()}, folder / "res101.pth")
    line = offline_refusal(tmp_path / "models", monkeypatch, "depth_leres++", _picture(192, 192), 192)
    assert "ControlNet/annotators/leres/latest_net_G.pth" in line and "lllyasviel/Annotators" in line


def _gradient(image):
    gray = np.dot(image[..., :3], [0.2989, 0.5870, 0.1140])
    return np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))


def _patches_reference(image, factor):
    """The extension's patch choice with plain sums: 896 cells every 336 px kept where their gradient density
    reaches the picture's, each grown by 32/factor while inside (its integral image's bounds) and as dense."""
    grad = _gradient(image)
    grad[grad < grad[grad > 0].mean()] = 0
    height, width = grad.shape

    def density(x, y, w, h):
        return grad[y : y + h, x : x + w].sum() / (w * h)

    step, chosen = int(32 / factor), []
    for x0 in range(448, width - 448, 336):
        for y0 in range(448, height - 448, 336):
            rect = [x0 - 448, y0 - 448, 896, 896]
            if density(*rect) < grad.mean():
                continue
            while True:
                test = [rect[0] - step // 2, rect[1] - step // 2, rect[2] + step, rect[3] + step]
                if min(test[:2]) < 0 or test[1] + test[3] > height or test[0] + test[2] > width:
                    break
                if density(*test) < grad.mean():
                    break
                rect = test
            chosen.append(rect)
    return sorted(chosen, key=lambda rect: -rect[2])


def test_patches_are_the_dense_cells_grown_largest_first():
    image = np.full((1300, 1300, 3), 120, np.uint8)
    for x in range(1000, 1250, 8):
        cv2.line(image, (x, 300), (x, 1250), (0, 0, 0), 2)
    chosen = select_patches(image, 0.5)
    assert chosen == _patches_reference(image, 0.5)
    assert chosen == [[272, 272, 1024, 1024], [336, 0, 896, 896]]  # the left cells have no lines; one grew twice


def test_a_patch_is_merged_as_the_extension_merges_it():
    leres, merge = leres_state(), merge_state(ngf=1)
    state = {k.removeprefix("module."): v for k, v in leres.items()}
    leres_net, merge_net = LeReS(state), MergeNet(merge)
    leres_net.load_state_dict(state)
    merge_net.load_state_dict(merge)
    picture = _picture(256, 256)
    y, x = np.mgrid[0:256, 0:256]
    base = (np.sin(x / 40.0) + np.cos(y / 30.0)).astype(np.float32)
    updated = base + np.float32(0.25)
    before = updated.copy()
    rect = [40, 24, 160, 176]
    refine_patch(leres_net.eval(), merge_net.eval(), picture, base, updated, rect)

    patch = picture[24:200, 40:200]
    low, high = (_leres(leres, patch, side) for side in (448, 896))
    pair = [(d - d.min()) / (d.max() - d.min()) * 2 - 1 for d in (low, high)]
    with torch.no_grad():
        out = merge_reference(merge, torch.from_numpy(np.stack(pair)[None]).float())
    estimate = ((out + 1) / 2)[0, 0].numpy()
    estimate = (estimate - estimate.min()) / (estimate.max() - estimate.min())
    region = cv2.resize(base[24:200, 40:200], (1024, 1024), interpolation=cv2.INTER_CUBIC)
    pair = [(d - d.min()) / (d.max() - d.min()) * 2 - 1 for d in (region, estimate)]
    with torch.no_grad():
        mapped = ((merge_reference(merge, torch.from_numpy(np.stack(pair)[None]).float()) + 1) / 2)[0, 0].numpy()
    fitted = np.polyval(np.polyfit(mapped.ravel(), region.ravel(), 1), mapped)
    fitted = cv2.resize(fitted, (160, 176), interpolation=cv2.INTER_CUBIC)
    mask = cv2.resize(blend_mask(), (160, 176), interpolation=cv2.INTER_LINEAR)  # its formula: the test below
    expected = before.copy()
    expected[24:200, 40:200] = before[24:200, 40:200] * (1 - mask) + fitted * mask
    np.testing.assert_allclose(updated, expected, atol=2e-3)
    assert (updated[:24] == before[:24]).all() and np.abs(updated - before).max() > 0.05


def test_blend_mask_is_the_extensions_gaussian_mask():
    made = blend_mask(320)  # the extension's 3000 scaled: 15 % edges (48), sigma size/16 (20), kernel 2·⌈2σ⌉+1 (81)
    mask = np.zeros((320, 320), np.float32)
    mask[48:272, 48:272] = 1
    mask = cv2.GaussianBlur(mask, (81, 81), 20)
    np.testing.assert_array_equal(made, ((mask - mask.min()) / (mask.max() - mask.min())).astype(np.float32))
    assert made.shape == (320, 320) and made.min() == 0 and made.max() == 1 and made[160, 160] == 1


def test_local_boosting_refines_the_patches_at_the_pictures_scale(monkeypatch):
    from jupyter_sd.engine.control import leres_boost
    from jupyter_sd.engine.control.leres_merge import processing_res

    image = np.full((512, 512, 3), 100, np.uint8)
    cv2.rectangle(image, (100, 100), (200, 200), (0, 0, 0), 3)
    whole_size, patch_scale = processing_res(image)
    assert whole_size == 448 and 4 * patch_scale * 448 / 1600 < 0.2  # R_x ≤ 512: boosted; factor 0.2: 4480 px
    target = cv2.resize(image, (4480, 4480), interpolation=cv2.INTER_CUBIC)
    expected = [np.round(np.array(rect) * 512 / 4480).astype(int).tolist() for rect in select_patches(target, 0.2)]
    seen = []
    monkeypatch.setattr(leres_boost, "refine_patch", lambda *args: seen.append((args[2].shape, args[5])))
    leres, merge = leres_state(), merge_state(ngf=1)
    leres_net = LeReS({k.removeprefix("module."): v for k, v in leres.items()})
    leres_net.load_state_dict({k.removeprefix("module."): v for k, v in leres.items()})
    merge_net = MergeNet(merge)
    merge_net.load_state_dict(merge)
    depth = leres_boost.boost_depth(leres_net.eval(), merge_net.eval(), image)
    assert len(expected) > 10 and seen == [((512, 512, 3), rect) for rect in expected]
    assert depth.shape == (512, 512) and depth.dtype == np.float32
