"""Drive, the local copy of a checkpoint kept on Drive, and taking pictures home (zip + download link).

Colab's own module is not here: a stand-in ``google.colab`` (``drive.mount``, ``files.download``, the front end's
``get_ipynb``) is put in ``sys.modules`` by the test and records every call; its ``drive.mount`` makes the
``MyDrive`` folder the way the real one does. Everything else is the real code on real files.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import zipfile
from pathlib import Path

import pytest
from helpers.ipython_shell import run
from IPython.core.error import UsageError
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine.models import resolve_model
from jupyter_sd.library import drive, folder
from jupyter_sd.painting import session as painter
from jupyter_sd.painting.store import png_info, read_parameters, save_image


@pytest.fixture()
def mount(tmp_path, monkeypatch):
    """Drive's mount point and the local disk, both in the test's folder."""
    monkeypatch.setattr(folder, "DRIVE_MOUNT", tmp_path / "content" / "drive")
    monkeypatch.setattr(drive, "LOCAL_COPIES", tmp_path / "content" / "jupyter_sd-cache")
    monkeypatch.setattr(drive, "_told", set())
    yield folder.DRIVE_MOUNT
    library.set_models_dir(None)


@pytest.fixture()
def colab(monkeypatch):
    """A stand-in ``google.colab`` recording what jupyter_sd asks of it."""
    calls: list[tuple] = []
    try:
        importlib.import_module("google")  # a real namespace package (protobuf's, when installed) stays as it is
    except ImportError:  # a fresh venv has none: the test owns its stand-in namespace too
        google = types.ModuleType("google")
        google.__path__ = []
        monkeypatch.setitem(sys.modules, "google", google)

    def mount(mountpoint, **kwargs):
        calls.append(("mount", mountpoint))
        (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)

    def blocking_request(kind, request="", timeout_sec=None):
        calls.append(("request", kind))
        return {"ipynb": {"metadata": {"colab": {"name": "Fox study.ipynb"}}}}

    package = types.ModuleType("google.colab")
    package.drive = types.SimpleNamespace(mount=mount)
    package.files = types.SimpleNamespace(download=lambda path: calls.append(("download", path)))
    package._message = types.SimpleNamespace(blocking_request=blocking_request)
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setattr(sys.modules["google"], "colab", package, raising=False)
    return calls


@pytest.fixture()
def kernel_defaults(shell):
    saved = dict(painter.settings)
    yield
    shell.run_line_magic("config", "PaintMagics.outdir = ''")
    painter.settings.clear()
    painter.settings.update(saved)


def test_paint_drive_mounts_and_keeps_models_and_pictures_on_drive(
    shell, mount, colab, kernel_defaults, tiny_model_dir, capsys
):
    run(shell, "%paint drive")
    root = mount / "MyDrive" / "jupyter_sd"
    assert colab[0] == ("mount", str(mount))
    assert library.models_dir() == root / "models"
    subfolders = sorted(p.name for p in (root / "models").iterdir())
    assert subfolders == ["ControlNet", "ESRGAN", "Lora", "Stable-diffusion", "VAE", "embeddings"]
    assert painter.settings["outdir"] == str(root / "outputs" / "Fox study")
    assert "models in" in capsys.readouterr().out
    result = run(shell, f"%paint --model {tiny_model_dir} --steps 1 --seed 5 a fox")
    assert result.paths == [root / "outputs" / "Fox study" / "00001-5.png"]


def test_paint_drive_outside_colab_says_what_to_do(shell, mount):
    with pytest.raises(UsageError) as info:
        run(shell, "%paint drive")
    message = str(info.value)
    assert type(info.value) is UsageError and "\n" not in message
    assert "Google Colab" in message and "%paint config models=DIR outdir=DIR" in message
    assert not mount.exists()


def test_checkpoint_on_drive_is_copied_to_local_disk_once(mount, monkeypatch, capsys):
    monkeypatch.setattr(drive, "LOCAL_COPY_MIN", 1000)
    on_drive = mount / "MyDrive" / "jupyter_sd" / "models" / "Stable-diffusion" / "dreamy_v3.safetensors"
    on_drive.parent.mkdir(parents=True)
    on_drive.write_bytes(os.urandom(5000))
    small = on_drive.with_name("small.safetensors")
    small.write_bytes(b"x" * 10)

    source = resolve_model(str(on_drive))  # where the engine resolves a model path
    copy = Path(source.location)
    assert copy == drive.LOCAL_COPIES / "MyDrive" / "jupyter_sd" / "models" / "Stable-diffusion" / on_drive.name
    assert copy.read_bytes() == on_drive.read_bytes() and source.name == "dreamy_v3"
    assert "copied dreamy_v3.safetensors from Drive" in capsys.readouterr().out
    first = copy.stat().st_mtime_ns, copy.stat().st_ino

    assert Path(resolve_model(str(on_drive)).location) == copy  # reused, not copied again, nothing more said
    assert (copy.stat().st_mtime_ns, copy.stat().st_ino) == first and capsys.readouterr().out == ""
    monkeypatch.setattr(drive, "_told", set())  # a new kernel finds the copy of an earlier one and says so
    assert Path(resolve_model(str(on_drive)).location) == copy
    assert "using the local copy of dreamy_v3.safetensors" in capsys.readouterr().out

    on_drive.write_bytes(os.urandom(6000))  # replaced on Drive: copied again
    assert Path(resolve_model(str(on_drive)).location).read_bytes() == on_drive.read_bytes()
    assert resolve_model(str(small)).location == str(small.resolve())  # small files are read in place
    assert not list(copy.parent.glob("*.part"))


def make_pictures(folder: Path, count: int = 3) -> list[Path]:
    paths = []
    for seed in range(count):
        image = Image.new("RGB", (16, 16), (40 * seed, 100, 200))
        paths.append(save_image(image, folder, seed, png_info(f"a fox\nSteps: 1, Seed: {seed}, Size: 16x16")))
    return paths


def test_zip_holds_every_picture_byte_for_byte(tmp_path):
    folder = tmp_path / "fox-paint"
    pictures = make_pictures(folder)
    (folder / "notes.txt").write_text("not a picture")
    target = drive.zip_pictures(folder)
    assert target == tmp_path / "fox-paint.zip"
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == [f"fox-paint/{p.name}" for p in pictures]
        for picture in pictures:
            assert archive.read(f"fox-paint/{picture.name}") == picture.read_bytes()
        archive.extractall(tmp_path / "home")
    assert read_parameters(tmp_path / "home" / "fox-paint" / pictures[1].name).endswith("Seed: 1, Size: 16x16")
    with pytest.raises(ValueError, match="zip: no pictures in"):
        drive.zip_pictures(tmp_path / "home")
    with pytest.raises(ValueError, match="zip: no folder"):
        drive.zip_pictures(tmp_path / "missing")


def test_zip_of_pictures_on_drive_is_written_to_local_disk(mount):
    folder = mount / "MyDrive" / "jupyter_sd" / "outputs" / "fox"
    pictures = make_pictures(folder, 2)
    target = drive.zip_pictures(folder)
    assert target == drive.LOCAL_COPIES.parent / "fox.zip" and not (folder.parent / "fox.zip").exists()
    with zipfile.ZipFile(target) as archive:
        assert [archive.read(f"fox/{p.name}") for p in pictures] == [p.read_bytes() for p in pictures]


def test_civitai_token_from_a_colab_secret(colab, monkeypatch):
    from jupyter_sd.downloads import download as downloads

    monkeypatch.delenv("CIVITAI_TOKEN", raising=False)
    secrets = {"CIVITAI_TOKEN": "from-the-secrets-panel"}

    def get(name):
        colab.append(("secret", name))
        if name not in secrets:
            raise KeyError(name)  # Colab raises SecretNotFoundError
        return secrets[name]

    sys.modules["google.colab"].userdata = types.SimpleNamespace(get=get)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", sys.modules["google.colab"].userdata)
    assert downloads.civitai_token() == "from-the-secrets-panel" and colab == [("secret", "CIVITAI_TOKEN")]
    secrets.clear()
    assert downloads.civitai_token() is None


def test_paint_zip_in_jupyter_shows_a_file_link(shell, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_pictures(tmp_path / "fox-paint", 2)
    link = drive.offer_download(drive.zip_pictures(tmp_path / "fox-paint"))
    assert link.path == "fox-paint.zip" and "href='fox-paint.zip'" in link._repr_html_()  # beside the notebook
    run(shell, "%paint zip fox-paint")
    assert "zip: 2 pictures" in capsys.readouterr().out
    with pytest.raises(UsageError, match="zip: no folder"):
        run(shell, "%paint zip nowhere")


def test_paint_zip_in_colab_hands_the_zip_to_the_browser(shell, tmp_path, colab):
    make_pictures(tmp_path / "fox-paint", 2)
    run(shell, f"%paint zip {tmp_path / 'fox-paint'}")
    assert colab == [("download", str(tmp_path / "fox-paint.zip"))]


def test_gallery_download_all_zips_the_pictures_folder(tmp_path, colab):
    pytest.importorskip("ipywidgets")
    from jupyter_sd.panel.gallery import Gallery
    from jupyter_sd.recipe.request import PaintRequest
    from jupyter_sd.recipe.result import PaintResult

    gallery = Gallery()
    gallery.download_all.click()  # nothing saved yet: no zip, no download
    assert colab == []
    paths = make_pictures(tmp_path / "fox-paint", 2)
    images = [Image.open(p) for p in paths]
    gallery.add(PaintResult(request=PaintRequest(prompt="a fox"), images=images, seeds=[0, 1], paths=paths))
    gallery.download_all.click()
    assert colab == [("download", str(tmp_path / "fox-paint.zip"))]
    with zipfile.ZipFile(tmp_path / "fox-paint.zip") as archive:
        assert len(archive.namelist()) == 2
