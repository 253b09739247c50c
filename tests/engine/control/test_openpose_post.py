"""OpenPose's post-processing and drawing against hand-made inputs: synthetic heatmaps and PAFs with known people,
hand and face boxes from known keypoints, and pixels worked out here.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest
import torch

from jupyter_sd.engine.control.pose_body import assemble_people, body_keypoints, find_limbs, find_peaks
from jupyter_sd.engine.control.pose_draw import Pose, draw_poses
from jupyter_sd.engine.control.pose_parts import face_box, face_peaks, hand_boxes, hand_peaks, in_picture

LIMBS = [(2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13), (13, 14)]
LIMBS += [(2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18)]
PAF_X = [12, 20, 14, 16, 22, 24, 0, 2, 4, 6, 8, 10, 28, 30, 34, 32, 36, 18, 26]  # mapIdx − 19; y is the next one


def _person(x0: int, y0: int) -> list[tuple[int, int]]:
    """A standing person's 18 parts around (x0, y0), 10–30 px apart."""
    offsets = [(0, -40), (0, -25), (-15, -25), (-25, -5), (-30, 15), (15, -25), (25, -5), (30, 15), (-10, 10)]
    offsets += [(-10, 35), (-10, 60), (10, 10), (10, 35), (10, 60), (-5, -45), (5, -45), (-10, -42), (10, -42)]
    return [(x0 + dx, y0 + dy) for dx, dy in offsets]


def _maps(people: list[dict[int, tuple[int, int]]], height: int = 200, width: int = 300):
    """Heatmaps with a unit Gaussian blob (σ 2) at each part, PAFs painted 5 px wide along each limb present."""
    y, x = np.mgrid[0:height, 0:width]
    heatmaps, pafs = np.zeros((height, width, 19)), np.zeros((height, width, 38))
    for parts in people:
        for part, (px, py) in parts.items():
            heatmaps[:, :, part] += np.exp(-((x - px) ** 2 + (y - py) ** 2) / 8.0)
        for (a, b), channel in zip(LIMBS, PAF_X):
            if a - 1 in parts and b - 1 in parts:
                (xa, ya), (xb, yb) = parts[a - 1], parts[b - 1]
                length = np.hypot(xb - xa, yb - ya)
                for c, value in ((channel, (xb - xa) / length), (channel + 1, (yb - ya) / length)):
                    plane = np.ascontiguousarray(pafs[:, :, c])
                    cv2.line(plane, (xa, ya), (xb, yb), float(value), thickness=5)
                    pafs[:, :, c] = plane
    return heatmaps, pafs


