"""Downloads against a local web server (127.0.0.1) playing civitai, the Hugging Face hub and a file host.

Files are made in the test (small safetensors with the key names real models use); what lands on disk is
compared byte for byte with what was served, and the server's request log shows the Range resume.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import pickle
import shutil
import zipfile
from urllib.parse import quote

import numpy as np
import pytest
from helpers.fake_web import FakeWebServer, Served
from helpers.ipython_shell import run
from IPython.core.error import UsageError
from safetensors.numpy import save

from jupyter_sd import library
from jupyter_sd.downloads import download as downloads
from jupyter_sd.downloads.huggingface import pipeline_files
from jupyter_sd.library.kinds import classify, file_kind, tensor_names
from jupyter_sd.library.transfer import progress_line

LORA_KEYS = (
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight",
    "lora_unet_down_blocks_0_attentions_0_proj_in.alpha",
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
)


def lora_bytes(side: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    return save({key: rng.standard_normal((side, side)).astype(np.float32) for key in LORA_KEYS})


@pytest.fixture(scope="module")
def checkpoint_bytes(tiny_model_dir, tmp_path_factory) -> bytes:
    """A real (tiny) single-file checkpoint in the original LDM layout, as civitai serves them."""
    from helpers.ldm_checkpoint import convert_to_ldm_checkpoint

    return convert_to_ldm_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors").read_bytes()


@pytest.fixture()
def web(monkeypatch):
    with FakeWebServer() as web:
        monkeypatch.setenv(downloads.CIVITAI_API_ENV, f"{web.base}/api/v1")
        yield web


@pytest.fixture(autouse=True)
def models(tmp_path, monkeypatch):
    monkeypatch.delenv(downloads.CIVITAI_TOKEN_ENV, raising=False)
    downloads.set_civitai_token(None)
    folder = library.set_models_dir(tmp_path / "models")
    yield folder
    library.set_models_dir(None)
    downloads.set_civitai_token(None)


def civitai_version(web, version: int, name: str, data: bytes, model_type: str, sha256: str | None = None) -> None:
    """What civitai's API says about a version, and its download link redirecting to a storage host."""
    web.json[f"/api/v1/model-versions/{version}"] = {
        "id": version,
        "modelId": 7,
        "model": {"name": "a model", "type": model_type},
        "files": [
            {"name": "training.zip", "type": "Training Data", "sizeKB": 1, "downloadUrl": f"{web.base}/nothing"},
            {
                "name": name,
                "type": "Model",
                "primary": True,
                "sizeKB": len(data) / 1024,
                "hashes": {"SHA256": (sha256 or hashlib.sha256(data).hexdigest()).upper(), "AutoV2": "X"},
                "metadata": {"format": "SafeTensor", "fp": "fp16"},
                "downloadUrl": f"{web.base}/api/download/models/{version}",
            },
        ],
    }
    web.redirects[f"/api/download/models/{version}"] = f"{web.base}/storage/{version}/{quote(name)}"
    web.files[f"/storage/{version}/{name}"] = Served(data)


def test_civitai_lora_and_checkpoint_land_in_their_subfolders(web, models, checkpoint_bytes, tiny_model_dir):
    lora = lora_bytes()
    civitai_version(web, 1001, "Film Grain Style.safetensors", lora, "LORA")
    civitai_version(web, 1002, "tinyMix_v1.safetensors", checkpoint_bytes, "Checkpoint")

    got = downloads.download("https://civitai.com/models/7/film-grain?modelVersionId=1001")
    assert got.path == models / "Lora" / "Film Grain Style.safetensors"
    assert got.path.read_bytes() == lora and got.kind == "lora" and got.checked
    assert "<lora:Film Grain Style:0.8>" in got.summary() and "sha256 checked" in got.summary()
    assert json.loads((models / "Lora" / "Film Grain Style.civitai.info").read_text())["id"] == 1001

    got = downloads.download("https://civitai.com/api/download/models/1002")
    assert got.path == models / "Stable-diffusion" / "tinyMix_v1.safetensors"
    assert got.path.read_bytes() == checkpoint_bytes and got.kind == "checkpoint" and got.checked
    assert "--model tinyMix_v1" in got.summary()
    assert not list(models.rglob("*.part"))

    # usable by name at once: the LoRA is found by its stem, the checkpoint paints with --model <stem>
    from jupyter_sd import paint

    assert library.find_model("lora", "Film Grain Style").path == models / "Lora" / "Film Grain Style.safetensors"
    result = paint("a fox", model="tinyMix_v1", model_config=str(tiny_model_dir), steps=1, seed=1, save=False)
    assert result.model_name == "tinyMix_v1" and len(result.images) == 1

    # a second download of the same version finds the file and keeps it
    again = downloads.download("https://civitai.com/models/7?modelVersionId=1002")
    assert again.already and again.path.read_bytes() == checkpoint_bytes


