"""The .r3m format: exact round trips and refusal of anything damaged."""

import pytest
import torch

from r3mem.errors import CheckpointMismatch, InvalidInput, MemoryFileError
from r3mem.memory_file import Memory

TEXT = "Mr. Bennet replied that he had not. " * 8


def test_round_trip_is_identical(tiny, tmp_path):
    memory = tiny.compress(TEXT, ratio=4)
    memory.save(tmp_path / "a.r3m")
    loaded = Memory.load(tmp_path / "a.r3m")
    assert torch.equal(loaded.snapshots, memory.snapshots)
    assert loaded.token_counts == memory.token_counts == [16] * (len(memory) - 1) + [memory.token_counts[-1]]
    assert (loaded.ratio, loaded.segment_len, loaded.source_tokens) == (4, 16, len(tiny.tokenize(TEXT)))
    assert tiny.expand(loaded) == tiny.expand(memory)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_files_are_refused(tiny, tmp_path, damage):
    path = tmp_path / "a.r3m"
    tiny.compress(TEXT).save(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip":
        data[-10] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"\x00\xff" * 50)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(MemoryFileError):
        Memory.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(MemoryFileError, match="no such memory file"):
        Memory.load(tmp_path / "absent.r3m")


def test_failed_save_leaves_no_file(tiny, tmp_path):
    memory = tiny.compress(TEXT)
    with pytest.raises(FileNotFoundError):
        memory.save(tmp_path / "missing-dir" / "a.r3m")
    assert list(tmp_path.iterdir()) == []


def test_memory_from_another_checkpoint_is_refused(tiny):
    memory = tiny.compress(TEXT)
    memory.checkpoint_fingerprint = "someone-else"
    with pytest.raises(CheckpointMismatch, match="someone-else"):
        tiny.expand(memory)
    memory = tiny.compress(TEXT)
    memory.model_fingerprint = "another-model"
    with pytest.raises(CheckpointMismatch, match="another-model"):
        tiny.expand(memory)


def test_segment_out_of_range(tiny):
    memory = tiny.compress("short text")
    with pytest.raises(InvalidInput, match="out of range"):
        tiny.expand(memory, segment=5)
    assert tiny.expand(memory, segment=-1) == tiny.expand(memory, segment=0)
