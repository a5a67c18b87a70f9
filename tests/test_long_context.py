"""`LongContext` on the tiny model: the raw tail stays bounded, older text folds into memory."""

import pytest
import torch
from tests.conftest import CORPUS

from r3mem.activation_memory import EMPTY, target_nll
from r3mem.errors import InvalidInput
from r3mem.long_context import LongContext


def test_raw_tail_is_bounded_and_nothing_is_dropped(tiny):
    context = LongContext(tiny, window=40, budget=8)
    ids = tiny.tokenize(CORPUS * 2)
    context.append(CORPUS * 2)
    assert len(context.raw) <= context.tail + tiny.config.segment_len
    assert context.folded_tokens + len(context.raw) == len(ids), "every token is raw or in memory"
    assert context.raw == ids[context.folded_tokens :]
    assert 0 < context.memory.size <= 8


def test_memory_changes_what_is_generated(tiny):
    """The same raw tail with and without folded history must not read the same."""
    long, short = LongContext(tiny, 40, 8), LongContext(tiny, 40, 8)
    long.append(CORPUS)
    short.raw = list(long.raw)
    assert short.memory.size == 0 and long.memory.size > 0
    assert isinstance(long.generate("The", max_new_tokens=4), str)
    target = tiny.tokenize(CORPUS)[:20]
    with tiny.network.adapter(None):
        with_memory = target_nll(tiny.network.causal_lm, long.memory, long.raw, target, long.config)
        without = target_nll(tiny.network.causal_lm, EMPTY, long.raw, target, long.config)
    assert not torch.allclose(with_memory, without), "the folded history must reach the reader"


def test_bad_budget_and_empty_context_are_refused(tiny):
    with pytest.raises(InvalidInput, match="budget"):
        LongContext(tiny, window=8, budget=8)
    with pytest.raises(InvalidInput, match="budget"):
        LongContext(tiny, window=8, budget=1)
    with pytest.raises(InvalidInput, match="nothing to continue"):
        LongContext(tiny).generate("")


def test_r3mem_generate_reads_history(tiny):
    assert isinstance(tiny.generate("The", history=CORPUS, max_new_tokens=3, window=40, budget=8), str)
