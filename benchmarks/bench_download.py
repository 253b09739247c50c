"""What our download and Drive-copy paths cost over the plain way of moving the same bytes.

A: ``downloads.fetch_model`` (``.part`` file, inline sha256, progress line, rename) from a local HTTP server;
B: ``urllib.request.urlopen`` + ``shutil.copyfileobj`` of the same URL to a file. Then ``transfer.copy_file``
(the Drive → local-disk copy) against ``shutil.copyfile``. Interleaved A B A B; prints min and median times and
the A/B ratios. Usage: ``python benchmarks/bench_download.py [--mb 128] [--repeats 4]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _report(name: str, ours: list[float], plain: list[float]) -> None:
    ratio_min = min(ours) / min(plain)
    ratio_median = statistics.median(ours) / statistics.median(plain)
    print(
        f"{name}: ours min {min(ours):.3f} s median {statistics.median(ours):.3f} s | plain min {min(plain):.3f} s "
        f"median {statistics.median(plain):.3f} s | ratio min {ratio_min:.2f} median {ratio_median:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    from helpers.fake_web import FakeWebServer, Served

    from jupyter_sd import library
    from jupyter_sd.downloads import download as downloads
    from jupyter_sd.library.transfer import copy_file

    data = os.urandom(args.mb * 1_000_000)
    with tempfile.TemporaryDirectory() as tmp, FakeWebServer() as web:
        root = Path(tmp)
        web.files["/files/big.safetensors"] = Served(data)
        url = f"{web.base}/files/big.safetensors"
        library.set_models_dir(root / "models")
        target = root / "models" / "Lora" / "big.safetensors"
        plain_file = root / "plain.bin"

        def ours() -> None:
            downloads.fetch_model(url, kind="lora", retries=0)

        def plain() -> None:
            with urllib.request.urlopen(url) as response, open(plain_file, "wb") as writer:
                shutil.copyfileobj(response, writer, 1 << 20)

        a, b = [], []
        for _ in range(args.repeats):
            target.unlink(missing_ok=True)
            a.append(_timed(ours))
            plain_file.unlink(missing_ok=True)
            b.append(_timed(plain))
        assert target.read_bytes() == data and plain_file.read_bytes() == data
        _report(f"download {args.mb} MB", a, b)

        source = target
        copy_target, plain_copy = root / "local" / "big.safetensors", root / "plain-copy.bin"
        a, b = [], []
        for _ in range(args.repeats):
            copy_target.unlink(missing_ok=True)
            a.append(_timed(lambda: copy_file(source, copy_target, "copy")))
            plain_copy.unlink(missing_ok=True)
            b.append(_timed(lambda: shutil.copyfile(source, plain_copy)))
        _report(f"local copy {args.mb} MB", a, b)


if __name__ == "__main__":
    main()
