"""Forking a run: a new training cycle that starts from another run's saved state.

Every warm-and-anneal cycle of the shipped run began from the last one's state. Done by
hand (copy the state, copy the log, edit `warm_from` in the copied trainer.json) one slip
goes unnoticed: a stale `warm_from` skips the re-warm, and the first steps at the new peak
rate on old moments kick every weight. This does the copy in one checked step, so the
cycle is `r3mem train --config NEW.toml --fork-from runs/OLD`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

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
    if not meta_path.is_file():
        raise InvalidInput(f"fork: {source} has no saved state ({meta_path} is missing)")
    out = Path(cfg.out_dir)
    if (out / "state").exists():
        raise InvalidInput(f"fork: {out} already has a state; resume it without --fork-from, or pick another out_dir")
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"fork: {out} is not empty; pick another out_dir")
    meta = json.loads(meta_path.read_text())
    step = int(meta["step"])
    if step >= cfg.steps:
        raise InvalidInput(f"fork: {source} is at step {step} and the config ends at step {cfg.steps}; "
                           "raise `steps` so the cycle has steps to run")
    theirs = meta.get("config", {}).get("memory", {})
    # Compared resolved, so an override that spells out a default still matches.
    if MemoryConfig(**theirs) != MemoryConfig(**cfg.memory):
        raise InvalidInput(f"fork: the memory network differs (source {theirs}, config {cfg.memory}); "
                           "its weights would not load")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-fork-{out.name}-", dir=out.parent))
    try:
        (tmp / "state").mkdir()
        for name in STATE_FILES:
            if (source / "state" / name).is_file():
                shutil.copy2(source / "state" / name, tmp / "state" / name)
        # The fork step is where the re-warm starts, whether or not the moments came along.
        meta["warm_from"] = step
        (tmp / "state" / "trainer.json").write_text(json.dumps(meta, indent=2))
        # The whole lineage's log comes along: the model card counts tokens and hours from it.
        log = source / "log.jsonl"
        rows = log.read_text() if log.is_file() else ""
        fork_row = {"event": "fork", "step": step, "from": str(source)}
        (tmp / "log.jsonl").write_text(rows + json.dumps(fork_row) + "\n")
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return step
