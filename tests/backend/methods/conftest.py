"""Fixtures of the method tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture
def method_home(isolated_home: Path) -> Iterator[Path]:
    """No checkpoint of the user's is seen (``isolated_home``: an empty ``$MONO2MESH_HOME``), and the
    test runs on one torch thread (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield isolated_home
    torch.set_num_threads(previous)
