"""A tiny OneFormer (small Swin backbone) built from config and saved with the files of the ``shi-labs/oneformer_*``
repos (``config.json``, ``pytorch_model.bin``, and a CLIP vocabulary that spells the task), for seg_ofade20k/coco.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WORDS = ("the", "task", "is", "semantic")


def write_vocabulary(folder: Path) -> None:
    """``vocab.json`` and ``merges.txt`` of a CLIP tokenizer whose merges make each of `WORDS` one token."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    merges, seen = ["#version: 0.2"], set()
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair, merged = f"{pieces[0]} {pieces[1]}", pieces[0] + pieces[1]
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
                vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")


def tiny_oneformer(classes: int, seed: int) -> Any:
    """A random OneFormer with `classes` classes: Swin of width 8, 6 queries, hidden width 32."""
    from transformers import OneFormerConfig, OneFormerForUniversalSegmentation, SwinConfig

    torch.manual_seed(seed)
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = OneFormerConfig(
        backbone_config=backbone,
        num_queries=6,
        hidden_dim=32,
        conv_dim=32,
        mask_dim=32,
        encoder_feedforward_dim=32,
        dim_feedforward=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        text_encoder_width=32,
        text_encoder_num_layers=1,
        text_encoder_vocab_size=100,
        text_encoder_proj_layers=1,
        text_encoder_n_ctx=2,
        query_dec_layers=1,
        id2label={i: f"class {i}" for i in range(classes)},
    )
    model = OneFormerForUniversalSegmentation(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # class logits and masks spread wider than the init's, so several classes win somewhere
        decoder = model.model.transformer_module.decoder
        for parameter in (decoder.class_embed.weight, *decoder.mask_embed.parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def save_oneformer(model: Any, folder: Path) -> None:
    """`model` saved as the hub repo has it: ``config.json``, ``pytorch_model.bin``, the vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    write_vocabulary(folder)
