"""``machine_info()``: the facts every benchmark report records about where it ran."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine_info() -> dict[str, Any]:
    """Platform, processor, CPU count, torch threads and version, and the CUDA device when there is one."""
    import torch  # here, not at import: the benchmarks' parsers are built from modules that import this

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
