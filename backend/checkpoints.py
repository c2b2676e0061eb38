"""Checkpoints the backend loads: ``<name>.safetensors`` (weights) + ``<name>.json`` (metadata); nothing else.

A checkpoint is two files side by side:

- ``<name>.safetensors``: the network's ``state_dict`` (tensors only; the header metadata carries
  ``mono2mesh_weights_id``, a random id shared with the JSON so a mismatched pair is detected);
- ``<name>.json``: ``CheckpointMeta`` (method, template, the full resolved training config including the
  ``model`` section the backend rebuilds the network from, metrics, dataset, code version, step, creation
  time, format) plus ``"weights": {"file", "id", "tensors"}``.

``save_checkpoint`` writes each file to a temporary name in the same folder and renames it over the target
(``os.replace``), the weights first and the JSON last, so a reader never sees a partial file and the JSON
appears only once its weights are complete. ``load_checkpoint`` refuses pickles (``torch.save`` files:
``.pt .pth .ckpt .tar .pkl`` or any file that starts like a pickle or a zip archive), because unpickling can
run arbitrary code; it refuses missing or malformed JSON and checkpoints of another method or template, each
with a ``CheckpointError`` (a ``ValueError``) whose message says what was wrong.

Installed checkpoints live under ``checkpoint_root()`` (``$MONO2MESH_HOME/checkpoints``, else
``~/.local/share/mono2mesh/checkpoints``), conventionally as ``<root>/<method>/<name>.safetensors``;
``installed_checkpoints`` lists every pair found below the root, newest first.

A renamed method keeps its old checkpoints loading: ``METHOD_ALIASES`` maps retired method ids to current
ones, and the method checks (``check_compatible``, ``installed_checkpoints``) compare ``canonical_method``
names, so a checkpoint whose JSON says ``pointcloud-texture`` (found in any folder below the root, e.g.
the old ``<root>/pointcloud-texture/``) counts as ``texture-completion``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from backend import __version__
from backend.paths import data_dir

FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
META_SUFFIX = ".json"
WEIGHTS_ID_KEY = "mono2mesh_weights_id"
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".tar", ".pkl", ".pickle"})
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2; torch.save's zip container


METHOD_ALIASES: dict[str, str] = {"pointcloud-texture": "texture-completion"}
"""Retired method id -> current method id (checkpoints written under the old id still load)."""


def canonical_method(method: str) -> str:
    """The current id of ``method`` (itself unless it is a retired id in ``METHOD_ALIASES``)."""
    return METHOD_ALIASES.get(method, method)


class CheckpointError(ValueError):
    """A file that is not a loadable Mono2Mesh checkpoint for the caller; the message says why."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def code_version() -> str:
    """``backend.__version__``, plus ``+g<commit>`` when the package lives in a git checkout.

    The commit is read from ``.git`` directly (no ``git`` process is started); a detached HEAD, a branch
    ref or a packed ref all work, anything unreadable gives the bare version.
    """
    git = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            if ref_file.is_file():
                head = ref_file.read_text().strip()
            else:
                packed = (git / "packed-refs").read_text().splitlines()
                head = next(line.split()[0] for line in packed if line.endswith(" " + ref))
    except (OSError, StopIteration, IndexError):
        return __version__
    if len(head) < 7 or any(c not in "0123456789abcdef" for c in head):
        return __version__
    return f"{__version__}+g{head[:10]}"


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint is: written to ``<name>.json`` next to the weights.

    Attributes:
        method: registry name of the method that trained it (e.g. ``"softras"``).
        template: topology id of the mesh template the network predicts on (e.g. ``"icosphere-642"``).
        config: the full resolved training config (JSON types); ``config["model"]`` rebuilds the network.
        metrics: evaluation results at ``step`` (name -> value).
        dataset: what it was trained on (name, root, categories, split, size, ...).
        code_version: ``code_version()`` of the code that wrote it.
        step: optimiser steps taken when it was written.
        created: ISO 8601 UTC time of writing.
        format: version of this file layout; files from a newer layout are refused.
    """

    method: str
    template: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    code_version: str = field(default_factory=code_version)
    step: int = 0
    created: str = field(default_factory=_now_iso)
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``<name>.json`` (without the ``weights`` entry)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        """Parse and type-check ``data``; ``CheckpointError`` naming unknown, missing or mistyped keys."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"checkpoint metadata must be a JSON object, not {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CheckpointError(f"unknown checkpoint metadata keys {unknown}; known: {sorted(names)}")
        missing = [name for name in ("method", "template") if name not in data]
        if missing:
            raise CheckpointError(f"checkpoint metadata lacks {missing}")
        expected: dict[str, type | tuple[type, ...]] = {
            "method": str,
            "template": str,
            "config": dict,
            "metrics": dict,
            "dataset": dict,
            "code_version": str,
            "step": int,
            "created": str,
            "format": int,
        }
        for key, value in data.items():
            if not isinstance(value, expected[key]) or (expected[key] is int and isinstance(value, bool)):
                raise CheckpointError(
                    f"checkpoint metadata {key!r} must be {_type_name(expected[key])}, "
                    f"not {type(value).__name__}"
                )
        metrics = data.get("metrics", {})
        for name, value in metrics.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise CheckpointError(f"metric {name!r} must be a number, not {type(value).__name__}")
        if data.get("format", FORMAT_VERSION) > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format {data['format']} is newer than this Mono2Mesh reads "
                f"({FORMAT_VERSION}); update Mono2Mesh"
            )
        values = dict(data)
        values["metrics"] = {str(k): float(v) for k, v in metrics.items()}
        return cls(**values)


