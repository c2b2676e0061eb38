"""Numerical kernels with custom autograd that training losses build on (no loss logic here).

- ``pairwise``: ``pairwise_kernel_sum``, the chunked all-pairs sum of a truncated ``exp(-d / theta)``
  kernel over 2-D points (forward and backward in row blocks, memory O(chunk_size * N)).
- ``neighbour_grid``: ``local_kernel_sum``, the same sum over pairs closer than a cutoff, found with a
  spatial grid of cells (time and memory O(candidate pairs)).

Import from the submodules; nothing is re-exported here.
"""
