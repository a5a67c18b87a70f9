"""Training never grows a clone: new run states are ignored, and the files under runs/ that git
tracks can only shrink (docs/training.md, "Where run states live")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tracked before /runs/* was ignored (2026-12-07); a later session untracks them in small pieces.
# Adding to this list is a deliberate act: a state or checkpoint under runs/ never belongs here.
_LINEAGE = ("smollm2-135m", "smollm2-135m-rec-lm", "smollm2-135m-rec-lm-128", "smollm2-135m-rec-lm-128-r48",
            *(f"smollm2-135m-rec-lm-128-c{i}" for i in range(4, 9)))
_ABLATIONS = ("full", "no-cyc", "no-hier", "rec-only", "rec-only-equal-time")
TRACKED_RUN_FILES = frozenset(
    [f"runs/{run}/{name}" for run in _LINEAGE
     for name in ("log.jsonl", "loss_curve.png", "state/trainer.json", "state/weights.safetensors")]
    + [f"runs/ablation-{a}/{name}" for a in _ABLATIONS
       for name in ("log.jsonl", "loss_curve.png", "reconstruct-32.json")]
    + [f"runs/smollm2-135m-rec-lm-128-ss/{name}" for name in ("log.jsonl", "loss_curve.png")]
)


def _git(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree")
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("path", ["runs/new-run/state/weights.safetensors", "runs/new-run/state/optimizer.safetensors",
                                  "runs/smollm2-135m-rec-lm-128-c9/state/weights.safetensors",
                                  "runs/new-run/checkpoint/weights.safetensors", "runs/new-run/log.jsonl"])
def test_a_new_run_is_ignored(path):
    assert _git("check-ignore", "--no-index", "-q", path).returncode == 0, f"{path} would be tracked"


def test_tracked_run_files_only_shrink():
    tracked = set(_git("ls-files", "runs").stdout.split())
    assert tracked <= TRACKED_RUN_FILES, f"newly tracked under runs/: {sorted(tracked - TRACKED_RUN_FILES)}"
