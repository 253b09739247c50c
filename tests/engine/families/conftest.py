"""What the family tests share: one engine per test module, and the tiny Flux and SD3 folders built once per module."""

from __future__ import annotations

import pytest
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3

from jupyter_sd.engine import Engine


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    return make_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3"))
