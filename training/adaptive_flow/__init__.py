"""Training the ``adaptive-flow`` method: UMR's two-stage recipe with the seed paper's D_var and FID loss.

Data: ``CubDataset`` (CMR's CUB layout, or the synthetic generator's "cub" copy of it), one photo per item
with its mask and, when present, part maps (SCOPS's in UMR's naming, or the synthetic generator's true ones).
No camera, keypoint or 3D annotation is used. The network is ``backend.models.adaptive_flow``: ResNet-18
features; D_shape (symmetric offsets on a learned template), D_cam (H weak-perspective hypotheses with
probabilities), D_flow (the texture flow) and, in stage 2, D_var (the variance map I_var, eq. 11).

Each step renders the predicted mesh with the sampled UV texture (``grid_sample(I_r * I_var, I_flow)``) at
every camera hypothesis (soft rasterizer, ``render_size``) and adds (the paper's equation numbers):

- ``mask``: 1 - soft IoU against the mask (eq. 1), weighted by the hypothesis probabilities;
- ``texture``: mean |render - photo| inside the mask (eq. 10), probability-weighted, plus
  ``perceptual_weight`` x the VGG perceptual distance (LPIPS's uncalibrated form) at the most probable
  hypothesis;
- ``texture_dt``: the distance-transform barrier of the mask sampled at the flow (CMR's tex_dt);
- ``alignment``: eq. 12, the mean flow of each visible face's texels against the mean image position the
  rasterizer gives the face at the most probable hypothesis (the SoftRas pseudo label; hard aggregation);
- ``deformation`` (eq. 3), ``laplacian`` (eq. 4-5, SoftRas's sum over vertices) and ``flatten`` (eq. 6);
- ``gan``: the WGAN-GP critic loss (eq. 37-39) on renders at random azimuths vs. the masked photos; a
  gradient-reversal layer (UMR's, weight ``grl_weight``) on the renders lets one optimiser train the critic
  and, reversed, the generator;
- stage 2 only: ``fid`` (eq. 42-47) between features of the photos and of the random-view renders,
  ``part_probability`` (eq. 14) and ``part_chamfer`` (eq. 13) against the part maps with the vertex
  segmentation learned from stage 1, and ``-camera_entropy``.

The terms are weighted by the config's ``*_weight`` fields and added in this order by
``training.losses.compose.weighted_total`` (``loss_weights``); ``gan``, ``fid``, the part terms,
``camera_entropy`` and the perceptual distance are computed only when their weight is not 0.

Stage 1 (``--preset stage1``) starts from a sphere, learns the template (every ``template_update_epochs``
epochs the mean predicted offset is moved into it, as UMR does, in the loop's ``after_step`` hook, outside
the loss) without D_var and FID. Stage 2 starts from the stage-1 checkpoint (``stage1_checkpoint``: the
template, and by default every stage-1 weight), first computes the vertex segmentation (UMR's ``avg_uv``
step: part maps sampled at the projected visible vertices over the training set; left in the run folder as
``vertex_parts.safetensors``) and trains with D_var and the FID loss. The template stays fixed.

UMR's "ori" regulariser (mean |coordinate| across the symmetry plane) is not used: the network's shapes are
symmetric by construction (``AdaptiveFlowModel``), so the term would be identically zero.

Evaluation (the paper's Table 1 metrics, plus what ground truth allows on synthetic data):
``mask_iou`` (soft silhouette at the predicted camera vs. the mask, UMR's protocol), ``ssim`` (the render at
the predicted camera vs. the photo, both composited on white with the true mask), and when the dataset has
ground-truth meshes (``ground_truth_mesh``), ``novel_iou`` and ``novel_ssim``: the prediction and the
ground truth, each turned about its own up axis by 90, 180 and 270 degrees from its camera, compared as
hard silhouettes and as textured renders on white. ``fid`` (Inception, between the photos and renders at
random azimuths) when Inception weights are on this machine.
"""

# The package, by what each module holds (this one: the data, ``run`` and the command):
# - ``config``: ``AdaptiveFlowTrainConfig`` and its presets;
# - ``views``: rendering the predictions (every hypothesis, random azimuths, unlit on white);
# - ``terms``: the loss terms above, as functions of what one step shares;
# - ``method``: ``AdaptiveFlowTraining`` (the loop's method: the model, the step, the weights, the stage-1
#   template update) and ``AdaptiveFlowNetwork`` (network + critic);
# - ``evaluation``: the metrics above and the image grids;
# - ``segmentation``: stage 2's vertex segmentation.

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from backend.devices import resolve_device
from training.adaptive_flow.config import AdaptiveFlowTrainConfig, stage_config
from training.adaptive_flow.method import AdaptiveFlowNetwork, AdaptiveFlowTraining
from training.adaptive_flow.segmentation import VERTEX_PARTS_FILE, save_vertex_parts, vertex_segmentation
from training.batches import base_dataset
from training.commands import TrainerSpec
from training.config import apply_overrides
from training.datasets.cmr import PartMaps
from training.datasets.cub import CubDataset
from training.evaluation import NOVEL_TURNS, WHITE

