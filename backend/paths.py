"""The data folder every part of the backend shares (server state, jobs, installed checkpoints).

``data_dir()`` is ``$MONO2MESH_HOME`` (``HOME_ENV``) when set and not empty, else
``~/.local/share/mono2mesh``; it is read on every call (a test or a caller may change the variable) and
never created here. ``mask_model_dir()`` is ``<data dir>/models/mask``, the cache of the salient-object
mask models (``backend.imaging.salient``). This module imports nothing from the backend, so any layer may
use it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "MONO2MESH_HOME"


def data_dir() -> Path:
    """``$MONO2MESH_HOME``, else ``~/.local/share/mono2mesh`` (not created here)."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    return Path.home() / ".local" / "share" / "mono2mesh"


def mask_model_dir() -> Path:
    """``<data dir>/models/mask``: where ``mono2mesh mask-model download`` puts mask models (not created)."""
    return data_dir() / "models" / "mask"
