"""Shared pytest fixtures.

``shared_data`` points at the real ChestX-ray14 subset that lives beside the repository
(``../shared/data``) or wherever ``PRICHEXY_SHARED_DATA`` says; tests that need it skip with
a clear reason when it is absent, so the suite passes on a machine that has only the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# optional extras: skip where missing, fail where PRICHEXY_REQUIRE_EXTRAS requires them (tests/extras.py)
from tests.extras import pytest_configure, pytest_runtest_makereport  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]

# Two cores on CI: keep every test single-threaded so parallel parts do not thrash.
torch.set_num_threads(1)


def _shared_data_dir() -> Path:
    env = os.environ.get("PRICHEXY_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``shared/data`` folder, or skip the test when it is not there."""
    path = _shared_data_dir()
    if not (path / "nih-cxr14-subset" / "splits.csv").is_file():
        pytest.skip(f"shared data not found at {path} (set PRICHEXY_SHARED_DATA); skipping real-data test")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