def test_model_page_takes_the_latest_version(web, models):
    lora = lora_bytes()
    civitai_version(web, 2001, "newest.safetensors", lora, "LoCon")
    version = web.json.pop("/api/v1/model-versions/2001")
    web.json["/api/v1/models/55"] = {"id": 55, "name": "x", "type": "LoCon", "modelVersions": [version]}
    got = downloads.download("https://civitai.com/models/55/some-name")
    assert got.path == models / "Lora" / "newest.safetensors" and got.kind == "lycoris"


def test_token_goes_to_civitai_never_to_the_storage_host(web, models, monkeypatch):
    civitai_version(web, 3001, "style.safetensors", lora_bytes(), "LORA")
    monkeypatch.setenv("CIVITAI_TOKEN", "secret-key")
    downloads.download("https://civitai.com/models/7?modelVersionId=3001")
    assert web.requests("/api/v1/model-versions/3001")[0]["Authorization"] == "Bearer secret-key"
    assert web.requests("/api/download/models/3001")[0]["Authorization"] == "Bearer secret-key"
    assert "Authorization" not in web.requests("/storage/3001/style.safetensors")[0]


def test_401_names_the_token_variable_and_the_token_then_works(web, models):
    data = lora_bytes()
    civitai_version(web, 4001, "early.safetensors", data, "LORA")
    del web.redirects["/api/download/models/4001"]
    web.files["/api/download/models/4001"] = Served(data, token="k3y")
    with pytest.raises(ValueError) as info:
        downloads.download("https://civitai.com/models/7?modelVersionId=4001")
    message = str(info.value)
    assert "401" in message and "CIVITAI_TOKEN" in message and "civitai_token=" in message and "\n" not in message
    assert not (models / "Lora").exists() or not list((models / "Lora").iterdir())
    downloads.set_civitai_token("k3y")
    assert downloads.download("https://civitai.com/models/7?modelVersionId=4001").path.read_bytes() == data


def test_a_dropped_connection_resumes_with_range_to_the_same_bytes(web, models, checkpoint_bytes):
    half = len(checkpoint_bytes) // 2
    civitai_version(web, 5001, "big.safetensors", checkpoint_bytes, "Checkpoint")
    web.files["/storage/5001/big.safetensors"].drop_after = half
    with pytest.raises(ValueError, match="the connection dropped at .* run the same download again to resume"):
        downloads.download("https://civitai.com/models/7?modelVersionId=5001", retries=0)
    part = models / "Stable-diffusion" / "big.safetensors.part"
    assert part.read_bytes() == checkpoint_bytes[:half]
    assert not (models / "Stable-diffusion" / "big.safetensors").exists()  # no final name before it is whole

    got = downloads.download("https://civitai.com/models/7?modelVersionId=5001")
    assert got.path.read_bytes() == checkpoint_bytes and got.checked and not part.exists()
    assert web.requests("/storage/5001/big.safetensors")[-1]["Range"] == f"bytes={half}-"


