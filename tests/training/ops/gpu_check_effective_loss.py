"""GPU check of the effective loss's neighbour-limited kernel sum (issue 19); run by hand on a CUDA machine.

``PYTHONPATH=. python tests/training/ops/gpu_check_effective_loss.py [cuda]`` prints, for the Triton and
the PyTorch paths, the relative errors of the values and gradients against the dense float64 oracle
(float64 and float32 inputs, 3 x 3000 points, cutoff 10), then runs the effective loss with the cutoff at
the bench's GPU size (8 objects x 4 views x 8000 points, 64 x 64) under
``torch.cuda.set_sync_debug_mode("error")``: it fails on any host synchronisation. Not a pytest module
(nothing runs on import); the timings are ``mono2mesh-train bench-effective-loss --device cuda ...``.
"""

from __future__ import annotations

import sys

import torch

from tests.training.ops.kernel_oracles import scattered_points, truncated_kernel_sum
from training.bench_effective_loss import _cameras, _ellipsoid_points, _target_masks
from training.losses.effective import effective_loss
from training.ops.neighbour_grid import near_pairs_kernel_sum


def check_against_the_oracle(device: torch.device) -> bool:
    """Relative errors of both paths against the dense oracle; True when all are within tolerance."""
    ok = True
    points, weights = scattered_points(3, 3000, seed=1)  # (3, 3000, 2), (3, 3000) float64
    upstream = torch.randn(3, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    reference_points = points.clone().requires_grad_(True)
    reference = truncated_kernel_sum(reference_points, weights, 0.003, 10.0) * (weights > 0)
    (reference_grad,) = torch.autograd.grad((reference * upstream).sum(), reference_points)
    implementations = ("triton", "torch") if device.type == "cuda" else ("torch",)
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        for implementation in implementations:
            leaf = points.to(device, dtype).requires_grad_(True)
            sums = near_pairs_kernel_sum(
                leaf, weights.to(device, dtype), 0.003, 10.0, 1024,
                weighted_rows_only=True, implementation=implementation,  # type: ignore[arg-type]
            )  # fmt: skip
            (grad,) = torch.autograd.grad((sums * upstream.to(device, dtype)).sum(), leaf)
            value_error = float((sums.detach().double().cpu() - reference.detach()).abs().max())
            grad_error = float((grad.double().cpu() - reference_grad).abs().max())
            value_error /= float(reference.detach().abs().max())
            grad_error /= float(reference_grad.abs().max())
            passed = value_error < tolerance and grad_error < 10 * tolerance
            ok &= passed
            print(f"{implementation} {dtype}: relative error of the values {value_error:.2e}, "
                  f"of the gradients {grad_error:.2e}: {'OK' if passed else 'FAIL'}")  # fmt: skip
    return ok


def check_no_host_sync(device: torch.device) -> None:
    """The effective loss with cutoff 10, forward and backward, under the sync debug mode 'error'."""
    batch, views, count, size = 8, 4, 8000, 64
    cameras = _cameras(batch, views, device)
    masks = _target_masks(cameras, size).view(batch, views, size, size)
    leaf = _ellipsoid_points(batch, count, device).requires_grad_(True)
    points_ndc = cameras.project(leaf.repeat_interleave(views, 0))[..., :2].view(batch, views, -1, 2)
    effective_loss(points_ndc, masks, cutoff=10.0).total.backward(retain_graph=True)  # warm-up (compiles)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
    loss = effective_loss(points_ndc, masks, cutoff=10.0)
    loss.total.backward()
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize(device)
    print(f"effective loss with cutoff 10: no host synchronisation; total {float(loss.total.detach()):.6f}")


def main(argv: list[str]) -> int:
    device = torch.device(argv[0] if argv else "cuda")
    ok = check_against_the_oracle(device)
    check_no_host_sync(device)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
