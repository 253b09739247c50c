import json
import multiprocessing

import numpy as np
import pytest
from PIL import Image

from jupyter_sd.painting.store import default_output_dir, load_request, next_number, notebook_path, png_info, save_image
from jupyter_sd.recipe.request import PaintRequest


def _image(value: int = 128) -> Image.Image:
    return Image.new("RGB", (16, 16), (value, 255 - value, 7))


def test_names_count_up_and_never_overwrite(tmp_path):
    (tmp_path / "00007-99.png").write_bytes(b"not mine")
    first = save_image(_image(), tmp_path, 42, png_info("p"))
    second = save_image(_image(), tmp_path, 42, png_info("p"))
    assert (first.name, second.name) == ("00008-42.png", "00009-42.png")
    assert (tmp_path / "00007-99.png").read_bytes() == b"not mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _writer(folder: str, seed: int, count: int) -> None:
    for _ in range(count):
        save_image(_image(seed % 255), folder, seed, png_info(f"seed {seed}"))


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(tmp_path), seed, 15)) for seed in (1, 2, 3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(names) == 45
    numbers = [int(name[:5]) for name in names]
    assert sorted(numbers) == list(range(1, 46))  # every number used once
    for path in tmp_path.glob("*.png"):
        seed = int(path.stem.split("-")[1])
        assert Image.open(path).text["parameters"] == f"seed {seed}"


def test_png_carries_infotext_and_request(tmp_path):
    request = PaintRequest(
        prompt="a fox, snow", negative_prompt="blur", steps=12, seed=5, width=64, height=64, model="tiny"
    )
    text = request.to_infotext()
    path = save_image(_image(), tmp_path, 5, png_info(text, request, {"seed": 5}))
    with Image.open(path) as image:
        assert image.text["parameters"] == text
        assert json.loads(image.text["jupyter_sd"])["request"]["steps"] == 12
        assert np.array_equal(np.array(image.convert("RGB")), np.array(_image()))
    again = load_request(path)
    assert again == request.replace(n=1, repeat=1)


def test_load_request_from_a1111_png(tmp_path):
    text = "a cat\nNegative prompt: dog\nSteps: 9, Sampler: Euler a, CFG scale: 5, Seed: 77, Size: 64x64, Model: tiny"
    path = save_image(_image(), tmp_path, 77, png_info(text))
    request = load_request(path)
    assert (request.prompt, request.negative_prompt, request.steps, request.seed, request.model) == (
        "a cat",
        "dog",
        9,
        77,
        "tiny",
    )


def test_load_request_without_metadata(tmp_path):
    path = tmp_path / "plain.png"
    _image().save(path)
    with pytest.raises(ValueError, match="carries no generation data"):
        load_request(path)


def test_non_latin_prompt_round_trips(tmp_path):
    request = PaintRequest(prompt="雪の中の狐 🦊", seed=1)
    path = save_image(_image(), tmp_path, 1, png_info(request.to_infotext(), request))
    assert Image.open(path).text["parameters"].startswith("雪の中の狐 🦊")


def test_next_number_empty(tmp_path):
    assert next_number(tmp_path / "missing") == 1


def test_folder_beside_the_notebook(tmp_path):
    notebook = tmp_path / "work" / "fox.ipynb"
    assert default_output_dir({"__vsc_ipynb_file__": str(notebook)}, {}) == tmp_path / "work" / "fox-paint"
    assert default_output_dir({"__session__": str(notebook)}, {}) == tmp_path / "work" / "fox-paint"
    assert default_output_dir({}, {"JPY_SESSION_NAME": str(notebook)}) == tmp_path / "work" / "fox-paint"
    # VS Code's variable wins over the server's
    other = tmp_path / "other.ipynb"
    assert notebook_path({"__vsc_ipynb_file__": str(notebook), "__session__": str(other)}, {}) == notebook


def test_folder_without_notebook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_output_dir({}, {}) == tmp_path / "paint-outputs"
    # a console session id is not a notebook
    assert default_output_dir({"__session__": "console-1234"}, {}) == tmp_path / "paint-outputs"


def test_folder_in_colab_without_drive():
    assert str(default_output_dir({}, {"COLAB_RELEASE_TAG": "x"})) in (
        "/content/jupyter_sd/outputs/colab",
        "/content/drive/MyDrive/jupyter_sd/outputs/colab",
    )
