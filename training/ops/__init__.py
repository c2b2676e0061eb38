"""Numerical kernels with custom autograd that training losses build on (no loss logic here).

- ``pairwise``: ``pairwise_kernel_sum``, the chunked all-pairs sum of a truncated ``exp(-d / theta)``
  kernel over 2-D points (forward and backward in row blocks, memory O(chunk_size * N)); the reference
  formulation the neighbour-limited sums are tested against.
- ``neighbour_grid``: ``local_kernel_sum``, the same sum over pairs closer than a cutoff (time O(near
  pairs)): Triton kernels on CUDA, blocked PyTorch elsewhere, on the sorted layout of ``cell_grid``.
- ``cell_grid``: ``build_cell_grid``, points sorted by grid cell with fixed shapes and no host
  synchronisation.
- ``triton_kernel_sum``: the Triton kernels (one program per cell) and ``triton_available``.

Import from the submodules; nothing is re-exported here.
"""