def test_a_drop_is_resumed_within_one_call(web, models):
    data = lora_bytes(256)
    web.files["/files/wide.safetensors"] = Served(data, drop_after=len(data) // 3)
    got = downloads.download(f"{web.base}/files/wide.safetensors")
    assert got.path == models / "Lora" / "wide.safetensors" and got.path.read_bytes() == data
    ranges = [h.get("Range") for h in web.requests("/files/wide.safetensors")]
    assert f"bytes={len(data) // 3}-" in ranges


def test_checksum_mismatch_removes_the_file(web, models):
    civitai_version(web, 6001, "bad.safetensors", lora_bytes(), "LORA", sha256="ab" * 32)
    with pytest.raises(ValueError) as info:
        downloads.download("https://civitai.com/models/7?modelVersionId=6001")
    assert "sha256" in str(info.value) and "removed" in str(info.value) and "\n" not in str(info.value)
    assert not [p for p in models.rglob("*") if p.is_file()]


def test_not_enough_disk_space_writes_nothing(web, models, monkeypatch, checkpoint_bytes):
    civitai_version(web, 7001, "huge.safetensors", checkpoint_bytes, "Checkpoint")
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ValueError) as info:
        downloads.download("https://civitai.com/models/7?modelVersionId=7001")
    assert "not enough disk space for huge.safetensors" in str(info.value) and "1.0 KB free" in str(info.value)
    assert not models.exists()


def test_kind_from_the_tensors_when_civitai_api_is_down(web, models, checkpoint_bytes):
    web.files["/api/download/models/8001"] = Served(
        checkpoint_bytes, disposition='attachment; filename="fromTensors_v2.safetensors"'
    )
    web.status["/api/v1/model-versions/8001"] = 503
    got = downloads.download("https://civitai.com/models/7?modelVersionId=8001")
    assert got.path == models / "Stable-diffusion" / "fromTensors_v2.safetensors" and not got.checked


def test_unknown_kind_keeps_the_file_and_kind_finishes_it(web, models):
    data = save({"text_model.embeddings.position_ids": np.arange(8, dtype=np.int64)[None]})
    web.files["/files/mystery.safetensors"] = Served(data)
    with pytest.raises(ValueError, match=r"can't tell from its tensors .* run the same download again with --kind"):
        downloads.download(f"{web.base}/files/mystery.safetensors")
    assert (models / "mystery.safetensors.part").read_bytes() == data  # kept, under no real name
    got = downloads.download(f"{web.base}/files/mystery.safetensors", kind="vae")
    assert got.path == models / "VAE" / "mystery.safetensors" and got.path.read_bytes() == data
    assert "--vae mystery" in got.summary() and not list(models.rglob("*.part"))
    assert web.requests("/files/mystery.safetensors")[-1]["Range"] == f"bytes={len(data)}-"  # nothing left: 416


def test_plain_http_pickle_is_kept_and_marked(web, models):
    state = {"string_to_param": {"*": [0.0] * 4}, "name": "mytoken"}
    web.files["/files/mytoken.pt"] = Served(zip_pickle(state))
    got = downloads.download(f"{web.base}/files/mytoken.pt")
    assert got.path == models / "embeddings" / "mytoken.pt" and got.kind == "embedding" and got.pickle
    assert "--allow-pickle" in got.summary()
    from jupyter_sd.engine.models import resolve_model

    with pytest.raises(ValueError, match="pickle checkpoint"):
        resolve_model(str(got.path))


@pytest.mark.parametrize(
    "source",
    ["ftp://example.com/model.safetensors", "just some words", "file:///etc/passwd", "C:\\models\\x.safetensors"],
)
def test_a_source_that_is_no_link_is_one_line(source, models):
    with pytest.raises(ValueError) as info:
        downloads.download(source)
    assert "is not a civitai link, a Hugging Face link or repo id" in str(info.value) and "\n" not in str(info.value)


def test_a_web_page_is_not_a_model(web, models):
    web.files["/page"] = Served(b"<html>login</html>", content_type="text/html")
    with pytest.raises(ValueError, match="answered with a web page"):
        downloads.download(f"{web.base}/page")
    web.files["/notes.txt"] = Served(b"hello", content_type="text/plain")
    with pytest.raises(ValueError, match="is not a model file"):
        downloads.download(f"{web.base}/notes.txt")


# -- the Hugging Face hub (huggingface_hub against HF_ENDPOINT = the local server) --------------------------------


