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


def test_segments_verify_against_their_source_digests(tiny, tmp_path):
    memory = tiny.compress(TEXT, ratio=4)
    ids = tiny.tokenize(TEXT)
    sources = [ids[i : i + 16] for i in range(0, len(ids), 16)]
    memory.save(tmp_path / "a.r3m")
    loaded = Memory.load(tmp_path / "a.r3m")
    assert torch.equal(loaded.segment_digests, memory.segment_digests)
    assert loaded.segment_digests.shape == (len(sources), 8)
    assert [loaded.verify(i, s) for i, s in enumerate(sources)] == [True] * len(sources)
    assert loaded.verify(0, sources[0][:-1]) is False and loaded.verify(0, sources[1]) is False
    result = tiny.expand_verified(loaded)
    assert result.text == tiny.expand(loaded) and result.segments == list(range(len(sources)))
    parts = tiny.expand_ids(loaded)
    assert result.verified == [p == s for p, s in zip(parts, sources, strict=True)]
    one = tiny.expand_verified(loaded, segment=-1)
    assert one.segments == [len(sources) - 1] and len(one.verified) == 1


def test_format_1_files_load_but_cannot_be_verified(tiny, tmp_path):
    memory = tiny.compress(TEXT)
    memory.segment_digests = None  # how format 1 wrote it: no digests tensor
    memory.save(tmp_path / "old.r3m")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "old.r3m"), framework="pt") as fh:
        assert fh.metadata()["format_version"] == "1" and set(fh.keys()) == {"snapshots", "token_counts"}
    loaded = Memory.load(tmp_path / "old.r3m")
    assert loaded.segment_digests is None and loaded.verify(0, [1, 2]) is None
    result = tiny.expand_verified(loaded)
    assert not result.exact and result.summary().startswith("not verifiable")


def test_digests_of_the_wrong_shape_are_refused(tiny, tmp_path):
    memory = tiny.compress(TEXT)
    memory.segment_digests = memory.segment_digests[:, :4]  # the checksum matches; the shape does not
    memory.save(tmp_path / "a.r3m")
    with pytest.raises(MemoryFileError, match="counts disagree"):
        Memory.load(tmp_path / "a.r3m")
