"""Write the PNG fixtures of the Jest tests with jupyter_sd's own writer.

Run from the repository root:  python labextension/test/make_fixtures.py

Each fixture is a tiny PNG whose text chunks hold A1111 generation data, written the
way the kernel writes it (``jupyter_sd.painting.store.png_info``: tEXt, or iTXt when the text
is not latin-1) plus the compressed variants other tools write (zTXt, compressed
iTXt). ``expected.json`` records what jupyter_sd's Python parser reads from each
file; the Jest tests check the TypeScript parser reads the same, and
``tests/test_labextension.py`` checks the committed files still parse that way in
Python, so the same file parses the same in both languages. ``samples-python.json``
does the same for every block of the A1111 samples file in tests/fixtures/.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jupyter_sd.painting import store  # noqa: E402
from jupyter_sd.recipe.infotext import parse_infotext  # noqa: E402
from jupyter_sd.recipe.paste import request_from_infotext  # noqa: E402

HERE = Path(__file__).resolve().parent / "fixtures"
SAMPLES = ROOT / "tests" / "fixtures" / "a1111-infotext-samples.txt"

PLAIN = (
    "masterpiece, best quality, a watercolor fox in a snowy forest, soft light\n"
    "Negative prompt: lowres, blurry, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567, Size: 512x768, "
    'Model: "my model, v2", Version: v1.10.1'
)
UNICODE = (
    "a cat under cherry blossoms 🐱, 桜, (fluffy:1.3), <lora:add_detail:0.8>\n"
    "Negative prompt: ugly,\nblurry «text»\n"
    "Steps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 42, Size: 64x64, Model: tiny"
)
XSS = (
    "<img src=x onerror=alert(1)>\n"
    'Negative prompt: <script>alert("x")</script>\n'
    "Steps: 1, Sampler: Euler, CFG scale: 7, Seed: 7, Size: 64x64, Model: tiny"
)


def _image(color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (8, 8), color)


def _request_info(text: str) -> PngInfo:
    """The kernel's own chunks: parameters (tEXt/iTXt) and the jupyter_sd JSON."""
    return store.png_info(text, request_from_infotext(text), {"seed": 0})


def _itxt_compressed(text: str) -> PngInfo:
    info = PngInfo()
    info.add_itxt(store.PARAMETERS_KEY, text, zip=True)
    return info


def _ztxt(text: str) -> PngInfo:
    info = PngInfo()
    info.add_text(store.PARAMETERS_KEY, text, zip=True)  # latin-1 + zip -> zTXt
    return info


def _samples() -> list[str]:
    blocks, current = [], []
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("====="):
            if "\n".join(current).strip():
                blocks.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    if "\n".join(current).strip():
        blocks.append("\n".join(current).strip())
    return blocks


def main() -> None:
    """Write the fixtures and expected.json."""
    HERE.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[str | None, PngInfo | None, str]] = {
        "text-latin1.png": (PLAIN, _request_info(PLAIN), "tEXt"),
        "itxt-unicode.png": (UNICODE, _request_info(UNICODE), "iTXt"),
        "itxt-compressed.png": (UNICODE, _itxt_compressed(UNICODE), "iTXt (compressed)"),
        "ztxt.png": (PLAIN, _ztxt(PLAIN), "zTXt"),
        "xss.png": (XSS, _request_info(XSS), "tEXt"),
        "no-metadata.png": (None, None, "none"),
    }
    sample = _samples()[1]  # weights, a lora tag and a quoted value
    cases["sample.png"] = (sample, _request_info(sample), "tEXt")
    expected = {}
    kernel_written = {"text-latin1.png", "itxt-unicode.png", "xss.png", "sample.png"}
    scratch = Path(tempfile.mkdtemp())
    for i, (name, (text, info, chunk)) in enumerate(cases.items()):
        path = HERE / name
        image = _image((40 * i % 256, 80, 160))
        if name in kernel_written:  # exactly as the kernel saves a painting
            shutil.move(store.save_image(image, scratch, seed=i, info=info), path)
        else:
            image.save(path, format="PNG", pnginfo=info)
        with Image.open(path) as image:
            read = image.text.get(store.PARAMETERS_KEY)
        assert read == text, (name, read, text)
        entry: dict[str, object] = {"chunk": chunk, "parameters": read}
        if read is not None:
            prompt, negative, params = parse_infotext(read)
            entry.update(prompt=prompt, negativePrompt=negative, params=params)
        expected[name] = entry
    shutil.rmtree(scratch)
    out = HERE / "expected.json"
    out.write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    samples = []
    for text in _samples():
        prompt, negative, params = parse_infotext(text)
        samples.append({"text": text, "prompt": prompt, "negativePrompt": negative, "params": params})
    out_samples = HERE / "samples-python.json"
    out_samples.write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} fixtures, {out.relative_to(ROOT)} and {out_samples.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
