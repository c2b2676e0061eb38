"""The Triton kernels of the neighbour-limited kernel sum against the PyTorch path and the dense oracle.

The kernels run on CPU tensors under ``TRITON_INTERPRET=1``, which must be set before triton is first
imported: the comparison runs in a subprocess (tiny inputs; values and gradients, float64 and float32,
both row modes, a cutoff past the truncation). Skipped where triton is not installed. In this process
(no interpreter) the kernels are unavailable for CPU tensors and ``implementation="triton"`` says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.ops.neighbour_grid import local_kernel_sum
from training.ops.triton_kernel_sum import triton_available

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, torch
from tests.training.ops.kernel_oracles import scattered_points, truncated_kernel_sum
from training.ops.neighbour_grid import near_pairs_kernel_sum
from training.ops.triton_kernel_sum import triton_available

def grad(value, points, upstream):
    (result,) = torch.autograd.grad((value * upstream).sum(), points)
    return result

report = {"available": triton_available(torch.zeros(1))}
cases = [("float64", 3.0, 0.03, False), ("float64", 10.0, 0.01, True), ("float32", 6.0, 0.02, True),
         ("float64", 45.0, 0.004, False)]
for dtype_name, cutoff, theta, weighted_rows_only in cases:
    dtype = getattr(torch, dtype_name)
    points, weights = scattered_points(2, 70, seed=int(cutoff))
    points, weights = points.to(dtype), weights.to(dtype)
    points[:, 20:40] *= 0.1  # a crowded patch: cells with more rows than a block
    points.requires_grad_(True)
    upstream = torch.randn(2, 70, dtype=dtype, generator=torch.Generator().manual_seed(1))
    results = {}
    for implementation in ("triton", "torch"):
        value = near_pairs_kernel_sum(points, weights, theta, cutoff, 16,
                                      weighted_rows_only=weighted_rows_only,
                                      implementation=implementation, extent=0.25)
        results[implementation] = (value.detach(), grad(value, points, upstream))
    dense = truncated_kernel_sum(points.double(), weights.double(), theta, cutoff)
    if weighted_rows_only:
        dense = dense * (weights > 0)
    dense_grad = grad(dense, points, upstream.double())
    triton_value, triton_grad = results["triton"]
    torch_value, torch_grad = results["torch"]
    report[f"{dtype_name}-{cutoff}-{weighted_rows_only}"] = {
        "value_scale": float(dense.abs().max()),
        "grad_scale": float(dense_grad.abs().max()),
        "triton_vs_torch_value": float((triton_value - torch_value).abs().max()),
        "triton_vs_torch_grad": float((triton_grad - torch_grad).abs().max()),
        "triton_vs_dense_value": float((triton_value.double() - dense).abs().max()),
        "triton_vs_dense_grad": float((triton_grad.double() - dense_grad).abs().max()),
    }
print(json.dumps(report))
"""


@pytest.mark.slow
def test_triton_kernels_match_the_pytorch_path_under_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report.pop("available") is True
    assert len(report) == 4
    for case, errors in report.items():
        assert errors["value_scale"] > 0.2 and errors["grad_scale"] > 1.0, case  # close pairs exist
        tolerance = 1e-12 if case.startswith("float64") else 1e-5
        for name in ("triton_vs_torch", "triton_vs_dense"):
            assert errors[f"{name}_value"] <= tolerance * errors["value_scale"], (case, name, errors)
            assert errors[f"{name}_grad"] <= 10 * tolerance * errors["grad_scale"], (case, name, errors)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter runs CPU tensors")
def test_triton_is_not_used_for_cpu_tensors_without_the_interpreter() -> None:
    points = torch.rand(1, 5, 2, dtype=torch.float64)
    assert not triton_available(points)
    with pytest.raises(RuntimeError, match="Triton kernels cannot run"):
        local_kernel_sum(
            points, torch.ones(1, 5, dtype=torch.float64), 0.1, cutoff=3.0, implementation="triton"
        )
    auto = local_kernel_sum(points, torch.ones(1, 5, dtype=torch.float64), 0.1, cutoff=3.0)  # the torch path
    assert torch.equal(
        auto, local_kernel_sum(points, torch.ones(1, 5), 0.1, cutoff=3.0, implementation="torch")
    )


def test_a_failing_kernel_falls_back_to_the_pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.ops import neighbour_grid, triton_kernel_sum

    def broken(*args: object) -> torch.Tensor:
        raise RuntimeError("no kernel for this GPU")

    monkeypatch.setattr(triton_kernel_sum, "_FAILURES", [])
    monkeypatch.setattr(triton_kernel_sum, "triton", object())  # "installed"
    monkeypatch.setattr(triton_kernel_sum.os, "environ", {"TRITON_INTERPRET": "1"})  # "runs here"
    monkeypatch.setattr(neighbour_grid, "triton_near_sums", broken)
    points = torch.rand(2, 30, 2, dtype=torch.float64)
    weights = torch.rand(2, 30, dtype=torch.float64)
    assert triton_available(points)
    with pytest.raises(RuntimeError, match="no kernel"):  # asked for Triton: the error stands
        local_kernel_sum(points, weights, 0.05, cutoff=3.0, implementation="triton")
    with pytest.warns(RuntimeWarning, match="using the PyTorch path"):
        auto = local_kernel_sum(points, weights, 0.05, cutoff=3.0)
    assert not triton_available(points)  # disabled for the process
    expected = local_kernel_sum(points, weights, 0.05, cutoff=3.0, implementation="torch")
    torch.testing.assert_close(auto, expected, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter replaces compilation")
@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_the_kernels_compile_for_an_h100_class_gpu_without_one(dtype: str) -> None:
    """Ahead-of-time compilation to a cubin for sm_90 (Triton's own toolchain; no GPU needed)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from training.ops import triton_kernel_sum

    kernels = {
        triton_kernel_sum._near_sums_kernel: ["xs", "ys", "ws", "cell_start", "params", "out", "cells"],
        triton_kernel_sum._near_grad_kernel: [
            "xs", "ys", "ws", "gs", "cell_start", "params", "out_x", "out_y", "cells",
        ],
    }  # fmt: skip
    constants = {"SPREAD": 2, "BLOCK_R": triton_kernel_sum.BLOCK_ROWS, "BLOCK_C": 64, "EPS": 1e-8}
    for kernel, names in kernels.items():
        kinds = {"cell_start": "*i64", "cells": "i32"}
        signature = {name: kinds.get(name, f"*{dtype}") for name in names}
        signature.update(dict.fromkeys(constants, "constexpr"))
        try:
            compiled = triton.compile(
                ASTSource(fn=kernel, signature=signature, constexprs=constants),
                target=GPUTarget("cuda", 90, 32),
            )
        except (FileNotFoundError, RuntimeError) as error:  # no CUDA toolchain in this triton build
            if "ptxas" in str(error):
                pytest.skip(f"no ptxas: {error}")
            raise
        assert compiled.asm["cubin"]
