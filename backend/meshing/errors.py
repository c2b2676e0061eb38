"""``MeshingError`` and the time limit that raises it.

Contract:

- ``MeshingError`` (a ``ValueError``) is the one error the meshing stages raise for input they cannot
  turn into a surface or for a stage that ran out of time. Its message names the problem and, where
  there is one, what to change (more points, a lower depth, a larger time limit).
- ``run_with_time_limit(function, time_limit, what)`` runs ``function()`` in a worker thread and raises
  ``MeshingError`` when it has not produced its result within ``time_limit`` seconds.
- ``import_open3d()`` is the one place the meshing stages import Open3D, when they run: a missing
  Open3D (its wheel is 100 MB and absent on some machines) is a ``MeshingError`` that says how to
  install it, and the rest of the backend (``fit``, the server, UV unwrapping, baking) runs without it.

A thread cannot be killed: a call that overruns keeps running in the background until Open3D returns,
and its result is dropped. Open3D 0.20's Python bindings also hold the GIL during Poisson
reconstruction and normal estimation, so the caller only regains control when the call returns; the
limit is then enforced on the measured time (a result that came too late raises all the same). Should a
later Open3D release the GIL, the same code raises at the limit itself. Processes would allow a hard
kill, but a fresh interpreter spends about a second importing Open3D, which is as long as the whole
Poisson call at depth 8, so the stage stays in process; bounded input (point count, depth) is what
keeps it fast.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")

OPEN3D_INSTALL = "pip install open3d"


class MeshingError(ValueError):
    """A point cloud or mesh the meshing stages cannot handle, a stage over its time limit, or no Open3D."""


def import_open3d() -> ModuleType:
    """The ``open3d`` module; ``MeshingError`` naming the package and its install command when it is missing.

    Called where normals, Poisson or decimation run (never at import time): Open3D takes about a second
    to import.
    """
    try:
        return importlib.import_module("open3d")
    except ImportError as error:
        raise MeshingError(
            f"the point cloud -> mesh stage (normals, Poisson reconstruction, decimation) needs the open3d "
            f"package, which cannot be imported ({error}); install it with `{OPEN3D_INSTALL}`"
        ) from error


def run_with_time_limit(function: Callable[[], T], time_limit: float, what: str) -> T:
    """``function()``'s result, or ``MeshingError`` when it takes longer than ``time_limit`` seconds.

    Args:
        function: the work, without arguments.
        time_limit: seconds (> 0).
        what: the stage's name for the error message, e.g. "Poisson reconstruction".

    Exceptions raised by ``function`` pass through unchanged when it finishes in time.
    """
    if not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit}")
    values: list[T] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            values.append(function())
        except BaseException as error:  # handed to the caller below
            errors.append(error)

    start = time.perf_counter()
    worker = threading.Thread(target=work, name=f"meshing: {what}", daemon=True)
    worker.start()
    worker.join(time_limit)
    elapsed = time.perf_counter() - start
    if worker.is_alive():
        raise MeshingError(
            f"{what} exceeded the time limit of {time_limit:g} s and was abandoned (it finishes in the "
            "background); use fewer points, a lower Poisson depth or a larger time limit"
        )
    if errors:
        raise errors[0]
    if elapsed > time_limit:
        raise MeshingError(
            f"{what} took {elapsed:.3g} s, over the time limit of {time_limit:g} s; use fewer points, "
            "a lower Poisson depth or a larger time limit"
        )
    return values[0]
