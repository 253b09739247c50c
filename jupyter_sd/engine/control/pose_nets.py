"""OpenPose's three networks (CMU's convolutional pose machines) as torch modules loading lllyasviel/Annotators' files.

``body_pose_model.pth`` is the two-branch body model: a VGG-19 trunk (to ``conv4_4_CPM``), then six stages whose
first branch (``…_L1``) gives the 38 part-affinity fields and whose second (``…_L2``) gives the 19 heatmaps (18
parts and the background); each later stage sees both maps beside the trunk's features. ``hand_pose_model.pth`` (22
heatmaps: 21 points and the background) and ``facenet.pth`` (71: 70 points and the background) share one layout: a
longer VGG trunk (to ``conv5_3_CPM``) and six one-branch stages. The files name their convolutions flat
(``conv1_1.weight``, ``Mconv7_stage6_L2.bias`` …) and every one is read (a missing or misshapen tensor is
refused; other tensors are left, as the extension's ``transfer`` leaves them); widths and kernel sizes are read from
the tensors, so a smaller network of the same layout loads the same way. Every convolution is followed by a ReLU
except each stage's last, and, as in the published code (its no-ReLU list names ``Mconv7_stage6_L1`` twice), the
body's last heatmap layer ``Mconv7_stage6_L2`` keeps its ReLU.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

POOL = "pool"
BODY_TRUNK = (
    *("conv1_1", "conv1_2", POOL, "conv2_1", "conv2_2", POOL),
    *("conv3_1", "conv3_2", "conv3_3", "conv3_4", POOL),
    *("conv4_1", "conv4_2", "conv4_3_CPM", "conv4_4_CPM"),
)
PART_TRUNK = (
    *BODY_TRUNK[:11],
    *("conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3_CPM"),
)
"""The hand's and the face's trunk: VGG-19 to conv5, then a 128-wide ``conv5_3_CPM``."""


def body_stages() -> list[list[tuple[str, ...]]]:
    """The body model's six stages, each two branches (PAFs ``L1``, heatmaps ``L2``) of layer names."""
    first = [tuple(f"conv5_{i}_CPM_L{branch}" for i in range(1, 6)) for branch in (1, 2)]
    later = [[tuple(f"Mconv{i}_stage{s}_L{b}" for i in range(1, 8)) for b in (1, 2)] for s in range(2, 7)]
    return [first, *later]


def part_stages() -> list[list[tuple[str, ...]]]:
    """The hand and face models' six one-branch stages."""
    return [
        [("conv6_1_CPM", "conv6_2_CPM")],
        *[[tuple(f"Mconv{i}_stage{s}" for i in range(1, 8))] for s in range(2, 7)],
    ]


class PoseMachine(nn.Module):
    """A trunk of convolutions (and 2×2 max pools), then stages of branches.

    Each stage sees the last stage's maps and the trunk's features. `kept_relu`: last layers of a branch that still
    take a ReLU (the body's published quirk).
    """

    def __init__(
        self,
        state: dict[str, torch.Tensor],
        trunk: tuple[str, ...],
        stages: list[list[tuple[str, ...]]],
        kept_relu: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.trunk, self.stages, self.kept_relu = trunk, stages, set(kept_relu)
        for name in [n for n in trunk if n != POOL] + [n for stage in stages for branch in stage for n in branch]:
            weight = state[f"{name}.weight"]
            with torch.device("meta"):
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
            setattr(self, name, conv)

    def _branch(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        for name in names:
            x = getattr(self, name)(x)
            if name != names[-1] or name in self.kept_relu:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`x`: the BGR picture in -0.5..0.5; the last stage's maps, one per branch."""
        for name in self.trunk:
            x = F.max_pool2d(x, 2, 2) if name == POOL else F.relu(getattr(self, name)(x))
        features, maps = x, []
        for stage in self.stages:
            given = torch.cat([*maps, features], 1) if maps else features
            maps = [self._branch(given, branch) for branch in stage]
        return maps


def _loaded(net: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Every parameter of `net` from `state` (as the extension's ``transfer``: other tensors in the file are left)."""
    net.load_state_dict({name: state[name] for name in net.state_dict()}, strict=True, assign=True)
    return net.eval().requires_grad_(False)


def body_net(state: dict[str, torch.Tensor]) -> nn.Module:
    """The body model in `state` (``body_pose_model.pth``'s tensors), every layer read; gives ``[pafs, heatmaps]``."""
    return _loaded(PoseMachine(state, BODY_TRUNK, body_stages(), kept_relu=("Mconv7_stage6_L2",)), state)


def part_net(state: dict[str, torch.Tensor]) -> nn.Module:
    """The hand or face model `state` (``hand_pose_model.pth``'s, ``facenet.pth``'s) fits; gives ``[heatmaps]``."""
    return _loaded(PoseMachine(state, PART_TRUNK, part_stages()), state)


def load_pose_net(kind: str, path: Path) -> nn.Module:
    """The ``openpose_body`` net (body) or ``openpose_hand``/``openpose_face`` net at `path`, one line if not."""
    from .edge_nets import read_state_dict

    state = read_state_dict(path)
    try:
        return body_net(state) if kind == "openpose_body" else part_net(state)
    except (KeyError, RuntimeError, IndexError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not {kind} weights ({first})") from None
