"""The fitting engine: meshes and cameras fitted to object masks by test-time optimisation, and textured
from the photo. Pure functions and small frozen dataclasses; no method, option model or registry.

- ``targets``: the mask at a fitting resolution (``MaskTarget``), MeshInversion's ``chamfer_mask_loss``.
- ``inversion_losses``: MeshInversion's Chamfer texture losses (pixel and feature level), latent prior,
  face-normal smoothness and the photo as their target (``InversionTarget``); ``methods.mesh_inversion``.
- ``camera``: weak-perspective cameras as optimisation variables, the azimuth hypotheses they start from.
- ``optimise``: ``FitSettings``, ``FitProblem`` and ``optimise`` (the one Adam loop), ``ShapeFit``.
- ``shape``: ``fit_template`` (the symmetric template) and ``fit_refinement`` (a given mesh kept near
  itself; ``RefineSettings``); ``refine_terms``: the refinement's outline freedom, mirror pairs, moved
  texels.
- ``pose``: ``fit_pose``, the camera of a fixed mesh.
- ``texture``: ``texture_from_photo`` (``TextureSettings``), ``fitted_mesh``.
- ``report``: ``reprojection_iou`` and ``topology_id``.
- ``point_camera``: a weak-perspective camera for a point cloud (``fit_point_camera``).
- ``multiview``: one mesh fitted to many calibrated silhouettes (``fit_multiview``).

Layering: ``backend.methods`` builds on this package; nothing here imports ``backend.methods`` (an
import-linter contract). Progress callbacks are ``backend.progress.ProgressCallback``.
"""
