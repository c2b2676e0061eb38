"""Losses composed in one place: ``total = sum_k weights[k] * terms[k]``, with the values to log.

A trainer's step builds its loss terms (a dict name -> scalar tensor) with small functions, takes the
weights from its config (a dict name -> float with the same names) and calls ``weighted_total``:

    total, logged = weighted_total(terms, weights)
    return {**logged, "loss": total}

Rules:

- The names of ``terms`` and ``weights`` must be the same: a term without a weight, or a weight without
  a term, is a ``ValueError`` (a misspelt or forgotten weight never silently drops a term).
- A term is a tensor (computed already) or a zero-argument callable (computed on demand). A callable
  whose weight is 0 is never called: it is neither computed, added nor logged. A tensor whose weight is
  0 is still added, as ``0 * term``: every parameter it reaches gets a zero gradient rather than none
  (DistributedDataParallel requires one for every parameter; Adam's weight decay acts the same), and it
  is logged. So a term whose weight changes during a run (e.g. switched on after some epoch) should be a
  tensor: the loop averages each logged value over ``log_every`` steps and needs it at every step.
- Terms are added in the order of ``terms`` (``((w0 t0 + w1 t1) + w2 t2) + ...``), so a trainer's total
  is bitwise the hand-written sum it replaces when the order is the same; a negative weight subtracts
  (``a + (-w) t`` is exactly ``a - w t``).
- ``logged`` holds each term that was computed, unweighted and not detached (the loop detaches), under
  its name, in the order of ``terms``.

Terms that share work (one render feeding two terms) share it through ``functools.cache`` on the shared
part; nested composites (a term that is itself a weighted sum) call ``weighted_total`` again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from torch import Tensor

Term = Tensor | Callable[[], Tensor]
"""A scalar loss term: computed already, or a zero-argument function computing it on demand."""


def weighted_total(
    terms: Mapping[str, Term], weights: Mapping[str, float]
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of ``terms`` and the computed terms to log (module docstring).

    Args:
        terms: name -> scalar tensor, or zero-argument callable returning one (called only when its
            weight is not 0).
        weights: name -> finite float, exactly the names of ``terms``.

    Returns:
        (total, logged): the scalar total and {name: unweighted term} of every term computed.

    Raises:
        ValueError: the names differ, a weight is not finite, or no term is left to add (every term a
            callable with weight 0).
    """
    missing, unused = sorted(set(terms) - set(weights)), sorted(set(weights) - set(terms))
    if missing or unused:
        raise ValueError(
            f"loss terms and weights differ: terms without a weight {missing}, "
            f"weights without a term {unused}"
        )
    for name, weight in weights.items():
        if not math.isfinite(weight):
            raise ValueError(f"the weight of loss term {name!r} is {weight}; weights must be finite")
    total: Tensor | None = None
    logged: dict[str, Tensor] = {}
    for name, term in terms.items():
        weight = float(weights[name])
        if isinstance(term, Tensor):
            value = term
        elif weight == 0:
            continue
        else:
            value = term()
        logged[name] = value
        weighted = weight * value
        total = weighted if total is None else total + weighted
    if total is None:
        raise ValueError(
            f"no loss term to add: every term of {sorted(terms)} has weight 0 and is not computed"
        )
    return total, logged
