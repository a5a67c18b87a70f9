"""Forking a run: a new training cycle that starts from another run's saved state.

Every warm-and-anneal cycle of the shipped run began from the last one's state. Done by
hand (copy the state, copy the log, edit `warm_from` in the copied trainer.json) one slip
goes unnoticed: a stale `warm_from` skips the re-warm, and the first steps at the new peak
rate on old moments kick every weight. This does the copy in one checked step, so the
cycle is `r3mem train --config NEW.toml --fork-from runs/OLD`.

Run states live outside git (docs/training.md), so on another machine the run to continue
from is the shipped checkpoint: `--fork-from checkpoints/smollm2-135m-r3mem` starts the cycle
from its weights and step, with fresh optimizer moments (a checkpoint keeps none) re-warmed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors.torch import save_file

from r3mem.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint
from r3mem.config import MemoryConfig
from r3mem.errors import InvalidInput
from r3mem.train.config import TrainConfig

# trainer.json is rewritten, not copied: the fork marks its own step as the re-warm point.
STATE_FILES = ("weights.safetensors", "optimizer.safetensors")


def fork_run(source: Path, cfg: TrainConfig) -> int:
    """Copy `source`'s state and log into `cfg.out_dir`, marked to re-warm from its step.

    Returns the fork step. The copy is staged beside the destination and renamed into
    place, so a failure leaves no half-made run that a later `train` would resume.
    """
    meta_path = source / "state" / "trainer.json"
    if not meta_path.is_file() and (source / CONFIG_FILE).is_file() and (source / WEIGHTS_FILE).is_file():
        return _fork_checkpoint(source, cfg)
    if not meta_path.is_file():
        raise InvalidInput(f"fork: {source} has no saved state ({meta_path} is missing) and is not a checkpoint")
    meta = json.loads(meta_path.read_text())
    step = int(meta["step"])
    _check_fork(source, cfg, step, meta.get("config", {}).get("memory", {}))
    log = source / "log.jsonl"
    rows = log.read_text() if log.is_file() else ""  # the whole lineage: the card counts tokens and hours
    with _staged(Path(cfg.out_dir)) as tmp:
        for name in STATE_FILES:
            if (source / "state" / name).is_file():
                shutil.copy2(source / "state" / name, tmp / "state" / name)
        _write_meta(tmp, meta, step, rows, source)
    return step


def _fork_checkpoint(source: Path, cfg: TrainConfig) -> int:
    """Fork from a shipped checkpoint directory: its weights (as fp32) and step, no moments."""
    checkpoint = read_checkpoint(source)
    step = int(checkpoint.info.get("step", 0))
    _check_fork(source, cfg, step, checkpoint.config.to_json())
    meta = {"step": step, "elapsed_s": float(checkpoint.info.get("train_seconds", 0.0)),
            "config": {"memory": checkpoint.config.to_json()}, "from_checkpoint": checkpoint.fingerprint}
    with _staged(Path(cfg.out_dir)) as tmp:
        weights = {k: v.float().contiguous() for k, v in checkpoint.state.items()}
        save_file(weights, str(tmp / "state" / "weights.safetensors"))
        _write_meta(tmp, meta, step, "", source)
    return step


def _check_fork(source: Path, cfg: TrainConfig, step: int, theirs: dict) -> None:
    out = Path(cfg.out_dir)
    if (out / "state").exists():
        raise InvalidInput(f"fork: {out} already has a state; resume it without --fork-from, or pick another out_dir")
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"fork: {out} is not empty; pick another out_dir")
    if step >= cfg.steps:
        raise InvalidInput(f"fork: {source} is at step {step} and the config ends at step {cfg.steps}; "
                           "raise `steps` so the cycle has steps to run")
    # Compared resolved, so an override that spells out a default still matches.
    if MemoryConfig.from_json(theirs) != MemoryConfig.from_json(cfg.memory):
        raise InvalidInput(f"fork: the memory network differs (source {theirs}, config {cfg.memory}); "
                           "its weights would not load")


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A directory with `state/` to fill, renamed to `out` only if the block finishes: a failure
    leaves no half-made run that a later `train` would resume."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-fork-{out.name}-", dir=out.parent))
    try:
        (tmp / "state").mkdir()
        yield tmp
        if out.exists():
            out.rmdir()  # checked empty before
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_meta(tmp: Path, meta: dict, step: int, rows: str, source: Path) -> None:
    # The fork step is where the re-warm starts, whether or not the moments came along.
    (tmp / "state" / "trainer.json").write_text(json.dumps({**meta, "warm_from": step}, indent=2))
    fork_row = {"event": "fork", "step": step, "from": str(source)}
    (tmp / "log.jsonl").write_text(rows + json.dumps(fork_row) + "\n")