@pytest.fixture()
def hub(web, monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_ENDPOINT", web.base)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    return web


def test_hub_file_lands_by_its_tensors_with_sha256_checked(hub, models):
    data = lora_bytes()
    hub.add_hub_file("someone/loras", "styles/ink.safetensors", data)
    got = downloads.download("https://huggingface.co/someone/loras/blob/main/styles/ink.safetensors")
    assert got.path == models / "Lora" / "ink.safetensors" and got.path.read_bytes() == data and got.checked
    gets = len(hub.requests("/someone/loras/resolve/main/styles/ink.safetensors"))
    again = downloads.download("https://huggingface.co/someone/loras/blob/main/styles/ink.safetensors")
    assert again.already and again.path == got.path  # found by name and sha256: only the HEAD was asked
    assert len(hub.requests("/someone/loras/resolve/main/styles/ink.safetensors")) == gets + 1


def test_hub_checksum_mismatch_removes_the_file(hub, models):
    hub.add_hub_file("someone/loras", "bad.safetensors", lora_bytes(), etag="cd" * 32)
    with pytest.raises(ValueError, match="sha256 .* the hub gives; the file was removed"):
        downloads.download("https://huggingface.co/someone/loras/resolve/main/bad.safetensors")
    assert not (models / "Lora").exists()


def test_hub_missing_repo_is_one_line_naming_hf_token(hub, models):
    with pytest.raises(ValueError) as info:
        downloads.download("https://huggingface.co/nobody/nothing/blob/main/x.safetensors")
    assert "HF_TOKEN" in str(info.value) and "\n" not in str(info.value)


def test_pipeline_files_take_one_weight_format_per_component():
    paths = [
        "model_index.json",
        "README.md",
        "sd_turbo.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model-00002-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json",
        "text_encoder/model.safetensors.index.fp16.json",
        "text_encoder/flax_model.msgpack",
        "tokenizer/vocab.json",
    ]
    assert pipeline_files(paths, ["unet", "vae", "text_encoder", "tokenizer"]) == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model-00002-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json",
        "tokenizer/vocab.json",
    ]


# -- what a file holds ---------------------------------------------------------------------------------------------


