"""Training tests run torch on one thread: the CI machine has two busy cores, and the small tensors of
these tests gain nothing from more (see "Threads on a busy machine" in docs/BENCHMARKS.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
