"""Forking a run: the new cycle starts from the source's state and re-warms from its step."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.train.config import TrainConfig
from r3mem.train.fork import fork_run
from r3mem.train.loop import train


@pytest.fixture
def data(train_data):
    return train_data


def _config(tmp_path, data, name, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / name), data_dir=str(data), val_books=("val.txt",), steps=3,
                batch_size=2, segment_lens=(8,), ratios=(2,), curriculum_steps=1, eval_every=100,
                save_every=1, val_windows=2, warmup_steps=2, w_hier=0.0, w_cyc=0.0)
    base.update(kw)
    return TrainConfig(**base)


def _fresh() -> R3Mem:
    return R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY)


@pytest.fixture
def source(tmp_path, data, monkeypatch):
    """A finished three-step run with its AdamW moments."""
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 8)
    train(_config(tmp_path, data, "old"), _fresh(), log=lambda _: None)
    return tmp_path / "old"


def _rows(run):
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def test_fork_continues_from_the_source_and_rewarms(tmp_path, data, source):
    before = (source / "state" / "weights.safetensors").read_bytes()
    cfg = _config(tmp_path, data, "new", steps=5)
    assert fork_run(source, cfg) == 3
    copied = load_file(str(tmp_path / "new" / "state" / "weights.safetensors"))
    theirs = load_file(str(source / "state" / "weights.safetensors"))
    assert all(torch.equal(copied[k], theirs[k]) for k in theirs)
    assert (tmp_path / "new" / "state" / "optimizer.safetensors").is_file(), "the moments come along"
    train(cfg, _fresh(), log=lambda _: None)
    steps = [r for r in _rows(tmp_path / "new") if "event" not in r and not r.get("val")]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5], "the lineage's log comes along"
    assert steps[2]["lr"] == cfg.lr, "the source had finished its warmup"
    assert steps[3]["lr"] == pytest.approx(cfg.lr / 2), "the fork re-warms, moments and all"
    assert steps[4]["lr"] == cfg.lr
    assert {"event": "fork", "step": 3, "from": str(source)} in _rows(tmp_path / "new")
    assert (source / "state" / "weights.safetensors").read_bytes() == before, "the source is left alone"
    assert json.loads((source / "state" / "trainer.json").read_text())["step"] == 3


@pytest.mark.slow  # trains a tiny source run; `make test-unit` keeps the fork's main path and its first refusals
def test_fork_without_moments_still_rewarms_from_the_fork(tmp_path, data, source):
    (source / "state" / "optimizer.safetensors").unlink()
    cfg = _config(tmp_path, data, "new", steps=4)
    fork_run(source, cfg)
    assert json.loads((tmp_path / "new" / "state" / "trainer.json").read_text())["warm_from"] == 3
    train(cfg, _fresh(), log=lambda _: None)
    assert [r["lr"] for r in _rows(tmp_path / "new") if r.get("step") == 4 and "rec" in r] == [cfg.lr / 2]


@pytest.mark.slow  # trains a tiny source run; `make test-unit` keeps the fork's main path and its first refusals
@pytest.mark.parametrize(("change", "match"), [
    ({"steps": 3}, "at step 3 and the config ends at step 3"),
    ({"steps": 5, "memory": {"lora_rank": 2}}, "memory network differs"),
])
def test_fork_refuses_a_config_it_cannot_continue(tmp_path, data, source, change, match):
    with pytest.raises(InvalidInput, match=match):
        fork_run(source, _config(tmp_path, data, "new", **change))
    assert not (tmp_path / "new").exists(), "nothing half-made is left to resume"


def test_fork_from_the_shipped_checkpoint_continues_its_weights_and_step(tmp_path, data, monkeypatch):
    """Run states stay off git, so another machine continues from the checkpoint: its weights, its step."""
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 8)
    shipped = _fresh()
    with torch.no_grad():
        shipped.network.initial_memory.add_(0.5)  # weights no fresh model has
    shipped.save_checkpoint(tmp_path / "ckpt", info={"step": 2, "train_seconds": 7.0})
    cfg = _config(tmp_path, data, "new", steps=3, memory=TINY_MEMORY.to_json())
    assert fork_run(tmp_path / "ckpt", cfg) == 2
    state = load_file(str(tmp_path / "new" / "state" / "weights.safetensors"))
    assert torch.allclose(state["initial_memory"], shipped.network.initial_memory.float(), atol=1e-3)
    assert not (tmp_path / "new" / "state" / "optimizer.safetensors").exists(), "a checkpoint keeps no moments"
    train(cfg, _fresh(), log=lambda _: None)
    steps = [r["step"] for r in _rows(tmp_path / "new") if "rec" in r]
    assert steps == [3], "the fork runs only the steps after the checkpoint's"
    with pytest.raises(InvalidInput, match="memory network differs"):
        fork_run(tmp_path / "ckpt", _config(tmp_path, data, "other", steps=3))


def test_fork_refuses_a_missing_source_or_a_taken_destination(tmp_path, data, source):
    with pytest.raises(InvalidInput, match="has no saved state"):
        fork_run(tmp_path / "nowhere", _config(tmp_path, data, "new", steps=5))
    with pytest.raises(InvalidInput, match="already has a state"):
        fork_run(source, _config(tmp_path, data, "old", steps=5))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "log.jsonl").write_text("{}\n")
    with pytest.raises(InvalidInput, match="not empty"):
        fork_run(source, _config(tmp_path, data, "busy", steps=5))
    assert (tmp_path / "busy" / "log.jsonl").read_text() == "{}\n"
    assert not list(tmp_path.glob(".tmp-fork-*")), "no staging directory is left behind"


@pytest.mark.slow  # spawns an `r3mem` process
def test_cli_fork_error_is_one_line_and_nonzero(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'out_dir = "{tmp_path / "new"}"\nsteps = 5\n')
    proc = subprocess.run([sys.executable, "-m", "r3mem.cli", "train", "--config", str(cfg),
                           "--fork-from", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "has no saved state" in proc.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.slow  # trains a tiny source run; `make test-unit` keeps the fork's main path and its first refusals
def test_fork_accepts_a_memory_override_that_spells_out_a_default(tmp_path, data, source):
    assert fork_run(source, _config(tmp_path, data, "new", steps=5, memory={"lora_rank": 16})) == 3
