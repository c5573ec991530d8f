"""Shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/farmhelpers.py


@pytest.fixture
def clean_home(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME has no runner or handler definitions."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    env.pop("MPIFARMER_LOCK_DIR", None)
    env.pop("SCRATCH", None)
    return env