__all__ = [
    "COMMAND",
    "NOVEL_TURNS",
    "VERTEX_PARTS_FILE",
    "WHITE",
    "AdaptiveFlowNetwork",
    "AdaptiveFlowTrainConfig",
    "AdaptiveFlowTraining",
    "datasets",
    "run",
    "save_vertex_parts",
    "stage_config",
    "vertex_segmentation",
]


def datasets(config: AdaptiveFlowTrainConfig) -> tuple[CubDataset, Dataset[Any] | None]:
    """The training split (augmented) and the evaluation split (not augmented; None when absent)."""
    if not config.data:
        raise ValueError("no data folder: pass --data DIR (CUB in CMR's layout, or a synthetic 'cub' copy)")
    part_maps = None
    if config.part_maps:
        part_maps = PartMaps(directory=Path(config.part_maps), num_channels=config.part_channels)
    common: dict[str, Any] = {
        "annotation_root": config.annotation_root or None,
        "image_size": config.model.image_size,
        "part_maps": part_maps,
        "seed": config.seed,
    }
    train_set = CubDataset(config.data, config.train_split, **common)
    try:
        eval_set: Dataset[Any] | None = CubDataset(config.data, config.eval_split, augment=False, **common)
    except FileNotFoundError:
        eval_set = None
    if eval_set is not None and config.eval_items:
        eval_set = Subset(eval_set, range(min(config.eval_items, len(eval_set))))  # type: ignore[arg-type]
    return train_set, eval_set


def _prepare(
    config: AdaptiveFlowTrainConfig, train_set: Dataset[Any], eval_set: Dataset[Any] | None
) -> tuple[AdaptiveFlowTraining, dict[str, Any]]:
    """The loop's method (stage 2 from stage 1's checkpoint: with the vertex parts it segments) and the
    dataset record."""
    size = len(train_set)  # type: ignore[arg-type]
    steps_per_epoch = max(1, size // config.batch_size)
    vertex_parts, permutation = None, None
    base = base_dataset(train_set)
    part_maps: PartMaps | None = getattr(base, "part_maps", None)
    if config.stage == 2 and config.stage1_checkpoint and part_maps is not None:
        permutation = part_maps.channel_permutation
        stage1 = AdaptiveFlowTraining(apply_overrides(config, {"stage1_init": "all"}))
        wrapper = stage1.build_model()
        assert isinstance(wrapper, AdaptiveFlowNetwork)
        network = wrapper.network
        loader = DataLoader(_unaugmented(base), batch_size=config.batch_size, shuffle=False)
        device = resolve_device(config.device)
        vertex_parts = vertex_segmentation(network, loader, stage1.settings(), permutation, device)
        if vertex_parts is not None:
            save_vertex_parts(vertex_parts, Path(config.out))
    method = AdaptiveFlowTraining(config, steps_per_epoch, vertex_parts, permutation)
    info = {
        "name": "cub-layout",
        "root": str(Path(config.data).resolve()) if config.data else type(base).__name__,
        "train_split": config.train_split,
        "train_items": size,
        "eval_split": config.eval_split,
        "eval_items": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
        "stage": config.stage,
        "part_maps": part_maps is not None,
    }
    return method, info


def _unaugmented(dataset: Dataset[Any]) -> Dataset[Any]:
    """The same photos without jitter or mirroring (for the vertex segmentation)."""
    if isinstance(dataset, CubDataset):
        return CubDataset(
            dataset.root, dataset.split, image_size=dataset.config.image_size, augment=False,
            part_maps=dataset.part_maps, seed=dataset.config.seed,
        )  # fmt: skip
    return dataset


# -- command line ---------------------------------------------------------------------------------------
COMMAND = TrainerSpec(
    "adaptive-flow", "train the adaptive-gradient texture-flow model (method adaptive-flow; two stages)",
    __doc__, AdaptiveFlowTrainConfig, datasets, _prepare,
)  # fmt: skip
"""``mono2mesh-train adaptive-flow``: every field of ``AdaptiveFlowTrainConfig`` as a flag."""

run = COMMAND.run
"""``run(config, train_set=None, eval_set=None)``: train as ``config`` says (module docstring); the result
names the final checkpoint. The data sets default to ``datasets(config)``."""
