"""Training losses, one tested function each; every method's trainer composes them.

- ``compose``: ``weighted_total(terms, weights)``, the one place a trainer's named terms are weighted and
  added (names checked both ways; terms given as callables are computed only when weighted).
- ``silhouette``: ``iou_loss`` (seeds' eq. 1, 1 - soft IoU per image) and ``multiview_iou_loss``
  (SoftRas's ShapeNet objective: each object's mesh rendered at its own view and at another view).
- ``regularisers``: SoftRas-scaled mesh regularisers (``softras_laplacian``: sum over vertices).
- ``texture``: texture-flow terms (adaptive flow, CMR/UMR): ``VggFeatures`` and ``perceptual_loss``
  (LPIPS, uncalibrated), ``distance_transform_barrier`` and ``texture_dt_loss`` (CMR's tex_dt), and the
  flow alignment of eq. 12 (``face_flow_means``, ``face_pixel_means``, ``flow_alignment_loss``).
- ``parts``: SCOPS part terms: ``part_chamfer_loss`` (eq. 13), ``part_probability_loss`` (eq. 14) and
  ``render_part_probabilities``.
- ``adversarial``: ``grad_reverse``, ``gradient_penalty`` (eq. 39), ``wgan_critic_loss`` (eq. 37-39).
- ``fid``: differentiable FID (eq. 42-47): ``feature_statistics``, ``frechet_distance``, ``FidFeatures``,
  ``fid_loss``.
- ``camera``: multi-hypothesis cameras: ``weighted_by_hypothesis``, ``camera_entropy``.
- ``pose``: DPC's pose ensemble (min over candidate rotations, student distillation):
  ``pose_ensemble_loss`` -> ``PoseLoss``.
- ``effective``: seed 001's rendering-free loss (eq. 1-6): ``effective_loss`` -> ``EffectiveLoss``,
  ``distance_field`` (eq. 2), ``first_term``, ``second_term``, ``boundary_bias``, ``sample_bilinear``
  (its kernel sums are ``training.ops``; readings and tuning: docs/effective_loss_tuning.md).
- ``unsup3d``: Unsup3d's confidence-weighted terms, per image: ``photometric_loss`` (Laplacian L1) and
  ``perceptual_loss`` (Gaussian, on VGG16 relu3_3 features: ``backend.models.vgg.load_vgg16_features``).

Import from the submodules (``from training.losses.fid import fid_loss``): nothing is re-exported
here, so importing one loss does not import the others' dependencies.
"""
