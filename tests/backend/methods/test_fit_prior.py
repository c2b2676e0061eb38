"""``fit`` started from a learned method's prediction (the category prior, ``prior``/``prior_checkpoint``).

The softras network here is tiny and untrained with its heads zeroed, so it predicts SoftRas's start
shape (the icosphere at radius 0.25) for any photo: the prior's shape is known exactly. A fake prior
method (patched into ``backend.methods.fit.create_method``) stands in for a Poisson-like prediction: its
own topology, not mirror-symmetric, its own texture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.fitting.refine_terms import mirror_pairs
from backend.fitting.report import topology_id
from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.templates import icosphere_template
from backend.methods import fit as fit_module
from backend.methods.base import MethodError, MethodOptions, Reconstruction, Report, no_progress
from backend.methods.fit import PRIOR_METHODS, FitMethod, FitOptions, choose_prior
from backend.methods.registry import parse_options
from backend.models.softras import TEMPLATE_ID, SoftRasModel, SoftRasModelConfig
from tests.backend.methods.test_fit import SMALL, ellipsoid_mask

TINY = SoftRasModelConfig(image_size=32, features=8)


def small(**options: Any) -> FitOptions:
    """``fit``'s options at the test size (``SMALL``) with ``options`` on top."""
    return FitOptions.model_validate({**SMALL, **options})


pytestmark = pytest.mark.usefixtures("method_home")


def sphere_checkpoint(stem: Path, method: str = "softras", dataset: dict[str, Any] | None = None) -> Path:
    """A tiny softras checkpoint predicting the radius-0.25 icosphere, written as ``method``'s."""
    torch.manual_seed(0)
    model = SoftRasModel(TINY)
    for head in (model.bias_head, model.centroid_head):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    meta = CheckpointMeta(
        method=method,
        template=TEMPLATE_ID,
        config={"model": model.config.model_dump(mode="json")},
        dataset=dataset or {},
        step=1,
    )
    return save_checkpoint(stem, model.state_dict(), meta)


def installed(home: Path, name: str = "bird", **kwargs: Any) -> Path:
    return sphere_checkpoint(home / "checkpoints" / "softras" / name, **kwargs)


def test_prior_softras_starts_from_the_prediction_reports_it_and_reaches_the_mask(
    method_home: Path,
) -> None:
    path = installed(method_home)
    image, mask = ellipsoid_mask()
    method = FitMethod("cpu")
    template_fit = method.reconstruct(image, mask, small(), no_progress)
    assert template_fit.report.extra["prior"] == {"method": "template"}
    calls: list[tuple[float, str]] = []
    options = small(prior="softras")
    result = method.reconstruct(image, mask, options, lambda f, s: calls.append((f, s)))
    report = result.report
    prior = report.extra["prior"]
    assert prior["method"] == "softras" and prior["checkpoint"] == str(path.resolve())
    assert prior["shape"] == "predicted+refined" and prior["template"] == TEMPLATE_ID
    assert prior["mirror_tied"] is True  # the sphere prediction is x -> -x symmetric
    assert report.extra["shape"] == "prior" and report.template == TEMPLATE_ID
    assert {"prior", "shape", "texture"} <= set(report.timings)
    # the prediction's topology and UVs
    sphere = icosphere_template(3).mesh
    assert torch.equal(result.mesh.faces, sphere.faces) and torch.equal(result.mesh.face_uvs, sphere.face_uvs)
    # started from the prediction (radius 0.25), not from the unit template: the size stays the prior's
    assert result.mesh.vertices.norm(dim=-1).max() < 0.6
    assert template_fit.mesh.vertices.norm(dim=-1).max() > 0.8
    # exact mirror symmetry kept (about the prediction's plane x = mean x): each vertex mirrors its partner
    vertices = result.mesh.vertices
    pairs = mirror_pairs(vertices)
    assert pairs is not None
    plane = vertices[:, 0].mean()
    mirrored = torch.stack([2 * plane - vertices[pairs, 0], vertices[pairs, 1], vertices[pairs, 2]], dim=1)
    torch.testing.assert_close(mirrored, vertices, atol=1e-6, rtol=0)
    # it re-renders to the mask about as well as the template fit, better than the bare prediction
    assert report.silhouette_iou is not None and template_fit.report.silhouette_iou is not None
    assert report.silhouette_iou > template_fit.report.silhouette_iou - 0.05
    assert report.silhouette_iou > prior["predicted_iou"] + 0.05
    assert result.mesh.texture.shape == (64, 128, 3)
    shape = [fraction for fraction, stage in calls if stage == "shape"]
    assert shape == sorted(shape) and shape[-1] == 1.0
    # the loaded prior is kept for the next job
    loaded = list(method._priors.values())
    method.reconstruct(image, mask, small(iterations=4, prior="softras"), no_progress)
    assert list(method._priors.values()) == loaded and len(loaded) == 1


def test_a_prior_without_an_installed_checkpoint_names_the_fix() -> None:
    image, mask = ellipsoid_mask()
    with pytest.raises(MethodError, match=r"no softras checkpoint installed.*mono2mesh-train softras"):
        FitMethod("cpu").reconstruct(image, mask, small(prior="softras"), no_progress)


