"""Resume state of a training run without pickle: ``<stem>.state.safetensors`` + ``<stem>.state.json``.

The state is everything needed to continue a run as if it had not stopped: model, optimiser, scheduler
and GradScaler state dicts, the python / numpy / torch (CPU and CUDA) generator states of every process,
the step, and a free ``extra`` dict (JSON types). Every tensor and numpy array goes into the safetensors
file under a key naming where it sits (``optimizer/state/0/exp_avg``); the JSON keeps the structure with
``{"__tensor__": key}`` in place of each tensor, ``{"__ndarray__": key, "dtype": ...}`` for numpy arrays,
``{"__tuple__": [...]}`` for tuples, ``{"__items__": [[key, value], ...]}`` for dicts with non-string keys
and ``{"__float__": "nan" | "inf" | "-inf"}`` for non-finite floats (the JSON itself is strict).

JSON layout (``format`` 1)::

    {"format": 1, "kind": "mono2mesh-training-state", "state_id": "<hex>", "step": 1200,
     "created": "<iso time>", "world_size": 1, "extra": {...},
     "model": {...}, "optimizer": {...}, "scheduler": {...} | null, "scaler": {...} | null,
     "rng": [{"python": ..., "numpy": ..., "torch": {"__tensor__": "rng/0/torch"}, "cuda": [...]}, ...]}

``rng`` has one entry per process (index = rank). Both files are written atomically, the safetensors
first; the safetensors header carries ``state_id``, so a pair from two different saves is refused. The
``.state.json`` appearing is what marks a resume point complete (``latest_training_state``).

The loop's use of a run's ``checkpoints/`` folder: ``resolve_resume(config, folder)`` picks the state a run
continues from (``config.resume``: "auto" the latest, a path that one, "" none, refusing a folder that
already holds a run), and ``prune_training_states(folder, keep)`` keeps the ``keep`` newest resume points.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from backend.checkpoints import atomic_write, refuse_pickle
from training.config import RESUME_AUTO, TrainConfig

log = logging.getLogger(__name__)

STATE_FORMAT = 1
STATE_KIND = "mono2mesh-training-state"
STATE_WEIGHTS_SUFFIX = ".state.safetensors"
STATE_JSON_SUFFIX = ".state.json"
STATE_ID_KEY = "mono2mesh_state_id"
_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__")


class StateError(ValueError):
    """A training-state file that cannot be resumed from; the message says why."""


@dataclass(frozen=True)
class TrainingState:
    """What ``load_training_state`` restored besides the objects it was given."""

    path: Path
    step: int
    world_size: int
    extra: dict[str, Any] = field(default_factory=dict)


def state_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(tensors, json)`` paths of the state named by ``path``: either file or the stem."""
    path = Path(path).expanduser()
    name = path.name
    for suffix in (STATE_WEIGHTS_SUFFIX, STATE_JSON_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + STATE_WEIGHTS_SUFFIX), path.with_name(name + STATE_JSON_SUFFIX)


# --- generator states -------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and (when present) CUDA generator states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global generator is the state)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the generators from a ``capture_rng_state`` result (decoded from a state file)."""
    random.setstate(_as_tuple(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(tuple(numpy_state))  # noqa: NPY002
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in cuda])
        else:
            log.warning("the saved CUDA generator states are for %d GPUs; not restoring them", len(cuda))


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


# --- tree encoding ---------------------------------------------------------------------------------


class _Encoder:
    """Replaces tensors and arrays in a nested structure by references; collects them by key."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def _key(self, path: Sequence[str]) -> str:
        key = "/".join(path) or "value"
        base, n = key, 1
        while key in self.tensors:
            key, n = f"{base}#{n}", n + 1
        return key

    def encode(self, value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, torch.Tensor):
            key = self._key(path)
            self.tensors[key] = value.detach().to("cpu", copy=True).contiguous()
            return {"__tensor__": key}
        if isinstance(value, np.ndarray):
            key = self._key(path)
            self.tensors[key] = (
                torch.from_numpy(np.ascontiguousarray(value).astype(np.int64))
                if (value.dtype.kind in "ui")
                else torch.from_numpy(np.array(value, dtype=np.float64))
            )
            return {"__ndarray__": key, "dtype": str(value.dtype)}
        if isinstance(value, bool | str | int) or value is None:
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.integer | np.floating | np.bool_):
            return self.encode(value.item(), path)
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, (*path, str(i))) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, (*path, str(i))) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value) and not any(k in _MARKERS for k in value):
                return {k: self.encode(v, (*path, k)) for k, v in value.items()}
            return {
                "__items__": [
                    [self.encode(k, (*path, "key")), self.encode(v, (*path, str(k)))]
                    for k, v in value.items()
                ]
            }
        raise TypeError(f"cannot store a {type(value).__name__} at {'/'.join(path)} in a training state")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy().astype(np.dtype(value["dtype"]))
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if "__float__" in value:
        return float(value["__float__"])
    return {k: _decode(v, tensors) for k, v in value.items()}


# --- save / load ----------------------------------------------------------------------------------


def save_training_state(
    stem: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    rng_states: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.state.safetensors`` then ``<stem>.state.json`` atomically; return the JSON path.

    Args:
        model: the unwrapped module (not the DDP wrapper), whose ``state_dict`` is saved.
        rng_states: one ``capture_rng_state()`` per process, index = rank; None captures this process's.
        extra: JSON-like values the caller wants back (e.g. the resolved config, the epoch).
    """
    encoder = _Encoder()
    document: dict[str, Any] = {
        "format": STATE_FORMAT,
        "kind": STATE_KIND,
        "state_id": uuid.uuid4().hex,
        "step": int(step),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "world_size": len(rng_states) if rng_states is not None else 1,
        "extra": encoder.encode(dict(extra or {}), ("extra",)),
        "model": encoder.encode(model.state_dict(), ("model",)),
        "optimizer": encoder.encode(optimizer.state_dict(), ("optimizer",)),
        "scheduler": None if scheduler is None else encoder.encode(scheduler.state_dict(), ("scheduler",)),
        "scaler": None if scaler is None else encoder.encode(scaler.state_dict(), ("scaler",)),
        "rng": encoder.encode(list(rng_states or [capture_rng_state()]), ("rng",)),
    }
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    tensors_path, json_path = state_paths(stem)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {STATE_ID_KEY: document["state_id"]}
    atomic_write(tensors_path, lambda tmp: save_file(encoder.tensors, str(tmp), metadata=metadata))
    atomic_write(json_path, lambda tmp: tmp.write_text(text))
    return json_path


