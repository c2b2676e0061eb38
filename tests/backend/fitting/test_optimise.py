"""``optimise`` through ``fit_template``: same bits run after run, the hypothesis schedule, progress, and
the settings' checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.fitting.optimise import FitSettings, ShapeFit
from backend.fitting.shape import fit_template
from backend.geometry.templates import icosphere_template
from tests.backend.methods.test_fit import ellipsoid_mask

SMALL = FitSettings(iterations=20, resolution=32, hypotheses=2)


def template_fit(settings: FitSettings, calls: list[float] | None = None) -> ShapeFit:
    _, mask = ellipsoid_mask(128)
    progress = (lambda fraction, stage: calls.append(fraction)) if calls is not None else (lambda f, s: None)
    return fit_template(icosphere_template(), mask, settings, progress)


def test_same_settings_give_the_same_bits() -> None:
    first, second = template_fit(SMALL), template_fit(SMALL)
    assert torch.equal(first.vertices, second.vertices)
    for name, value in first.camera.tensors().items():
        assert torch.equal(value, second.camera.tensors()[name]), name
    assert first.hypothesis_losses == second.hypothesis_losses and first.final_loss == second.final_loss
    # at 64 pixels the mask has more pixels than the Chamfer loss samples: the seed draws other ones
    seeded = [template_fit(FitSettings(iterations=5, resolution=64, hypotheses=1, seed=s)) for s in (0, 1)]
    assert not torch.equal(seeded[0].vertices, seeded[1].vertices)


def test_the_best_hypothesis_continues() -> None:
    calls: list[float] = []
    fitted = template_fit(
        FitSettings(iterations=12, resolution=32, hypotheses=3, selection_fraction=0.5), calls
    )
    assert len(fitted.hypothesis_losses) == 3
    assert fitted.hypothesis == int(np.argmin(fitted.hypothesis_losses))
    assert fitted.vertices.shape == (642, 3) and fitted.camera.batch_size == 1
    torch.testing.assert_close(fitted.camera.weak.rotation.norm(dim=-1), torch.ones(1))
    assert calls[0] == 0.0 and calls[-1] == 1.0 and len(calls) == 13 and calls == sorted(calls)
    assert set(fitted.summary()) == {"hypothesis", "hypothesis_losses", "final_loss"}


def test_without_a_selection_phase_the_final_loss_chooses() -> None:
    fitted = template_fit(FitSettings(iterations=4, resolution=32, hypotheses=2, selection_fraction=0.0))
    assert len(fitted.hypothesis_losses) == 2
    assert fitted.hypothesis == int(np.argmin(fitted.hypothesis_losses))
    assert np.isclose(fitted.final_loss, min(fitted.hypothesis_losses), rtol=1e-5)
    untouched = template_fit(FitSettings(iterations=0, resolution=32, hypotheses=1))
    torch.testing.assert_close(untouched.vertices, icosphere_template().mesh.vertices)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="iterations"):
        FitSettings(iterations=-1)
    with pytest.raises(ValueError, match="selection_fraction"):
        FitSettings(selection_fraction=1.5)
    with pytest.raises(ValueError, match="selection_resolution"):
        FitSettings(selection_resolution=8)
    with pytest.raises(ValueError, match="start_elevation"):
        FitSettings(start_elevation=95.0)
    assert SMALL.with_iterations(7).iterations == 7 and SMALL.with_iterations(7).hypotheses == 2


def test_the_selection_phase_runs_at_its_resolution_and_is_judged_at_the_full_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backend.fitting import optimise

    sizes: list[int] = []
    judged: list[int] = []
    build, losses = optimise.MaskTarget.build, optimise.fit_losses

    def recording_build(mask: np.ndarray, size: int, *args: object) -> optimise.MaskTarget:
        sizes.append(size)
        return build(mask, size, *args)  # type: ignore[arg-type]

    def recording_losses(problem, state, target, settings, terms):  # type: ignore[no-untyped-def]
        if not torch.is_grad_enabled():
            judged.append(target.size)
        return losses(problem, state, target, settings, terms)

    monkeypatch.setattr(optimise.MaskTarget, "build", staticmethod(recording_build))
    monkeypatch.setattr(optimise, "fit_losses", recording_losses)
    fitted = template_fit(
        FitSettings(
            iterations=6, resolution=48, hypotheses=3, selection_resolution=24, selection_fraction=0.5
        )
    )
    assert sizes == [48, 24]  # the full target, then the selection phase's
    assert judged[0] == 48 and len(fitted.hypothesis_losses) == 3  # chosen by full-resolution losses
    assert fitted.hypothesis == int(np.argmin(fitted.hypothesis_losses))
