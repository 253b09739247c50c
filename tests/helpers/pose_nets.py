"""OpenPose and M-LSD weights with the key names and shapes lllyasviel/Annotators publishes, written out here from
the published model code (``body_pose_model.pth``, ``hand_pose_model.pth``, ``facenet.pth``,
``mlsd_large_512_fp32.pth``), and the pose networks' forward passes on the tensors alone.

OpenPose's widths are divided by `divisor` (1 gives the published shapes); the maps' channel counts are kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

MAPS = {"body": (38, 19), "hand": (22,), "face": (71,)}


def _trunk(kind: str, d: int) -> list[tuple[str, int, int]]:
    """(name, out, in) of the trunk's 3×3 convolutions; "pool" rows have no channels."""
    rows = [("conv1_1", 64, 3), ("conv1_2", 64, 64), ("pool", 0, 0), ("conv2_1", 128, 64), ("conv2_2", 128, 128)]
    rows += [("pool", 0, 0), ("conv3_1", 256, 128)] + [(f"conv3_{i}", 256, 256) for i in (2, 3, 4)]
    rows += [("pool", 0, 0), ("conv4_1", 512, 256), ("conv4_2", 512, 512)]
    if kind == "body":
        rows += [("conv4_3_CPM", 256, 512), ("conv4_4_CPM", 128, 256)]
    else:
        rows += [("conv4_3", 512, 512), ("conv4_4", 512, 512), ("conv5_1", 512, 512), ("conv5_2", 512, 512)]
        rows += [("conv5_3_CPM", 128, 512)]
    return [(name, out // d, cin if cin == 3 else cin // d) for name, out, cin in rows]


def _stages(kind: str, d: int) -> list[list[list[tuple[str, int, int, int]]]]:
    """Stages → branches → (name, out, in, kernel)."""
    w, maps = 128 // d, MAPS[kind]
    stages = []
    if kind == "body":
        stages.append(
            [
                [(f"conv5_{i}_CPM_L{b}", w, w, 3) for i in (1, 2, 3)]
                + [(f"conv5_4_CPM_L{b}", 512 // d, w, 1), (f"conv5_5_CPM_L{b}", out, 512 // d, 1)]
                for b, out in ((1, 38), (2, 19))
            ]
        )
    else:
        stages.append([[("conv6_1_CPM", 512 // d, w, 1), ("conv6_2_CPM", maps[0], 512 // d, 1)]])
    for s in range(2, 7):
        branches = []
        for b, out in enumerate(maps, start=1):
            suffix = f"_stage{s}_L{b}" if kind == "body" else f"_stage{s}"
            rows = [(f"Mconv1{suffix}", w, sum(maps) + w, 7)] + [(f"Mconv{i}{suffix}", w, w, 7) for i in (2, 3, 4, 5)]
            branches.append(rows + [(f"Mconv6{suffix}", w, w, 1), (f"Mconv7{suffix}", out, w, 1)])
        stages.append(branches)
    return stages


def pose_shapes(kind: str, divisor: int = 1) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in the published file of `kind` (body, hand, face), widths / `divisor`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, out, cin in _trunk(kind, divisor):
        if name != "pool":
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, cin, 3, 3), (out,)
    for stage in _stages(kind, divisor):
        for branch in stage:
            for name, out, cin, k in branch:
                shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, cin, k, k), (out,)
    return shapes


def pose_state(kind: str, divisor: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights (scaled by fan-in) of the published layout at widths / `divisor`."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in pose_shapes(kind, divisor).items():
        fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else 1
        state[name] = torch.randn(shape, generator=generator) * (1.5 / fan_in**0.5 if len(shape) == 4 else 0.1)
    return state


def pose_reference(state: dict[str, torch.Tensor], kind: str, x: torch.Tensor) -> list[torch.Tensor]:
    """The published forward pass: the last stage's maps (body: PAFs then heatmaps; the latter keep their ReLU)."""
    divisor = (
        128 // state["conv5_4_CPM_L1.weight"].shape[1]
        if kind == "body"
        else 128 // state["conv6_1_CPM.weight"].shape[1]
    )

    def conv(h: torch.Tensor, name: str) -> torch.Tensor:
        weight = state[f"{name}.weight"]
        return F.conv2d(h, weight, state[f"{name}.bias"], padding=weight.shape[2] // 2)

    for name, _, _ in _trunk(kind, divisor):
        x = F.max_pool2d(x, 2, 2) if name == "pool" else F.relu(conv(x, name))
    features, maps = x, []
    for stage in _stages(kind, divisor):
        given = torch.cat([*maps, features], 1) if maps else features
        maps = []
        for branch in stage:
            h = given
            for name, *_ in branch:
                h = conv(h, name)
                if name != branch[-1][0] or name == "Mconv7_stage6_L2":
                    h = F.relu(h)
            maps.append(h)
    return maps


def mlsd_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of ``mlsd_large_512_fp32.pth``: MobileNetV2 (4 input channels, to 96) and the decoder."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{part}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["backbone.features.0.0.weight"] = (32, 4, 3, 3)
    bn("backbone.features.0.1", 32)
    index, cin = 1, 32
    for expand, cout, repeats in ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3)):
        for _ in range(repeats):
            prefix, hidden, layer = f"backbone.features.{index}.conv", cin * expand, 0
            if expand != 1:
                shapes[f"{prefix}.0.0.weight"] = (hidden, cin, 1, 1)
                bn(f"{prefix}.0.1", hidden)
                layer = 1
            shapes[f"{prefix}.{layer}.0.weight"] = (hidden, 1, 3, 3)
            bn(f"{prefix}.{layer}.1", hidden)
            shapes[f"{prefix}.{layer + 1}.weight"] = (cout, hidden, 1, 1)
            bn(f"{prefix}.{layer + 2}", cout)
            index, cin = index + 1, cout

    def conv_bn(prefix: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{prefix}.0.weight"], shapes[f"{prefix}.0.bias"] = (cout, cin, k, k), (cout,)
        bn(f"{prefix}.1", cout)

    for block, skip, deep in ((15, 64, 96), (17, 32, 64), (19, 24, 64), (21, 16, 64)):
        conv_bn(f"block{block}.conv1", 64, deep, 1)
        conv_bn(f"block{block}.conv2", 64, skip, 1)
        conv_bn(f"block{block + 1}.conv1", 128, 128, 3)
        conv_bn(f"block{block + 1}.conv2", 64, 128, 3)
    conv_bn("block23.conv1", 64, 64, 3)
    conv_bn("block23.conv2", 64, 64, 3)
    shapes["block23.conv3.weight"], shapes["block23.conv3.bias"] = (16, 64, 1, 1), (16,)
    return shapes


def mlsd_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of the published M-LSD layout (batch-norm statistics near 0 and 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in mlsd_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[name] = 1.0 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:
            state[name] = torch.randn(shape, generator=generator) / (shape[1] * shape[2] * shape[3]) ** 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.1 + (1.0 if name.endswith(".weight") else 0.0)
    return state


SKELETON = (
    (0, -3), (0, -2), (-1, -2), (-2, -1), (-3, 0), (1, -2), (2, -1), (3, 0), (-1, 0),
    (-1, 1), (-1, 2), (1, 0), (1, 1), (1, 2), (-1, -3), (1, -3), (-2, -3), (2, -3),
)  # fmt: skip
"""Each of the 18 body parts' offset, in cells of the body network's output (8 px at its 184-px input), from a
bright dot: a standing person (nose, neck, right arm, left arm, right leg, left leg, eyes, ears).
"""
LIMB_PAIRS = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
)  # fmt: skip
LIMB_PAF_CHANNELS = (
    (31, 32), (39, 40), (33, 34), (35, 36), (41, 42), (43, 44), (19, 20), (21, 22), (23, 24), (25, 26),
    (27, 28), (29, 30), (47, 48), (49, 50), (53, 54), (51, 52), (55, 56), (37, 38), (45, 46),
)  # fmt: skip
"""OpenPose's ``mapIdx``: each limb's PAF channels, counted after the 19 heatmaps."""


def structured_body_state(divisor: int = 4) -> dict[str, torch.Tensor]:
    """A body model of the published layout that sees a bright dot and answers with `SKELETON` around it.

    The trunk carries the picture's brightness in channel 0 (``x/256``, max-pooled to 1/8); the last heatmap
    branch shifts it by each part's offset (a 7×7 kernel with one tap) into that part's heatmap; the last PAF
    layer's biases are each limb's unit direction everywhere. All other weights are zero.
    """
    state = {name: torch.zeros(shape) for name, shape in pose_shapes("body", divisor).items()}
    state["conv1_1.weight"][0, :, 1, 1] = 1 / 3
    state["conv1_1.bias"][0] = 0.5
    for name, _, _ in _trunk("body", divisor)[1:]:
        if name != "pool":
            state[f"{name}.weight"][0, 0, 1, 1] = 1.0
    for part, (dx, dy) in enumerate(SKELETON):
        state["Mconv1_stage6_L2.weight"][part, 57, 3 - dy, 3 - dx] = (
            1.0  # 57: the trunk's channel 0; a tap at -d moves by +d
        )
        for i in (2, 3, 4, 5):
            state[f"Mconv{i}_stage6_L2.weight"][part, part, 3, 3] = 1.0
        state["Mconv6_stage6_L2.weight"][part, part, 0, 0] = 1.0
        state["Mconv7_stage6_L2.weight"][part, part, 0, 0] = 1.0
    for (a, b), (cx, cy) in zip(LIMB_PAIRS, LIMB_PAF_CHANNELS):
        (xa, ya), (xb, yb) = SKELETON[a - 1], SKELETON[b - 1]
        length = ((xb - xa) ** 2 + (yb - ya) ** 2) ** 0.5
        state["Mconv7_stage6_L1.bias"][cx - 19] = (xb - xa) / length
        state["Mconv7_stage6_L1.bias"][cy - 19] = (yb - ya) / length
    return state
