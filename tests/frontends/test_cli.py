import subprocess
import sys

from PIL import Image


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "jupyter_sd.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_cli_paints_and_prints_the_path(tiny_model_dir, tmp_path):
    done = run_cli(
        "a red circle on a blue background",
        "--model",
        str(tiny_model_dir),
        "--steps",
        "3",
        "--seed",
        "1",
        "-o",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    path = tmp_path / "out" / "00001-1.png"
    assert done.stdout.strip() == str(path)
    assert "Steps: 3, Sampler: DPM++ 2M" in Image.open(path).text["parameters"]
    assert "3/3" in done.stderr  # the progress bar


def test_cli_bad_option_exit_2_one_line(tmp_path):
    done = run_cli("x", "--steps", "0", "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip() == "jupyter-sd: steps: must be 1–1000 (got 0)"
    assert not (tmp_path / "out").exists()


def test_cli_help_lists_options():
    done = run_cli("--help")
    assert done.returncode == 0 and "--sampler" in done.stdout and "--size" in done.stdout