def _type_name(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: ``path`` (the ``.safetensors`` file), ``weights`` (a state dict), ``meta``."""

    path: Path
    weights: dict[str, torch.Tensor]
    meta: CheckpointMeta


@dataclass(frozen=True)
class CheckpointInfo:
    """An installed checkpoint on disk (weights not loaded): ``path`` (the ``.safetensors``) and ``meta``."""

    path: Path
    meta: CheckpointMeta

    @property
    def name(self) -> str:
        """The file stem, e.g. ``softras-bird`` for ``softras-bird.safetensors``."""
        return self.path.name[: -len(WEIGHTS_SUFFIX)]


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, json)`` paths of the checkpoint named by ``path``: its ``.safetensors``, ``.json`` or stem.

    A stem may contain dots (``run.step100`` names ``run.step100.safetensors``).
    """
    path = Path(path).expanduser()
    name = path.name
    for suffix in (WEIGHTS_SUFFIX, META_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem = path.with_name(name)
    return stem.with_name(name + WEIGHTS_SUFFIX), stem.with_name(name + META_SUFFIX)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the complete new one, never a partial one; on any error the temporary
    file is removed and the error propagates (``path`` is untouched).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable where the platform allows it
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON (no NaN) to ``path`` atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_checkpoint(
    stem: str | os.PathLike[str], weights: Mapping[str, torch.Tensor], meta: CheckpointMeta
) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json``, each atomically; return the ``.safetensors`` path.

    Args:
        stem: target path without suffix (a ``.safetensors`` or ``.json`` suffix is accepted and dropped);
            the parent folder is created.
        weights: name -> tensor (any device, any dtype; copied to CPU, contiguous, unshared).
        meta: the metadata; ``meta.config`` and ``meta.dataset`` must be JSON-serialisable.
    Raises:
        TypeError: a weight that is not a tensor, or metadata that is not JSON-serialisable.
    """
    weights_path, meta_path = checkpoint_paths(stem)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"weight {name!r} is a {type(tensor).__name__}, not a tensor")
        tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    weights_id = uuid.uuid4().hex
    document = meta.to_dict()
    document["weights"] = {"file": weights_path.name, "id": weights_id, "tensors": len(tensors)}
    try:
        text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint metadata is not JSON-serialisable: {error}") from error
    atomic_write(
        weights_path, lambda tmp: save_file(tensors, str(tmp), metadata={WEIGHTS_ID_KEY: weights_id})
    )
    atomic_write(meta_path, lambda tmp: tmp.write_text(text))
    return weights_path


def refuse_pickle(path: Path) -> None:
    """Raise ``CheckpointError`` when ``path`` is (or names) a pickle / ``torch.save`` file."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} is a PyTorch pickle file ({path.suffix}); Mono2Mesh loads only "
            "<name>.safetensors + <name>.json checkpoints, because unpickling a file can run arbitrary code"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return
    if _is_safetensors_head(head):  # its first byte is the header length's: it may be 0x80 like a pickle's
        return
    if head.startswith(_PICKLE_MAGIC):
        raise CheckpointError(
            f"{path} is a pickle or torch.save archive, not a safetensors file; Mono2Mesh refuses pickles "
            "because unpickling a file can run arbitrary code"
        )


def _is_safetensors_head(head: bytes) -> bool:
    """Whether ``head`` (the first 9 bytes of a file) starts a safetensors file: an 8-byte little-endian
    header length (nonzero, below 100 MB as safetensors limits it) followed by the JSON header's ``{``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") < 100_000_000


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The ``CheckpointMeta`` of the checkpoint named by ``path`` (weights not read)."""
    meta, _ = _read_document(path)
    return meta


def _read_document(path: str | os.PathLike[str]) -> tuple[CheckpointMeta, dict[str, Any]]:
    given = Path(path).expanduser()
    refuse_pickle(given)
    meta_path = checkpoint_paths(given)[1]
    if not meta_path.is_file():
        raise CheckpointError(
            f"no checkpoint metadata {meta_path}: a checkpoint is <name>.safetensors + <name>.json"
        )
    try:
        document = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{meta_path} is not valid checkpoint JSON: {error}") from error
    if not isinstance(document, dict):
        raise CheckpointError(f"{meta_path} is not valid checkpoint JSON: expected an object")
    weights_entry = document.pop("weights", None)
    if not isinstance(weights_entry, dict) or not isinstance(weights_entry.get("id"), str):
        raise CheckpointError(f"{meta_path} is not valid checkpoint JSON: no 'weights' entry with an 'id'")
    try:
        meta = CheckpointMeta.from_dict(document)
    except CheckpointError as error:
        raise CheckpointError(f"{meta_path}: {error}") from None
    return meta, weights_entry


def check_compatible(meta: CheckpointMeta, path: Path, method: str | None, template: str | None) -> None:
    """``CheckpointError`` when ``meta`` is of another method or template than asked (None: any)."""
    if method is not None and canonical_method(meta.method) != canonical_method(method):
        raise CheckpointError(f"{path} is a checkpoint of method {meta.method!r}, not {method!r}")
    if template is not None and meta.template != template:
        raise CheckpointError(
            f"{path} was trained on template {meta.template!r}, but this method predicts on {template!r}"
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    method: str | None = None,
    template: str | None = None,
    device: str | torch.device = "cpu",
) -> Checkpoint:
    """Load the checkpoint named by ``path`` (its ``.safetensors``, its ``.json`` or the stem).

    Args:
        method: when given, the checkpoint must have been trained by this method.
        template: when given, the checkpoint must predict on this template topology.
        device: where the weights are loaded.
    Raises:
        CheckpointError: a pickle, missing/malformed JSON, missing/corrupt weights, weights that do not
            belong to the JSON (an interrupted save), wrong method, wrong template.
    """
    meta, weights_entry = _read_document(path)
    weights_path, meta_path = checkpoint_paths(Path(path).expanduser())
    check_compatible(meta, weights_path, method, template)
    if not weights_path.is_file():
        raise CheckpointError(f"{meta_path} has no weights file {weights_path}")
    refuse_pickle(weights_path)
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            header = handle.metadata() or {}
        weights = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {error}") from error
    if header.get(WEIGHTS_ID_KEY) != weights_entry["id"]:
        raise CheckpointError(
            f"{weights_path} does not belong to {meta_path} (their ids differ: a save was interrupted or "
            "the files come from different checkpoints)"
        )
    return Checkpoint(path=weights_path, weights=weights, meta=meta)


def checkpoint_root() -> Path:
    """``$MONO2MESH_HOME/checkpoints``, else ``~/.local/share/mono2mesh/checkpoints`` (not created)."""
    return data_dir() / "checkpoints"


def installed_checkpoints(method: str | None = None, root: Path | None = None) -> list[CheckpointInfo]:
    """Checkpoints below ``root`` (default ``checkpoint_root()``), newest first; only ``method``'s if given.

    A checkpoint counts when its JSON parses and its ``.safetensors`` exists; other JSON files (training
    state ``*.state.json``, unrelated files) are skipped. Order: ``meta.created`` then file time, newest
    first.
    """
    root = checkpoint_root() if root is None else Path(root).expanduser()
    if not root.is_dir():
        return []
    found: list[tuple[str, float, CheckpointInfo]] = []
    for meta_path in root.rglob("*" + META_SUFFIX):
        if meta_path.name.startswith(".") or meta_path.name.endswith(".state.json"):
            continue
        weights_path, _ = checkpoint_paths(meta_path)
        if not weights_path.is_file():
            continue
        try:
            meta = read_meta(meta_path)
        except CheckpointError:
            continue
        if method is not None and canonical_method(meta.method) != canonical_method(method):
            continue
        found.append((meta.created, meta_path.stat().st_mtime, CheckpointInfo(weights_path, meta)))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [info for _, _, info in found]


def default_checkpoint(method: str, root: Path | None = None) -> Path | None:
    """The newest installed checkpoint of ``method`` (its ``.safetensors`` path), or None."""
    installed = installed_checkpoints(method, root)
    return installed[0].path if installed else None