def zip_pickle(state) -> bytes:
    """A zip-format torch checkpoint's shape (``archive/data.pkl``), made without torch."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(state, protocol=2))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("names", "kind"),
    [
        (["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"], "checkpoint"),
        (list(LORA_KEYS), "lora"),
        (["lora_unet_mid_block_attentions_0_proj_in.hada_w1_a", "lora_unet_x.alpha"], "lycoris"),
        (["lora_unet_x.lokr_w1", "lora_unet_x.lokr_w2"], "lycoris"),
        (["unet.down_blocks.0.attentions.0.to_q.lora_A.weight"], "lora"),
        (["emb_params"], "embedding"),
        (["clip_l", "clip_g"], "embedding"),
        (["encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight"], "vae"),
        (["text_model.embeddings.position_ids"], None),
    ],
)
def test_classify_by_tensor_names(names, kind):
    assert classify(names) == kind


def test_tensor_names_read_safetensors_and_pickles_without_unpickling(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(lora_bytes(4))
    assert set(tensor_names(tmp_path / "a.safetensors")) == set(LORA_KEYS)

    class Boom:  # unpickling this would run code; reading the opcodes does not
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    (tmp_path / "b.ckpt").write_bytes(zip_pickle({"state_dict": {"model.diffusion_model.out.2.weight": Boom()}}))
    assert file_kind(tmp_path / "b.ckpt") == "checkpoint"
    (tmp_path / "c.bin").write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="neither a .safetensors file nor a zip-format pickle"):
        tensor_names(tmp_path / "c.bin")


def test_progress_line_reports_bytes_speed_and_eta():
    line = progress_line("x.safetensors", 50_000_000, 200_000_000, elapsed=5.0, fresh=50_000_000)
    assert line == "x.safetensors  50.0 MB / 200.0 MB (25%) · 10.0 MB/s · ETA 0:15"
    resumed = progress_line("x", 150_000_000, 200_000_000, elapsed=2.0, fresh=20_000_000)
    assert resumed.endswith("· 10.0 MB/s · ETA 0:05")  # speed counts this session's bytes only


# -- %paint download and %paint config civitai_token=, in a real IPython shell --------------------------------------


def test_magic_download_prints_one_line_and_errors_are_usage_errors(shell, web, models, capsys):
    civitai_version(web, 9001, "magic.safetensors", lora_bytes(), "LORA")
    run(shell, "%paint download https://civitai.com/models/7?modelVersionId=9001")
    out = capsys.readouterr().out
    assert "downloaded: magic.safetensors (LoRA" in out and "<lora:magic:0.8>" in out
    with pytest.raises(UsageError) as info:
        run(shell, "%paint download ftp://nowhere/x.safetensors")
    assert type(info.value) is UsageError and "not a civitai link" in str(info.value)
    with pytest.raises(UsageError, match="expected one link"):
        run(shell, "%paint download")
    kinds = r"checkpoint, lora, .*, vae, upscaler, controlnet"
    with pytest.raises(UsageError, match=rf"--kind must be one of {kinds} \(got 'model'\)"):
        run(shell, f"%paint download {web.base}/x.safetensors --kind model")


def test_magic_config_keeps_the_civitai_token_out_of_sight(shell, web, models, capsys):
    data = lora_bytes()
    civitai_version(web, 9101, "locked.safetensors", data, "LORA")
    del web.redirects["/api/download/models/9101"]
    web.files["/api/download/models/9101"] = Served(data, token="t0ken")
    run(shell, "%paint config civitai_token=t0ken")
    run(shell, "%paint config")
    out = capsys.readouterr().out
    assert "civitai_token = (set)" in out and "t0ken" not in out
    run(shell, "%paint download https://civitai.com/models/7?modelVersionId=9101 --kind lora")
    assert (models / "Lora" / "locked.safetensors").read_bytes() == data


def test_hub_repo_fetches_what_from_pretrained_reads_into_the_cache(hub, models, tiny_model_dir, tmp_path):
    served = {}
    for path in sorted(p for p in tiny_model_dir.rglob("*") if p.is_file()):
        served[path.relative_to(tiny_model_dir).as_posix()] = path.read_bytes()
    served["unet/diffusion_pytorch_model.fp16.safetensors"] = b"a duplicate in half precision"
    served["tiny-single-file.safetensors"] = b"a root-level checkpoint from_pretrained never reads"
    for name, data in served.items():
        hub.add_hub_file("someone/tiny-sd", name, data)
    got = downloads.download("someone/tiny-sd")
    assert got.kind == "diffusers" and str(got.path).startswith(str(tmp_path / "hf-cache"))
    fetched = {p.relative_to(got.path).as_posix(): p.read_bytes() for p in got.path.rglob("*") if p.is_file()}
    components = {key for key in json.loads(served["model_index.json"]) if not key.startswith("_")}
    wanted = {
        k: v
        for k, v in served.items()
        if (k == "model_index.json" or k.split("/")[0] in components) and ".fp16." not in k
    }
    assert len(wanted) >= 8
    assert fetched == wanted
    assert "into the Hugging Face cache" in got.summary()


def test_kernel_interrupt_keeps_the_part_and_the_same_line_resumes(web, tmp_path):
    from helpers.kernel_client import of_type, reply_status, running_kernel, stream_text

    data = lora_bytes(400)  # 4 tensors of 640 KB
    web.files["/files/slow.safetensors"] = Served(data, delay=0.05)
    models = tmp_path / "kernel-models"
    line = f"%paint download {web.base}/files/slow.safetensors"
    with running_kernel(tmp_path, env={library.ENV_VAR: str(models)}) as kernel:
        kernel.execute("%load_ext jupyter_sd")
        sent = {"interrupt": False}

        def interrupt_once_progress_shows(message, messages):
            if message["msg_type"] == "update_display_data" and not sent["interrupt"]:
                sent["interrupt"] = True
                kernel.interrupt()

        first = kernel.execute(line, on_message=interrupt_once_progress_shows)
        assert sent["interrupt"] and reply_status(first) == "ok"
        assert "download: interrupted; run the same line again" in stream_text(first)
        progress = of_type(first, "display_data")[0]["content"]["data"]["text/plain"]
        assert progress.startswith("slow.safetensors  ") and "MB/s" in progress and "%" in progress
        part = models / "slow.safetensors.part"
        kept = part.stat().st_size
        assert 0 < kept < len(data) and part.read_bytes() == data[:kept]

        web.files["/files/slow.safetensors"].delay = 0
        second = kernel.execute(line)
        assert reply_status(second) == "ok" and "downloaded: slow.safetensors (LoRA" in stream_text(second)
    assert (models / "Lora" / "slow.safetensors").read_bytes() == data and not part.exists()
    assert web.requests("/files/slow.safetensors")[-1]["Range"] == f"bytes={kept}-"
