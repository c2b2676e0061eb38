"""Training losses, one tested function each; every method's trainer composes them.

- ``silhouette``: ``iou_loss`` (seeds' eq. 1, 1 - soft IoU per image) and ``multiview_iou_loss``
  (SoftRas's ShapeNet objective: each object's mesh rendered at its own view and at another view).
- ``regularisers``: SoftRas-scaled mesh regularisers (``softras_laplacian``: sum over vertices).
"""
