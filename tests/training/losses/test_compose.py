"""training.losses.compose: the weighted total of named terms, its refusals, lazy terms and what it logs."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses.compose import Term, weighted_total


def test_the_total_is_the_hand_written_sum_in_order() -> None:
    a, b, c = (torch.tensor(v, requires_grad=True) for v in (0.1, 2.3, 7.7))
    total, logged = weighted_total({"a": a, "b": b, "c": c}, {"c": 0.05, "a": 3.0, "b": 1e-3})
    assert torch.equal(total, 3.0 * a + 1e-3 * b + 0.05 * c)  # the order of the terms, not of the weights
    assert list(logged) == ["a", "b", "c"] and logged["b"] is b  # unweighted, not detached
    total.backward()
    assert [float(t.grad) for t in (a, b, c)] == pytest.approx([3.0, 1e-3, 0.05])  # type: ignore[arg-type]


def test_a_negative_weight_subtracts_exactly() -> None:
    a, b = torch.tensor(1.7), torch.tensor(0.3)
    total, _ = weighted_total({"a": a, "entropy": b}, {"a": 2.0, "entropy": -0.05})
    assert torch.equal(total, 2.0 * a - 0.05 * b)


def test_terms_and_weights_must_name_the_same_things() -> None:
    one = torch.tensor(1.0)
    with pytest.raises(ValueError, match=r"terms without a weight \['b'\], weights without a term \[\]"):
        weighted_total({"a": one, "b": one}, {"a": 1.0})
    with pytest.raises(ValueError, match=r"terms without a weight \[\], weights without a term \['c'\]"):
        weighted_total({"a": one}, {"a": 1.0, "c": 2.0})
    with pytest.raises(ValueError, match="must be finite"):
        weighted_total({"a": one}, {"a": math.nan})


def test_a_lazy_term_is_computed_only_when_weighted() -> None:
    calls: list[str] = []

    def term(name: str, value: float) -> torch.Tensor:
        calls.append(name)
        return torch.tensor(value)

    terms: dict[str, Term] = {
        "a": torch.tensor(1.0),
        "b": lambda: term("b", 2.0),
        "c": lambda: term("c", 5.0),
    }
    total, logged = weighted_total(terms, {"a": 1.0, "b": 0.0, "c": 0.5})
    assert calls == ["c"] and float(total) == 3.5 and list(logged) == ["a", "c"]
    with pytest.raises(ValueError, match="no loss term to add"):
        weighted_total({"b": lambda: term("b", 2.0)}, {"b": 0.0})
    assert calls == ["c"]


def test_an_eager_term_with_weight_zero_still_gives_zero_gradients() -> None:
    """As the hand-written sums did (DistributedDataParallel needs a gradient for every parameter)."""
    weight = torch.nn.Parameter(torch.tensor(2.0))
    main, side = weight * 3, weight.square()
    total, logged = weighted_total({"main": main, "side": side}, {"main": 1.0, "side": 0.0})
    assert torch.equal(total, main + 0.0 * side) and "side" in logged
    total.backward()
    assert float(weight.grad) == 3.0  # type: ignore[arg-type]