def test_synthetic_maps_give_the_people_drawn_into_them():
    whole = dict(enumerate(_person(70, 100)))
    armless = {part: point for part, point in enumerate(_person(220, 100)) if part not in (6, 7)}  # no left forearm
    fragment = dict(enumerate(_person(150, 150)[:3]))  # nose, neck, right shoulder: under 4 parts
    heatmaps, pafs = _maps([whole, armless, fragment], height=300)
    peaks = find_peaks(heatmaps)
    assert [len(p) for p in peaks] == [3, 3, 3, 2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    assert all(score == pytest.approx(1.0) for part in peaks for _, _, score, _ in part)
    candidate, subset = assemble_people(peaks, find_limbs(peaks, pafs, 300))
    found = sorted(
        (
            {i: point for i, point in enumerate(person) if point is not None}
            for person in body_keypoints(candidate, subset)
        ),
        key=lambda person: person[1][0],
    )
    assert found == [{k: (float(x), float(y)) for k, (x, y) in p.items()} for p in (whole, armless)]
    counts = sorted(subset[:, 19])
    assert counts == [16, 18]
    # each person: 1.0 per part plus 1.0 per limb that joined it (the PAF is the limb's direction, limbs are short)
    assert sorted(subset[:, 18]) == pytest.approx([16 + 15, 18 + 17], abs=1e-6)


def test_a_limb_longer_than_half_the_picture_height_is_penalized():
    parts = {1: (50, 20), 2: (50, 190)}  # neck to right shoulder, 170 px
    heatmaps, pafs = _maps([parts], height=200)
    peaks = find_peaks(heatmaps)
    assert find_limbs(peaks, pafs, 200)[0][0][2] == pytest.approx(1.0 + (0.5 * 200 / 170 - 1))
    assert find_limbs(peaks, pafs, 400)[0][0][2] == pytest.approx(1.0)  # 0.5 × 400 / 170 > 1: no penalty
    assert find_limbs(peaks, pafs, 200)[1] is None  # no left shoulder: no candidates for limb 2


def test_hand_boxes_follow_openpose_hand_detector():
    body = [None] * 18
    body[2], body[3], body[4] = (100.0, 50.0), (100.0, 90.0), (100.0, 120.0)  # right shoulder, elbow, wrist
    # centre: wrist + 0.33 × (wrist − elbow) = (100, 129.9); side 1.5 × max(30, 0.9 × 40) = 54
    assert hand_boxes(body, 200, 200) == [(73, 102, 54, False)]
    assert hand_boxes(body, 200, 140) == [(73, 102, 37, False)]  # clipped at the bottom: 140 − 102.9
    body[5], body[6], body[7] = (60.0, 50.0), (60.0, 55.0), (60.0, 60.0)  # left arm 5 px long: under 20 px
    assert hand_boxes(body, 200, 200) == [(73, 102, 54, False)]


def test_face_box_is_around_the_nose_as_far_as_eyes_and_ears_reach():
    body = [None] * 18
    body[0], body[14], body[16] = (50.0, 50.0), (45.0, 46.0), (38.0, 50.0)  # nose, right eye, right ear
    assert face_box(body, 200, 200) == (32, 32, 36)  # max(3 × 5, 1.5 × 12) = 18 each side
    body[14] = body[16] = None
    assert face_box(body, 200, 200) is None


def _blob(height, width, cx, cy, amplitude, sigma):
    y, x = np.mgrid[0:height, 0:width]
    return amplitude * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def test_a_hand_point_is_the_peak_of_the_heaviest_region():
    heatmaps = np.zeros((128, 128, 22))
    heatmaps[:, :, 0] = _blob(128, 128, 20, 30, 0.5, 2) + _blob(128, 128, 90, 100, 0.4, 6)  # the wider one weighs more
    heatmaps[:, :, 2] = _blob(128, 128, 64, 10, 0.9, 3)
    peaks = hand_peaks(heatmaps, 64, 256)
    assert peaks[0].tolist() == [180, 50]  # (90 × 256/128, 100 × 64/128)
    assert peaks[1].tolist() == [0, 0]  # never above 0.05
    assert peaks[2].tolist() == [128, 5]


class _FixedFace(torch.nn.Module):
    """Stands in for the face network: 71 fixed 8×8 heatmaps."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.maps = torch.zeros(1, 71, 8, 8)
        self.maps[0, 3, 2, 5] = 1.0
        self.maps[0, 70, 1, 1] = 0.2  # the background map counts too, as in the extension

    def forward(self, x):
        assert x.shape == (1, 3, 384, 384) and float(x.min()) >= -0.5 and float(x.max()) < 0.5
        return [self.maps]


def test_face_points_are_each_maps_maximum_above_005():
    crop = np.full((8, 8, 3), 200, np.uint8)
    assert face_peaks(_FixedFace(), crop).tolist() == [[5, 2], [1, 1]]


def test_crop_points_move_into_the_picture_and_unfound_ones_become_minus_one():
    moved = in_picture(np.array([[0, 7], [5, 2]]), 10, 20, 100, 50)
    assert moved.dtype == np.float32
    np.testing.assert_array_equal(moved, np.array([[-1 / 100, 27 / 50], [15 / 100, 22 / 50]], np.float32))


def test_body_is_drawn_as_sd_webui_controlnet_draws_it():
    body = [None] * 18
    body[1], body[2] = (20 / 64, 30 / 48), (40 / 64, 30 / 48)  # neck and right shoulder
    canvas = draw_poses([Pose(body)], 48, 64, body=True, hands=True, face=True)
    limb, neck, shoulder = (153, 0, 0), (255, 85, 0), (255, 170, 0)  # limb 1 red at 60 %; parts 2 and 3's colours
    assert tuple(canvas[30, 30]) == limb and tuple(canvas[27, 30]) == limb and tuple(canvas[36, 30]) == (0, 0, 0)
    assert tuple(canvas[30, 20]) == neck and tuple(canvas[33, 20]) == neck and tuple(canvas[30, 17]) == neck
    assert tuple(canvas[30, 40]) == shoulder and tuple(canvas[30, 43]) == shoulder
    assert tuple(canvas[30, 46]) == (0, 0, 0) and tuple(canvas[30, 26]) == limb
    assert {tuple(c) for c in canvas.reshape(-1, 3)} == {(0, 0, 0), limb, neck, shoulder}
    assert not draw_poses([Pose(body)], 48, 64, body=False, hands=True, face=True).any()


def test_hands_and_faces_are_drawn_as_sd_webui_controlnet_draws_them():
    hand = np.full((21, 2), -1 / 64, np.float32)
    hand[5], hand[6] = (10 / 64, 10 / 48), (30 / 64, 10 / 48)  # bone 5 joins points 5 and 6
    face = np.array([[12 / 64, 20 / 48], [-1 / 64, 0.5]], np.float32)
    canvas = draw_poses([Pose([None] * 18, left_hand=hand, face=face)], 48, 64, body=True, hands=True, face=True)
    bone = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(5 / 20, 1.0, 1.0))  # (128, 255, 0)
    assert tuple(canvas[10, 20]) == bone and tuple(canvas[13, 20]) == (0, 0, 0)
    assert tuple(canvas[10, 10]) == (0, 0, 255) and tuple(canvas[13, 30]) == (0, 0, 255)  # points: blue, radius 4
    assert tuple(canvas[20, 12]) == (255, 255, 255) and tuple(canvas[22, 12]) == (255, 255, 255)  # face: radius 3
    assert tuple(canvas[20, 16]) == (0, 0, 0)
    assert {tuple(c) for c in canvas.reshape(-1, 3)} == {(0, 0, 0), bone, (0, 0, 255), (255, 255, 255)}
    no_face = draw_poses([Pose([None] * 18, left_hand=hand, face=face)], 48, 64, body=True, hands=True, face=False)
    assert tuple(no_face[20, 12]) == (0, 0, 0) and tuple(no_face[10, 20]) == bone
