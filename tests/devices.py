"""Device parametrisation for the device-sensitive tests.

``@pytest.mark.parametrize("device", DEVICES)`` runs a test on the CPU and, where CUDA is available, on
CUDA. Every such test carries the ``device`` marker (``pytest -m device`` selects them all; this is the
``tests`` part of ``scripts/gpu_check.sh``) and its CUDA variant the ``cuda`` marker as well.
``AUTOCAST_DTYPES`` pairs each device with the half-precision types autocast offers there.
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
_NO_CUDA = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (scripts/gpu_check.sh runs these there)")

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.device, id="cpu"),
    pytest.param("cuda", marks=[pytest.mark.device, pytest.mark.cuda, _NO_CUDA], id="cuda"),
]
"""The devices a device-sensitive test runs on."""

AUTOCAST_DTYPES = [
    pytest.param("cpu", torch.bfloat16, marks=pytest.mark.device, id="cpu-bf16"),
    pytest.param(
        "cuda", torch.float16, marks=[pytest.mark.device, pytest.mark.cuda, _NO_CUDA], id="cuda-fp16"
    ),
    pytest.param(
        "cuda", torch.bfloat16, marks=[pytest.mark.device, pytest.mark.cuda, _NO_CUDA], id="cuda-bf16"
    ),
]
"""(device, dtype) pairs of ``torch.autocast``: bf16 on the CPU, fp16 and bf16 on CUDA."""

TRAINING_PRECISIONS = [
    pytest.param("cpu", "fp32", marks=pytest.mark.device, id="cpu-fp32"),
    *[
        pytest.param(
            "cuda", precision, marks=[pytest.mark.device, pytest.mark.cuda, _NO_CUDA], id=f"cuda-{precision}"
        )
        for precision in ("fp32", "fp16", "bf16")
    ],
]
"""(device, precision) of the training loop: mixed precision is CUDA-only, so the CPU trains in fp32."""
