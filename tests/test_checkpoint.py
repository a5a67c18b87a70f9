"""Checkpoints: bit-identical round trips, and refusals with clear messages."""

import json

import pytest
import torch
from tests.conftest import TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.checkpoint import read_checkpoint
from r3mem.errors import CheckpointError, CheckpointMismatch
from r3mem.weights import trainable_state


def _perturb(r3: R3Mem) -> None:
    with torch.no_grad():
        for p in r3.network.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.01)


def test_save_then_load_is_bit_identical(tiny, tmp_path):
    _perturb(tiny)
    fingerprint = tiny.save_checkpoint(tmp_path / "ckpt")
    loaded = R3Mem.from_base(tiny_base(), tmp_path / "ckpt", device="cpu")
    a, b = trainable_state(tiny.network), trainable_state(loaded.network)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.checkpoint_fingerprint == fingerprint and loaded.trained
    assert loaded.config == TINY_MEMORY
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert list(meta) == sorted(meta) and meta["format_version"] == 1


def test_loaded_checkpoint_reproduces_memory(tiny, tmp_path):
    _perturb(tiny)
    tiny.save_checkpoint(tmp_path / "ckpt")
    loaded = R3Mem.from_base(tiny_base(), tmp_path / "ckpt", device="cpu")
    text = "Mr. Bennet made no answer."
    assert torch.equal(tiny.compress(text).snapshots, loaded.compress(text).snapshots)


def test_refuses_checkpoint_of_another_base_model(tiny, tmp_path):
    tiny.save_checkpoint(tmp_path / "ckpt")
    other = tiny_base(seed=1)
    with pytest.raises(CheckpointMismatch, match="made for base model tiny-llama"):
        R3Mem.from_base(other, tmp_path / "ckpt", device="cpu")
    already_read = read_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatch, match="made for base model tiny-llama"):
        R3Mem.from_base(other, already_read, device="cpu")


def test_an_already_read_checkpoint_loads_like_its_directory(tiny, tmp_path):
    _perturb(tiny)
    fingerprint = tiny.save_checkpoint(tmp_path / "ckpt")
    loaded = R3Mem.from_base(tiny_base(), read_checkpoint(tmp_path / "ckpt"), device="cpu")
    a, b = trainable_state(tiny.network), trainable_state(loaded.network)
    assert all(torch.equal(a[k], b[k]) for k in a) and loaded.checkpoint_fingerprint == fingerprint


def test_refuses_missing_corrupt_and_truncated(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        R3Mem.from_base(tiny_base(), tmp_path / "nothing", device="cpu")
    tiny.save_checkpoint(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="checksum"):
        R3Mem.from_base(tiny_base(), tmp_path / "ckpt", device="cpu")
    tiny.save_checkpoint(tmp_path / "ckpt2")
    (tmp_path / "ckpt2" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint config"):
        R3Mem.from_base(tiny_base(), tmp_path / "ckpt2", device="cpu")


def test_resave_keeps_other_files(tiny, tmp_path):
    tiny.save_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "MODEL_CARD.md").write_text("card")
    (tmp_path / "ckpt" / "eval" / "plots").mkdir(parents=True)
    (tmp_path / "ckpt" / "eval" / "reconstruct.json").write_text("{}")
    (tmp_path / "ckpt" / "eval" / "plots" / "a.png").write_bytes(b"png")
    tiny.save_checkpoint(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "MODEL_CARD.md").read_text() == "card"
    assert (tmp_path / "ckpt" / "eval" / "reconstruct.json").read_text() == "{}"  # results survive a re-ship
    assert (tmp_path / "ckpt" / "eval" / "plots" / "a.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_half_precision_checkpoint_is_smaller_and_close(tiny, tmp_path):
    _perturb(tiny)
    tiny.save_checkpoint(tmp_path / "full")
    tiny.save_checkpoint(tmp_path / "half", half=True)
    full, half = (tmp_path / p / "weights.safetensors" for p in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = R3Mem.from_base(tiny_base(), tmp_path / "half", device="cpu")
    a, b = trainable_state(tiny.network), trainable_state(loaded.network)
    assert all(b[k].dtype == torch.float32 for k in b)
    assert all(torch.allclose(a[k], b[k], rtol=1e-2, atol=1e-3) for k in a)
