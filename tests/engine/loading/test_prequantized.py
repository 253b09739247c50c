"""Pre-quantized diffusers folders (a component config carrying ``quantization_config``), checked before loading.

bitsandbytes needs a CUDA GPU: on this CPU machine such a folder is refused in one line naming what works here, before
any weight is read. (No quantization library that runs on the CPU — torchao, optimum-quanto — is installed here, so
a folder that loads through diffusers' quantizers is not painted in this test; its missing package is named.)
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.tiny_pipeline import make_tiny_pipeline

from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading import prequantized
from jupyter_sd.recipe.request import PaintRequest

BNB_NF4 = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": "nf4",
           "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_use_double_quant": False}  # fmt: skip
"""What a bitsandbytes NF4 repository's ``transformer/config.json`` carries (diffusers' save_pretrained writes it)."""
TORCHAO = {"quant_method": "torchao", "quant_type": "int8wo", "modules_to_not_convert": None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pipeline(tmp_path_factory.mktemp("plain") / "tiny")


def _quantized(tiny, where, quantization):
    """A copy of the tiny folder whose UNet config says it is stored quantized (its weights are never read)."""
    folder = shutil.copytree(tiny, where)
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "quantization_config": quantization}))
    return folder


def _paint(folder, **options):
    engine = Engine()
    with pytest.raises(ValueError) as caught:
        engine.generate(PaintRequest(prompt="a red circle", model=str(folder), steps=1, preview="none", **options))
    assert engine._pipe is None and not engine.busy  # refused before anything loaded
    return str(caught.value)


def test_a_bitsandbytes_folder_is_refused_without_cuda_in_one_line(tiny, tmp_path):
    folder = _quantized(tiny, tmp_path / "tiny-bnb-4bit", BNB_NF4)
    text = _paint(folder)
    assert text == (
        "model: 'tiny-bnb-4bit' has its unet stored bitsandbytes 4-bit nf4, which needs a CUDA GPU (this runs on cpu); "
        "here use a GGUF file or --quant fp8 on an unquantized model"
    )
    assert len(text) < 200
    assert _paint(folder, quant="fp8") == (
        "quant: 'tiny-bnb-4bit' is stored quantized already (bitsandbytes 4-bit nf4); --quant applies to unquantized "
        "weights (use none)"
    )


def test_a_folder_quantized_by_a_missing_library_names_the_package(tiny, tmp_path):
    text = _paint(_quantized(tiny, tmp_path / "tiny-int8wo", TORCHAO))
    assert text == (
        "model: 'tiny-int8wo' has its unet stored torchao int8wo, which needs pip install torchao; "
        "here use a GGUF file or --quant fp8 on an unquantized model"
    )


def test_the_stored_quantization_is_read_per_component():
    int8 = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    configs = {"transformer": {"quantization_config": BNB_NF4}, "text_encoder_2": {"quantization_config": int8},
               "vae": {"quantization_config": TORCHAO}}  # fmt: skip
    found = prequantized.stored(configs.get)
    assert found == {"transformer": "bitsandbytes 4-bit nf4", "text_encoder_2": "bitsandbytes 8-bit"}  # no VAE
    assert prequantized.describe(found) == "bitsandbytes 4-bit nf4"
    assert prequantized.describe({"text_encoder_2": "bitsandbytes 8-bit"}) == "text_encoder_2 bitsandbytes 8-bit"
    assert prequantized.stored({"unet": {"sample_size": 8}}.get) == {}
