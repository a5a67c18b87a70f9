"""Checkpoint directories: `config.json` (sorted, versioned) beside `weights.safetensors`.

A checkpoint holds only what r3mem adds to the base LM (both LoRA adapters, the
memory parameters, the projection): a few MB. It records the base model's
fingerprint, and loading refuses a checkpoint made for another base model.
Weights load through safetensors only; nothing is ever unpickled. The tensors a network
writes and reads are `r3mem.weights`'.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from r3mem.config import CONFIG_VERSION, MemoryConfig
from r3mem.errors import CheckpointError, CheckpointMismatch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass
class Checkpoint:
    """A loaded checkpoint: its config, tensors, provenance and content hash."""

    config: MemoryConfig
    state: dict[str, Tensor]
    base_model: str
    base_fingerprint: str
    fingerprint: str
    info: dict[str, Any]
    path: Path | None = None  # the directory it was read from, for files beside the weights

    def require_base(self, fingerprint: str, where: str | Path) -> None:
        """Refuse a base model other than the one these weights were trained on."""
        _require_base(self.base_model, self.base_fingerprint, fingerprint, where)


def _require_base(name: str, made_for: str, loaded: str, where: str | Path) -> None:
    if made_for != loaded:
        raise CheckpointMismatch(
            f"checkpoint {where} was made for base model {name} ({made_for}), not the loaded one ({loaded})"
        )


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def save_checkpoint(
    path: str | Path,
    config: MemoryConfig,
    state: dict[str, Tensor],
    base_model: str,
    base_fingerprint: str,
    info: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint directory atomically; return its fingerprint.

    The directory is built beside the target and renamed into place, so a crash
    leaves either the old checkpoint or the new one, never a mixture.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=target.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "r3mem-checkpoint"})
        meta = {
            "format_version": CONFIG_VERSION,
            "memory": config.to_json(),
            "base_model": {"name": base_model, "fingerprint": base_fingerprint},
            "weights_sha256_16": _file_hash(tmp / WEIGHTS_FILE),
            "info": info or {},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n")
        # Keep what other tools put in the directory: the model card, metrics, and the eval/ folder
        # of results (re-shipping new weights once dropped it; the card marks results of old weights).
        if target.is_dir():
            for extra in target.iterdir():
                if extra.name in (CONFIG_FILE, WEIGHTS_FILE):
                    continue
                if extra.is_dir():
                    shutil.copytree(extra, tmp / extra.name, symlinks=True)
                elif extra.is_file():
                    shutil.copy2(extra, tmp / extra.name)
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(meta["weights_sha256_16"])


def read_checkpoint(path: str | Path, expect_fingerprint: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint; `expect_fingerprint` is the loaded base model's."""
    root = Path(path)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"not a checkpoint directory: {root} (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads((root / CONFIG_FILE).read_text())
        config = MemoryConfig.from_json(meta["memory"])
        base = meta["base_model"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"corrupt checkpoint config {root / CONFIG_FILE}: {exc}") from exc
    if meta.get("format_version") != CONFIG_VERSION:
        raise CheckpointError(f"checkpoint format {meta.get('format_version')} is not {CONFIG_VERSION}")
    if expect_fingerprint is not None:
        _require_base(base["name"], base["fingerprint"], expect_fingerprint, root)
    fingerprint = _file_hash(root / WEIGHTS_FILE)
    if fingerprint != meta.get("weights_sha256_16"):
        raise CheckpointError(f"checkpoint weights {root / WEIGHTS_FILE} fail their checksum")
    try:
        state = load_file(str(root / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"corrupt checkpoint weights {root / WEIGHTS_FILE}: {exc}") from exc
    return Checkpoint(config, state, base["name"], base["fingerprint"], fingerprint, meta.get("info", {}), root)

