"""training.distributed: the sharding sampler, the single-process context, and DDP on CPU under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.devices import resolve_device
from training.distributed import ShardedSampler, init_distributed

from .toy import ToyMethod, run, toy_config

REPO = Path(__file__).resolve().parents[2]


def _batches(sampler: ShardedSampler) -> list[list[int]]:
    indices = list(sampler)
    return [indices[i : i + sampler.local_batch] for i in range(0, len(indices), sampler.local_batch)]


def test_every_global_batch_is_the_same_for_any_process_count() -> None:
    single = ShardedSampler(20, 8, seed=3)
    ranks = [ShardedSampler(20, 8, rank=r, world_size=2, seed=3) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(1)
    assert single.batches_per_epoch == 2 and len(single) == 16 and len(ranks[0]) == 8
    for step, batch in enumerate(_batches(single)):
        assert batch == _batches(ranks[0])[step] + _batches(ranks[1])[step]
    assert len(set(single)) == 16  # no repeats within an epoch
    single.set_epoch(2)
    assert list(single) != _batches(ranks[0])[0] + _batches(ranks[1])[0] + _batches(ranks[0])[1]


def test_an_epoch_can_start_mid_way_and_order_depends_on_seed_and_epoch() -> None:
    sampler = ShardedSampler(32, 8, seed=0)
    sampler.set_epoch(4)
    whole = list(sampler)
    sampler.set_epoch(4, start_batch=3)
    assert list(sampler) == whole[24:] and len(sampler) == 8
    sampler.set_epoch(5)
    assert list(sampler) != whole
    assert list(ShardedSampler(8, 8, shuffle=False)) == list(range(8))
    with pytest.raises(ValueError, match="batch size 6 must be a positive multiple of the process count 4"):
        ShardedSampler(32, 6, rank=0, world_size=4)
    with pytest.raises(ValueError, match="start batch 4 is outside"):
        sampler.set_epoch(0, start_batch=4)


def test_without_torchrun_there_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.enabled, context.is_main) == (0, 1, False, True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ValueError, match="WORLD_SIZE > 1 but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT unset"
    ):
        init_distributed("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.slow  # three python processes start torch: about 6-10 s on two busy cores
def test_two_gloo_processes_under_torchrun_match_one_process_on_the_full_batch(tmp_path: Path) -> None:
    settings = {"iterations": 12, "dropout": 0.0, "augment": False, "eval_every": 0, "image_every": 0}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(toy_config(tmp_path / "ddp", **settings).model_dump(mode="json")))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "tests.training.toy", "--config", str(config_file)]
    finished = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    rank0 = load_file(str(tmp_path / "ddp" / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "rank1.safetensors"))
    single = run(toy_config(tmp_path / "single", **settings)).model.state_dict()
    for key, value in single.items():
        assert torch.equal(rank0[key], rank1[key]), key  # DDP kept the processes in step
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)  # = the full-batch gradient
    torch.manual_seed(0)  # the loop seeds with config.seed before build_model
    initial = ToyMethod(dropout=0.0).build_model().state_dict()
    assert not any(torch.equal(initial[key], rank0[key]) for key in initial)  # and they did train

    # rank 0 alone wrote the checkpoint and the log; the resume state holds both processes' generators
    state = json.loads((tmp_path / "ddp" / "checkpoints" / "step_0000012.state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    history = [json.loads(line) for line in (tmp_path / "ddp" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if r["kind"] == "train"] == [5, 10, 12]