def test_a_prior_checkpoint_of_another_method_or_unloadable_is_refused(tmp_path: Path) -> None:
    image, mask = ellipsoid_mask()
    method = FitMethod("cpu")
    other = sphere_checkpoint(tmp_path / "flow", method="adaptive-flow")
    options = small(prior="softras", prior_checkpoint=str(other))
    with pytest.raises(MethodError, match="checkpoint of method 'adaptive-flow', not of the prior 'softras'"):
        method.reconstruct(image, mask, options, no_progress)
    missing = small(prior="softras", prior_checkpoint=str(tmp_path / "nothing.safetensors"))
    with pytest.raises(MethodError, match="does not load"):
        method.reconstruct(image, mask, missing, no_progress)
    with pytest.raises(MethodError, match="prior is template"):
        method.reconstruct(image, mask, small(prior_checkpoint=str(other)), no_progress)
    assert not method._priors


def test_refining_a_given_mesh_ignores_the_prior() -> None:
    image, mask = ellipsoid_mask()
    method = FitMethod("cpu")
    given = method.reconstruct(image, mask, small(iterations=10), no_progress).mesh
    # no softras checkpoint is installed: a prior that ran would raise
    refined = method.reconstruct(image, mask, small(prior="softras"), no_progress, init_mesh=given)
    assert refined.report.extra["shape"] == "refine" and "prior" not in refined.report.extra


def test_auto_picks_the_newest_checkpoint_that_names_its_dataset(method_home: Path) -> None:
    chosen = choose_prior(FitOptions(prior="auto"))
    assert chosen.method == "template" and chosen.reason is not None and "names its dataset" in chosen.reason
    installed(method_home, "anonymous")  # no dataset in its metadata: not a category prior
    assert choose_prior(FitOptions(prior="auto")).method == "template"
    bird = installed(method_home, "bird", dataset={"name": "synthetic", "categories": ["bird"]})
    chosen = choose_prior(FitOptions(prior="auto"))
    assert (chosen.method, chosen.checkpoint) == ("softras", bird)
    assert chosen.report()["picked"] == "auto" and "bird" in chosen.report()["reason"]
    with pytest.raises(MethodError, match="prior=auto"):
        choose_prior(FitOptions(prior="auto", prior_checkpoint=str(bird)))


def test_the_options_schema_lists_the_prior_options() -> None:
    schema = FitOptions.model_json_schema()["properties"]
    assert set(schema["prior"]["enum"]) == {"template", "auto", *PRIOR_METHODS}
    assert schema["prior"]["default"] == "template" and "category prior" in schema["prior"]["description"]
    assert schema["prior_checkpoint"]["default"] == "" and schema["prior_checkpoint"]["description"]
    assert schema["prior_checkpoint"]["maxLength"] == 4096
    with pytest.raises(MethodError, match="prior"):
        parse_options("fit", {"prior": "unsup3d"})  # a depth map, not an object mesh
    assert parse_options("fit", {"prior": "softras"}) == FitOptions(prior="softras")


class LopsidedPrior:
    """A fake Poisson-like prior: a 162-vertex sphere, x-stretched on one side, green, with a known
    side-view camera."""

    name = "pointcloud-poisson"
    device = torch.device("cpu")

    def __init__(self) -> None:
        template = icosphere_template(2).mesh
        vertices = template.vertices.clone()
        vertices[:, 0] = torch.where(vertices[:, 0] > 0, 0.8 * vertices[:, 0], 0.4 * vertices[:, 0])
        green = torch.zeros(16, 32, 3, device="cpu")
        green[..., 1] = 1.0
        self.mesh = dataclasses.replace(template, vertices=vertices * 0.5, texture=green)
        side = axis_angle_to_quaternion(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([np.pi / 2]))
        self.camera = Camera.weak_perspective(torch.tensor([1.6]), torch.tensor([[0.05, -0.05]]), side)

    def crop_size(self, options: MethodOptions) -> int:
        return 128

    def reconstruct(self, image: np.ndarray, mask: np.ndarray, options: MethodOptions, progress: Any, *,
                    init_mesh: Any = None) -> Reconstruction:  # fmt: skip
        progress(1.0, "shape")
        report = Report(method=self.name, options={}, device="cpu", template=topology_id(self.mesh))
        report.silhouette_iou = 0.5
        return Reconstruction(self.mesh, self.camera, mask, report)


def test_a_prior_with_its_own_asymmetric_topology_keeps_it_untied_and_its_texture_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = LopsidedPrior()
    made: list[tuple[str, str]] = []

    def create(name: str, device: Any, checkpoint: str) -> LopsidedPrior:
        made.append((name, checkpoint))
        return fake

    monkeypatch.setattr(fit_module, "create_method", create)
    path = sphere_checkpoint(tmp_path / "poisson", method="pointcloud-poisson")
    image, mask = ellipsoid_mask()
    options = small(prior="pointcloud-poisson", prior_checkpoint=str(path))
    result = FitMethod("cpu").reconstruct(image, mask, options, no_progress)
    assert made == [("pointcloud-poisson", str(path.resolve()))]
    prior = result.report.extra["prior"]
    assert prior["mirror_tied"] is False and prior["template"] == topology_id(fake.mesh)
    assert result.report.template == topology_id(fake.mesh) and result.mesh.num_vertices == 162
    assert torch.equal(result.mesh.faces, fake.mesh.faces)
    assert mirror_pairs(result.mesh.vertices) is None  # the asymmetry is kept, not tied away
    assert result.report.silhouette_iou is not None and result.report.silhouette_iou > 0.8
    # texels the photo does not see keep the prior's green (the photo is red on white)
    texture = result.mesh.texture
    green = (texture[..., 1] > 0.8) & (texture[..., 0] < 0.2)
    red = (texture[..., 0] > 0.7) & (texture[..., 1] < 0.3)
    assert green.float().mean() > 0.1 and red.float().mean() > 0.1
