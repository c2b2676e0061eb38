"""Progress reporting and cancellation, shared by the fitting engine, the methods and the front ends.

A long computation takes a ``progress(fraction, stage)`` callback (``ProgressCallback``) and calls it
often (at least every few hundred ms) with ``fraction`` in [0, 1] of the named stage ("shape",
"texture", ...). The callback raises ``Cancelled`` when its caller wants the work stopped, so the
computation needs no other cancellation check. ``within(progress, start, share, stage)`` maps a
sub-step's 0..1 onto ``start .. start + share`` of one stage.

This module imports nothing heavy (no torch), so light front-end code can use it.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[float, str], None]
"""``progress(fraction, stage)``; may raise ``Cancelled``."""


class Cancelled(Exception):
    """Raised from a progress callback to stop a running reconstruction."""


def no_progress(fraction: float, stage: str) -> None:
    """A progress callback that ignores everything."""


def within(progress: ProgressCallback, start: float, share: float, stage: str = "shape") -> ProgressCallback:
    """A progress callback that maps ``stage``'s 0..1 onto ``start .. start + share`` of ``progress``;
    other stages pass through unchanged.

    >>> calls = []
    >>> within(lambda f, s: calls.append((f, s)), 0.5, 0.5)(0.5, "shape")
    >>> calls
    [(0.75, 'shape')]
    """

    def mapped(fraction: float, name: str) -> None:
        progress(start + share * fraction if name == stage else fraction, name)

    return mapped
