"""backend.checkpoints: the safetensors + JSON pair, atomic writes, and every refusal with its message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import backend.checkpoints as checkpoints
from backend import __version__
from backend.checkpoints import (
    CheckpointError,
    CheckpointMeta,
    checkpoint_root,
    code_version,
    default_checkpoint,
    installed_checkpoints,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "encoder.weight": torch.randn(4, 3, generator=generator),
        "encoder.half": torch.randn(5, generator=generator).half(),
        "bn.num_batches_tracked": torch.tensor(7),
    }


def _meta(method: str = "softras", template: str = "icosphere-642", **values: object) -> CheckpointMeta:
    fields: dict[str, object] = {
        "config": {"lr": 1e-4, "model": {"encoder": "conv", "sizes": [64, 128]}},
        "metrics": {"iou": 0.5},
        "dataset": {"name": "synthetic", "categories": ["bird"]},
        "step": 12,
    }
    fields.update(values)
    return CheckpointMeta(method=method, template=template, **fields)  # type: ignore[arg-type]


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_by_weights_json_or_stem(tmp_path: Path) -> None:
    weights, meta = _weights(), _meta()
    path = save_checkpoint(tmp_path / "bird", weights, meta)
    assert path == tmp_path / "bird.safetensors"
    assert _files(tmp_path) == ["bird.json", "bird.safetensors"]
    for name in ("bird.safetensors", "bird.json", "bird"):
        loaded = load_checkpoint(tmp_path / name, method="softras", template="icosphere-642")
        assert loaded.path == path
        assert loaded.meta == meta
        assert loaded.weights.keys() == weights.keys()
        for key, tensor in weights.items():
            assert loaded.weights[key].dtype == tensor.dtype
            assert torch.equal(loaded.weights[key], tensor)


def test_the_json_is_strict_and_names_its_weights(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "run.step10", _weights(), _meta())  # a stem may contain dots
    document = json.loads((tmp_path / "run.step10.json").read_text())
    assert document["method"] == "softras" and document["template"] == "icosphere-642"
    assert document["config"]["model"] == {"encoder": "conv", "sizes": [64, 128]}
    assert document["weights"]["file"] == "run.step10.safetensors"
    assert document["weights"]["tensors"] == 3
    assert document["format"] == 1 and document["step"] == 12
    assert document["code_version"].startswith(__version__)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "bad", _weights(), _meta(metrics={"iou": float("nan")}))
    assert not (tmp_path / "bad.json").exists()


def test_code_version_is_the_package_version_plus_the_commit_when_known() -> None:
    version = code_version()
    assert version == __version__ or version.startswith(__version__ + "+g")


def test_refuses_pickle_files_by_suffix_and_by_content(tmp_path: Path) -> None:
    torch.save(_weights(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"model\.pt is a PyTorch pickle file \(\.pt\).*arbitrary code"):
        load_checkpoint(tmp_path / "model.pt")
    # a torch.save archive renamed to .safetensors, with a valid-looking JSON beside it
    save_checkpoint(tmp_path / "renamed", _weights(), _meta())
    torch.save(_weights(), tmp_path / "renamed.safetensors")
    with pytest.raises(CheckpointError, match=r"pickle or torch\.save archive, not a safetensors file"):
        load_checkpoint(tmp_path / "renamed")
    # an old-style pickle (protocol 2) under any name
    import pickle

    (tmp_path / "weights.bin").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path / "weights.bin")


def test_loads_a_safetensors_file_whose_first_byte_is_a_pickle_opcode(tmp_path: Path) -> None:
    # the first 8 bytes of a safetensors file are its header length: a length of 0x..80 starts with the
    # byte of the pickle PROTO opcode (about 1 checkpoint in 256) and must not be taken for a pickle
    for length in range(1, 300):
        weights = {"w" * length: torch.zeros(2)}
        save_checkpoint(tmp_path / "c", weights, _meta())
        head = (tmp_path / "c.safetensors").read_bytes()[:9]
        if head[0] == 0x80:
            break
    else:
        raise AssertionError("no name length gave a header length with low byte 0x80")
    assert head[8:9] == b"{"
    loaded = load_checkpoint(tmp_path / "c")
    assert torch.equal(loaded.weights["w" * length], torch.zeros(2))


def test_refuses_another_method_or_template(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c", _weights(), _meta())
    with pytest.raises(CheckpointError, match=r"is a checkpoint of method 'softras', not 'unsup3d'"):
        load_checkpoint(tmp_path / "c", method="unsup3d")
    with pytest.raises(
        CheckpointError,
        match=r"trained on template 'icosphere-642', but this method predicts on 'uvsphere-31'",
    ):
        load_checkpoint(tmp_path / "c", method="softras", template="uvsphere-31")


def test_refuses_missing_or_malformed_json(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c", _weights(), _meta())
    os.remove(tmp_path / "c.json")
    with pytest.raises(
        CheckpointError, match=r"no checkpoint metadata .*c\.json.*<name>\.safetensors \+ <name>\.json"
    ):
        load_checkpoint(tmp_path / "c.safetensors")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid checkpoint JSON"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c.json").write_text(
        json.dumps({"method": "softras", "template": "t", "weights": {"id": "x"}, "lr": 1})
    )
    with pytest.raises(CheckpointError, match=r"unknown checkpoint metadata keys \['lr'\]"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c.json").write_text(
        json.dumps({"method": "softras", "template": "t", "weights": {"id": "x"}, "step": "3"})
    )
    with pytest.raises(CheckpointError, match="'step' must be int, not str"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c.json").write_text(
        json.dumps({"method": "softras", "template": "t", "weights": {"id": "x"}, "format": 9})
    )
    with pytest.raises(CheckpointError, match="format 9 is newer"):
        load_checkpoint(tmp_path / "c")


def test_a_failed_write_leaves_no_partial_file_and_the_old_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_checkpoint(tmp_path / "c", _weights(0), _meta())
    real_save_file = checkpoints.save_file

    def crash_half_way(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        real_save_file(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])  # a torn file...
        raise OSError("disk full")  # ...and the writer dies

    monkeypatch.setattr(checkpoints, "save_file", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c", _weights(1), _meta())
    assert _files(tmp_path) == ["c.json", "c.safetensors"]  # no temporary file left behind
    assert torch.equal(
        load_checkpoint(tmp_path / "c").weights["encoder.weight"], _weights(0)["encoder.weight"]
    )


def test_targets_appear_only_by_rename_weights_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[str, str, list[str]]] = []
    real_replace = os.replace

    def spy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        renames.append((Path(source).name, Path(target).name, _files(tmp_path)))
        real_replace(source, target)

    monkeypatch.setattr(checkpoints.os, "replace", spy)
    save_checkpoint(tmp_path / "c", _weights(), _meta())
    assert [target for _, target, _ in renames] == ["c.safetensors", "c.json"]
    source, _, before = renames[0]
    assert source.startswith(".c.safetensors.") and source.endswith(".tmp")
    assert "c.safetensors" not in before and "c.json" not in before  # nothing visible until renamed
    assert "c.json" not in renames[1][2]


def test_an_interrupted_overwrite_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path / "c", _weights(0), _meta())
    real_atomic_write = checkpoints.atomic_write

    def die_before_json(path: Path, write: object) -> None:
        if path.suffix == ".json":
            raise KeyboardInterrupt  # killed between the two renames
        real_atomic_write(path, write)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoints, "atomic_write", die_before_json)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "c", _weights(1), _meta())
    with pytest.raises(CheckpointError, match=r"does not belong to .*c\.json .*interrupted"):
        load_checkpoint(tmp_path / "c")


def test_installed_checkpoints_newest_first_and_by_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONO2MESH_HOME", str(tmp_path))
    root = checkpoint_root()
    assert root == tmp_path / "checkpoints"
    assert installed_checkpoints() == []
    save_checkpoint(root / "softras" / "old", _weights(), _meta(created="2024-01-01T00:00:00+00:00"))
    save_checkpoint(root / "softras" / "new", _weights(), _meta(created="2025-01-01T00:00:00+00:00"))
    save_checkpoint(root / "unsup3d" / "face", _weights(), _meta("unsup3d", "depth-64"))
    (root / "softras" / "run.state.json").write_text("{}")  # training state: not a checkpoint
    (root / "softras" / "notes.json").write_text("[1, 2]")  # unrelated JSON
    (root / "softras" / "orphan.json").write_text(json.dumps({"method": "softras"}))  # no weights
    assert [info.name for info in installed_checkpoints("softras")] == ["new", "old"]
    assert {info.meta.method for info in installed_checkpoints()} == {"softras", "unsup3d"}
    assert default_checkpoint("softras") == root / "softras" / "new.safetensors"
    assert default_checkpoint("mesh-inversion") is None
    assert read_meta(root / "unsup3d" / "face").template == "depth-64"