def read_state_document(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The decoded JSON structure (tensors in place) and the raw tensors of a saved state."""
    refuse_pickle(Path(path))
    tensors_path, json_path = state_paths(path)
    if not json_path.is_file():
        raise StateError(f"no training state {json_path}")
    try:
        document = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StateError(f"{json_path} is not valid training-state JSON: {error}") from error
    if not isinstance(document, dict) or document.get("kind") != STATE_KIND:
        raise StateError(f"{json_path} is not a Mono2Mesh training state")
    if document.get("format", 0) > STATE_FORMAT:
        raise StateError(f"{json_path} has state format {document['format']}, newer than {STATE_FORMAT}")
    try:
        with safe_open(str(tensors_path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise StateError(f"cannot read {tensors_path}: {error}") from error
    if header.get(STATE_ID_KEY) != document.get("state_id"):
        raise StateError(f"{tensors_path} does not belong to {json_path} (an interrupted save?)")
    try:
        decoded = _decode(document, tensors)
    except KeyError as error:
        raise StateError(f"{json_path} refers to tensor {error} missing from {tensors_path}") from None
    return decoded, tensors


def load_training_state(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    rank: int | None = 0,
) -> TrainingState:
    """Restore a saved state into the given objects; return the step and extras.

    Args:
        path: the ``.state.json``, the ``.state.safetensors`` or their stem.
        model: the unwrapped module; its parameters keep their device (values are copied in).
        rank: restore the generator states this rank saved (rank 0's, with a warning, when the run had
            fewer processes); None leaves the generators alone.
    Raises:
        StateError: unreadable or mismatched files; RuntimeError from ``load_state_dict`` on a model or
            optimiser of another shape.
    """
    document, _ = read_state_document(path)
    model.load_state_dict(document["model"])
    if optimizer is not None:
        optimizer.load_state_dict(document["optimizer"])
    if scheduler is not None and document.get("scheduler") is not None:
        scheduler.load_state_dict(document["scheduler"])
    if scaler is not None and document.get("scaler"):
        scaler.load_state_dict(document["scaler"])
    rng = document.get("rng") or []
    if rank is not None and rng:
        if rank < len(rng):
            restore_rng_state(rng[rank])
        else:
            log.warning(
                "the state was saved by %d process(es); rank %d takes rank 0's generator states",
                len(rng),
                rank,
            )
            restore_rng_state(rng[0])
    return TrainingState(
        path=state_paths(path)[1],
        step=int(document["step"]),
        world_size=int(document.get("world_size", 1)),
        extra=dict(document.get("extra") or {}),
    )


def training_states(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, .state.json path)`` of the complete states in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for json_path in directory.glob("*" + STATE_JSON_SUFFIX):
        if json_path.name.startswith("."):
            continue
        try:
            document = json.loads(json_path.read_text())
            step = int(document["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if state_paths(json_path)[0].is_file():
            found.append((step, json_path))
    return sorted(found)


def latest_training_state(directory: str | os.PathLike[str]) -> Path | None:
    """The ``.state.json`` with the highest step in ``directory``, or None."""
    states = training_states(directory)
    return states[-1][1] if states else None


def resolve_resume(config: TrainConfig, checkpoints: Path) -> Path | None:
    """The ``.state.json`` the run continues from, or None for a fresh start.

    Raises:
        FileExistsError: ``resume`` is "" but ``checkpoints`` already holds a run.
        FileNotFoundError: ``resume`` names a state that does not exist.
    """
    if config.resume == RESUME_AUTO:
        return latest_training_state(checkpoints)
    if config.resume:
        path = state_paths(config.resume)[1]
        if not path.is_file():
            raise FileNotFoundError(f"resume state {path} does not exist")
        return path
    existing = training_states(checkpoints)
    if existing:
        raise FileExistsError(
            f"{checkpoints} already holds a run (step {existing[-1][0]}); pass resume=auto to continue it "
            "or choose another out folder"
        )
    return None


def prune_training_states(directory: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the ``keep`` newest resume points in ``directory`` (each state's four files: the
    ``.state.json``, ``.state.safetensors`` and the checkpoint's ``.json``, ``.safetensors``); 0 keeps all."""
    states = training_states(directory)
    for _, json_path in states[: max(len(states) - keep, 0)] if keep else []:
        stem = json_path.name[: -len(".state.json")]
        for suffix in (".state.json", ".state.safetensors", ".json", ".safetensors"):
            (json_path.parent / (stem + suffix)).unlink(missing_ok=True)
