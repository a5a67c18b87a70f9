"""Integration on the real default model (SmolLM2-135M-Instruct, installed by `make`)."""

import time

import pytest

from r3mem.base_model import DEFAULT_MODEL, load_base_model
from r3mem.demo import HELD_OUT_NOTE, demo_passage, run_demo

pytestmark = pytest.mark.real_model


def test_default_model_loads_from_cache_fast(real):
    t0 = time.perf_counter()
    base = load_base_model()
    elapsed = time.perf_counter() - t0
    assert base.name == DEFAULT_MODEL and base.fingerprint == real.base.fingerprint
    assert base.model.config.hidden_size == 576 and base.model.config.num_hidden_layers == 30
    assert elapsed < 10  # generous: the figure that matters is in docs/decoding.md's speed table


def test_tokenizer_round_trips_text_exactly(real):
    text = demo_passage() + "Ünïcödé — 東京 ✓\n\ttabs  and  spaces"
    assert real.detokenize(real.tokenize(text)) == text


def test_compress_expand_shapes_on_real_model(real):
    memory = real.compress(demo_passage(), ratio=8)
    assert memory.snapshots.shape[1:] == (16, 576)
    assert memory.source_tokens == len(real.tokenize(demo_passage()))
    first = real.expand_ids(memory, segment=0)[0]
    assert len(first) == memory.token_counts[0]


def test_demo_runs_and_reports_figures(real):
    lines: list[str] = []
    figures = run_demo(real, ratio=4, say=lines.append)
    assert figures["segments"] == len(real.compress(demo_passage())) == 3
    assert HELD_OUT_NOTE in lines  # the text is from a book training never read, and the screen says so
    assert 0.0 <= figures["token_accuracy"] <= 1.0
    assert 0 <= figures["segments_verified"] <= figures["segments"]
    assert f"{figures['segments_verified']} of {figures['segments']} segment(s) verified exact" in lines[-1]
    if figures["token_accuracy"] < 1.0:  # a passage that differs anywhere cannot verify everywhere
        assert figures["segments_verified"] < figures["segments"]
    if not real.trained:
        assert any("untrained" in line for line in lines)
