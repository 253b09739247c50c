"""UniFormer, the backbone of ``seg_ufade20k`` (``upernet_global_small.pth``), as plain torch modules.

sd-webui-controlnet's ``annotator/uniformer`` builds it through mmseg from ``upernet_global_small.py``: UniFormer-S
(widths 64, 128, 320, 512; 3, 4, 8 and 3 blocks; 64 channels per attention head; MLPs 4× wide; biased q/k/v), the
"global" setting (no windows: every stage-3 block attends over the whole stage). Each stage starts with a patch
embedding (a conv whose kernel is its stride: 4, then 2, 2, 2; a LayerNorm over channels); stages 1–2 hold conv
blocks (``CBlock``: a 3×3 depthwise position conv added, then BN → 1×1 → 5×5 depthwise → 1×1 added, then BN →
1×1 MLP with GELU added), stages 3–4 attention blocks (``SABlock``: the position conv added, then LayerNorm →
multi-head self-attention added, LayerNorm → MLP added, over the flattened pixels). Each stage's output passes a
LayerNorm (ε 1e-6, as the blocks' own; the patch embeddings' ε is torch's 1e-5) and goes to the decode head.
The attribute names are the published file's (under ``backbone.``); drop path and dropout are idle at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

HEAD_DIM = 64
"""Channels per attention head (UniFormer's ``head_dim``; the checkpoint's tensors do not say it)."""
_EPS = 1e-6


def _channels_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """A LayerNorm over the channels of an N×C×H×W tensor."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


class PatchEmbed(nn.Module):
    """``patch_embedN``: ``proj`` a conv with kernel = stride = `patch`, ``norm`` a LayerNorm over channels."""

    def __init__(self, width_in: int, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(width_in, width, patch, patch)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` downsampled by the patch size, `width` channels."""
        return _channels_norm(self.norm, self.proj(x))


class ConvMlp(nn.Module):
    """``CMlp``: 1×1 conv, GELU, 1×1 conv."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(width, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on each pixel."""
        return self.fc2(F.gelu(self.fc1(x)))


class Mlp(nn.Module):
    """``Mlp``: linear, GELU, linear."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on each token."""
        return self.fc2(F.gelu(self.fc1(x)))


class CBlock(nn.Module):
    """A conv block (stages 1 and 2): local aggregation by a 5×5 depthwise conv between two 1×1 convs."""

    def __init__(self, width: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.norm1 = nn.BatchNorm2d(width)
        self.conv1 = nn.Conv2d(width, width, 1)
        self.conv2 = nn.Conv2d(width, width, 1)
        self.attn = nn.Conv2d(width, width, 5, padding=2, groups=width)
        self.norm2 = nn.BatchNorm2d(width)
        self.mlp = ConvMlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on N×C×H×W."""
        x = x + self.pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` one biased linear, scaled dot products, ``proj``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention over the N×L×C tokens."""
        batch, length, width = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # softmax(q·kᵀ/√d)·v
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class SABlock(nn.Module):
    """An attention block (stages 3 and 4, "global": over every pixel of the stage)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.norm1 = nn.LayerNorm(width, eps=_EPS)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=_EPS)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on N×C×H×W, run on its H·W tokens."""
        x = x + self.pos_embed(x)
        batch, width, height, wide = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.attn(self.norm1(tokens))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(batch, width, height, wide)


class UniFormer(nn.Module):
    """The backbone: four stages (``patch_embedN``, ``blocksN``, ``normN``), conv blocks then attention blocks.

    Parameters
    ----------
    widths, depths
        Each stage's channels and block count (UniFormer-S: 64, 128, 320, 512 and 3, 4, 8, 3).
    head_dim
        Channels per attention head (64).
    mlp_ratio
        The MLPs' hidden width over the block's (4).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 320, 512),
        depths: tuple[int, ...] = (3, 4, 8, 3),
        head_dim: int = HEAD_DIM,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        width_in = 3
        for stage, (width, depth) in enumerate(zip(widths, depths), start=1):
            setattr(self, f"patch_embed{stage}", PatchEmbed(width_in, width, 4 if stage == 1 else 2))
            if stage <= 2:
                blocks = [CBlock(width, mlp_ratio) for _ in range(depth)]
            else:
                blocks = [SABlock(width, max(1, width // head_dim), mlp_ratio) for _ in range(depth)]
            setattr(self, f"blocks{stage}", nn.ModuleList(blocks))
            setattr(self, f"norm{stage}", nn.LayerNorm(width, eps=_EPS))
            width_in = width
        self.stages = len(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stages' normed outputs (strides 4, 8, 16, 32) for `x` (N×3×H×W, normalized)."""
        outs = []
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"blocks{stage}"):
                x = block(x)
            outs.append(_channels_norm(getattr(self, f"norm{stage}"), x))
        return outs
