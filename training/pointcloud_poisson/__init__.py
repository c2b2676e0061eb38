"""Training ``pointcloud-poisson``'s network: DPC's point-cloud network with the seed paper's effective loss.

Data: ``ShapeNetRenderings`` (the SoftRas/NMR layout, or the synthetic generator's copies of it),
``views_per_item`` views of one object per item (DPC: 4 of its 5 renders per step). Each view's image
(RGBA, ``model_input``) gives a point cloud in the object frame and pose predictions
(``backend.models.pointcloud``).

Loss with ``pose_mode="known"`` (the paper's Table 1 setting, the default): the cloud predicted from
view k is projected (``Camera.project``, NDC) into every view of its object with the dataset's look-at
cameras, and the effective loss (``training.losses.effective.effective_loss``, eq. 6: alpha M1 + beta L2
averaged over points and views) is computed against those views' masks. The pose branches learn DPC's
ensemble against the ground-truth rotation of the input view: each sample's closest candidate
(distance ``1 - <q, q_gt>^2``, the one DPC's student loss uses) gets the gradient (DPC's min over
candidates), and the student is regressed onto the best candidate's detached quaternion with weight
``student_weight`` (DPC: 20)::

    loss = effective + pose_weight * (min_k d(q_k, q_gt) + student_weight * d(q_student, q_best))

By default the pose terms do not reach the shared encoder (``pose_encoder_gradient``): DPC balances its
student weight 20 against a projection loss summed over pixels, while eq. 6 is a mean of order 0.01, so
the pose terms dominate the encoder's gradient. In 300-step CPU runs on a synthetic bird set (32 px,
2000 points, batch 4 x 3 views) the held-out Chamfer x100 went from 5.6 (untrained network: 8.5) to 9.7
when they did; with them stopped at the encoder the shape is that of training without pose terms.

``pose_mode="learned"`` is DPC's unsupervised setting: the cloud from view k is projected into view j
with each candidate camera of view j (a weak-perspective camera with the candidate's rotation and the
dataset's scale ``1 / (distance tan 15 deg)``), the per-candidate effective loss of view j is averaged
over the source views k and the minimum over candidates is taken per view (DPC's min-loss); the
student is distilled from the winner as above, and every term trains the encoder. Ground-truth poses
are then used only by the metrics, which are not aligned to the learned frame (DPC aligns with ICP).

Adam with weight decay 1e-3 on the weights (DPC's L2 regulariser, biases excluded), lr 1e-4, batch
8 objects x 4 views, 600k iterations (DPC). The ``cpu`` preset is a minutes-long run.

Evaluation, for each object of the evaluation split and each of ``eval_views`` input views:

- ``chamfer``: Chamfer distance x 100 (DPC's definition, ``backend.geometry.metrics``) between the
  predicted points and ``ground_truth_points`` samples of the ground-truth surface (synthetic sets);
- ``iou3d``: volumetric IoU x 100 on 32^3 voxels between the voxelised predicted cloud and the
  voxelised ground-truth samples (a voxel is 1 when it holds a point, as the paper says); on data
  without meshes (the real SoftRas set) against the surface shell of the dataset's solid voxels;
- ``inside``: fraction of the projected points inside the input view's mask;
- ``pose_error_deg``: median angle between the student's rotation and the ground-truth one.

``chamfer`` and ``iou3d`` also come per category (``chamfer/<category>``), the headline values being
the means over categories as in ``training.softras``.
"""

# The package, by what each module holds (this one: the data, ``run`` and the command):
# - ``config``: ``PointCloudTrainConfig`` and its presets;
# - ``method``: ``PointCloudTraining`` (the loop's method) and the cameras of the multi-view batches.
# DPC's pose ensemble loss is ``training.losses.pose``.

from __future__ import annotations

from training.commands import TrainerSpec, renderings_datasets, renderings_prepare
from training.pointcloud_poisson.config import METHOD, PointCloudTrainConfig, PoseMode
from training.pointcloud_poisson.method import (
    PointCloudTraining,
    all_views_camera,
    dataset_scale,
    ground_truth_rotations,
)

__all__ = [
    "COMMAND",
    "METHOD",
    "PointCloudTrainConfig",
    "PointCloudTraining",
    "PoseMode",
    "all_views_camera",
    "dataset_scale",
    "datasets",
    "ground_truth_rotations",
    "run",
]


COMMAND = TrainerSpec(
    METHOD, "train the point-cloud network of pointcloud-poisson (DPC network, effective loss)", __doc__,
    PointCloudTrainConfig, renderings_datasets, renderings_prepare(PointCloudTraining),
)  # fmt: skip
"""``mono2mesh-train pointcloud-poisson``: every field of ``PointCloudTrainConfig`` as a flag, presets."""

datasets = renderings_datasets
"""The training set (``views_per_item`` views) and the evaluation set (``eval_views`` views)."""

run = COMMAND.run
"""``run(config, train_set=None, eval_set=None)``: train as ``config`` says (module docstring); the result
names the final checkpoint. The data sets default to ``datasets(config)``."""
