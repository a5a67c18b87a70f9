"""Public API behaviour on edge-case inputs."""

import resource

import pytest
from tests.conftest import tiny_base

import r3mem
from r3mem.api import R3Mem
from r3mem.config import MemoryConfig
from r3mem.errors import InvalidInput


def test_public_api_is_exported():
    assert {"R3Mem", "Memory", "MemoryConfig", "R3MemError", "CheckpointMismatch"} <= set(r3mem.__all__)
    assert issubclass(r3mem.CheckpointMismatch, ValueError) and issubclass(r3mem.ModelNotFound, FileNotFoundError)


def test_empty_text_is_refused(tiny):
    with pytest.raises(InvalidInput, match="empty"):
        tiny.compress("")
    # whitespace is real text to a tokenizer: the library compresses it (the CLI refuses such files)
    assert len(tiny.compress("   \n")) == 1


def test_non_string_is_refused(tiny):
    with pytest.raises(InvalidInput, match="must be a str"):
        tiny.compress(b"bytes")


def test_single_token(tiny):
    memory = tiny.compress("a")
    assert memory.token_counts == [1] and len(tiny.expand(memory)) >= 1


def test_bad_ratio(tiny):
    with pytest.raises(InvalidInput, match="lowest ratio"):
        tiny.compress("hello", ratio=1)


@pytest.mark.slow  # compresses a megabyte
def test_one_megabyte_text_streams_with_bounded_memory():
    r3 = R3Mem.from_base(tiny_base(), device="cpu", config=MemoryConfig(segment_len=128, max_memory_tokens=16,
                                                                           lora_rank=4, lora_alpha=8))
    text = ("It is a truth universally acknowledged. " * 26000)[: 1 << 20]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    memory = r3.compress(text, ratio=8)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert memory.source_tokens == len(r3.tokenize(text))
    assert len(memory) == -(-memory.source_tokens // 128)
    # snapshots are (S, 16, 64) fp16; activations exist for one segment at a time
    assert grown_mb < 300, f"peak RSS grew by {grown_mb:.0f} MB"
