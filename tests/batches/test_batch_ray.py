"""Batches on a local Ray (2 CPUs, started and stopped here): same pictures as the kernel's, faults, resuming.

One Ray session for the whole module (Ray is slow to start on a small machine). The reference is a local batch of
the same requests painted in this process on one thread, as each single-CPU actor paints.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason='needs Ray: pip install "jupyter_sd[ray]"')
pytest.importorskip("ray.data", reason='needs Ray Data: pip install "jupyter_sd[ray]"')

import jupyter_sd  # noqa: E402
from jupyter_sd.batches.views import BatchView  # noqa: E402

pytestmark = pytest.mark.slow
REQUESTS = [
    {"prompt": f"a {colour} {shape} on a white background", "seed": 100 + k, "sampler": sampler}
    for k, (colour, shape, sampler) in enumerate(
        (colour, shape, sampler)
        for colour in ("red", "green", "blue")
        for shape, sampler in (("circle", "DPM++ 2M"), ("square", "Euler a"), ("triangle", "Euler"), ("star", "DDIM"))
    )
]
FAST = {"model": "tiny", "steps": 2, "size": "64x64"}


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_DISABLE_DOCKER_CPU_WARNING"] = "1"
    for attempt in range(3):  # a busy 2-core machine can miss Ray's 30 s start-up window
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
            time.sleep(5)
    yield "local"
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same 12 requests on the kernel's engine, on one thread like each actor."""
    import torch

    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = jupyter_sd.batch(REQUESTS, outdir=str(out), view=BatchView(), **FAST)
    finally:
        torch.set_num_threads(threads)
    assert result.painted == 12
    return out


def by_seed(folder):
    files = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            payload = json.loads(image.text["jupyter_sd"])
            payload["request"].pop("outdir")
            files[payload["seed"]] = (image.text["parameters"], payload, np.asarray(image.convert("RGB")))
    return files


def test_ray_paints_what_the_kernel_paints(cluster, local_run, tmp_path):
    out = tmp_path / "ray"
    result = jupyter_sd.batch(REQUESTS, cluster=cluster, workers=2, outdir=str(out), view=BatchView(), **FAST)
    assert (result.painted, result.failures, result.cluster) == (12, [], "ray local")
    assert all(item.worker for item in result.items)
    files = sorted(out.glob("*.png"))
    assert [path.name[:5] for path in files] == [f"{k:05d}" for k in range(1, 13)]  # the usual numbering
    ours, theirs = by_seed(out), by_seed(local_run)
    assert sorted(ours) == sorted(theirs) == [100 + k for k in range(12)]
    for seed in ours:
        assert ours[seed][0] == theirs[seed][0]  # A1111 infotext
        assert ours[seed][1] == theirs[seed][1]  # our JSON chunk: the request and its batch key
        assert np.array_equal(ours[seed][2], theirs[seed][2]), seed

    stamps = {path.name: path.stat().st_mtime_ns for path in files}
    again = jupyter_sd.batch(REQUESTS, cluster=cluster, workers=2, outdir=str(out), view=BatchView(), **FAST)
    assert (again.painted, again.skipped) == (0, 12)
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.png")} == stamps


class KillOneActor(BatchView):
    """Once 3 pictures are in, kill a painting actor (Ray restarts it and retries its requests)."""

    def __init__(self):
        self.killed = None

    def update(self, tracker, images=(), final=False):
        if self.killed is None and tracker.images_done >= 3:
            from ray._raylet import ActorID

            alive = [
                actor
                for actor in ray._private.state.actors().values()
                if "PaintActor" in actor.get("ActorClassName", "") and actor["State"] == "ALIVE"
            ]
            worker = ray._private.worker.global_worker.core_worker
            ray.kill(worker.get_actor_handle(ActorID.from_hex(alive[0]["ActorID"])), no_restart=False)
            self.killed = alive[0]["ActorID"]


def test_killed_actor_and_failing_request(cluster, tmp_path):
    out = tmp_path / "ray"
    broken = {"prompt": "a fox", "model": str(tmp_path / "no-such-model")}
    view = KillOneActor()
    requests = [{**request, "model": "tiny"} for request in REQUESTS]  # a batch-wide model would win over `broken`'s
    result = jupyter_sd.batch(
        requests[:6] + [broken] + requests[6:], cluster=cluster, workers=2, outdir=str(out), view=view, steps=2,
        size="64x64",
    )  # fmt: skip
    assert view.killed is not None
    restarts = ray._private.state.actors()[view.killed].get("NumRestarts")
    assert restarts is None or int(restarts) >= 1
    assert result.painted == 12
    assert [where for where, _ in result.failures] == ["item 7"] and "no-such-model" in result.failures[0][1]
    keys = [json.loads(Image.open(path).text["jupyter_sd"])["batch_key"] for path in out.glob("*.png")]
    assert len(keys) == 12 and len(set(keys)) == 12  # all saved, each once


def test_workers_write_to_a_shared_outdir(cluster, tmp_path):
    out = tmp_path / "shared"
    with pytest.raises(ValueError, match="shared_outdir: needs a Ray cluster and --outdir"):
        jupyter_sd.batch(REQUESTS[:2], cluster=cluster, shared_outdir=True, **FAST)
    result = jupyter_sd.batch(
        REQUESTS[:4], cluster=cluster, workers=2, outdir=str(out), shared_outdir=True, view=BatchView(), **FAST
    )
    assert result.painted == 4 and sorted(result.paths) == sorted(out.glob("*.png"))
    assert sorted(json.loads(Image.open(p).text["jupyter_sd"])["seed"] for p in result.paths) == [100, 101, 102, 103]


class StopAfter(BatchView):
    def __init__(self, stop, images):
        self.stop, self.images = stop, images

    def update(self, tracker, images=(), final=False):
        if tracker.images_done >= self.images:
            self.stop.set()


def test_stop_keeps_what_finished_and_the_rerun_paints_the_rest(cluster, tmp_path):
    import threading

    out, stop = tmp_path / "ray", threading.Event()
    requests = REQUESTS[:8]
    result = jupyter_sd.batch(
        requests, cluster=cluster, workers=2, outdir=str(out), view=StopAfter(stop, 2), stop=stop, **FAST
    )
    saved = sorted(out.glob("*.png"))
    assert result.stopped_by == "stop" and 2 <= result.painted < 8 and len(saved) == result.painted
    rest = jupyter_sd.batch(requests, cluster=cluster, workers=2, outdir=str(out), view=BatchView(), **FAST)
    assert (rest.painted, rest.skipped) == (8 - len(saved), len(saved))
    seeds = sorted(json.loads(Image.open(path).text["jupyter_sd"])["seed"] for path in out.glob("*.png"))
    assert seeds == [100 + k for k in range(8)]
