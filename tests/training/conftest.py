"""Training tests run torch on one thread: the CI machine has two busy cores, and the small tensors of
these tests gain nothing from more (see "Threads on a busy machine" in docs/BENCHMARKS.md).

``hub``: an empty torch hub cache for tests of pretrained-weight lookups; a download fails the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty torch hub cache; any attempt to download fails the test."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_download(*args: object, **kwargs: object) -> None:
        pytest.fail("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)
