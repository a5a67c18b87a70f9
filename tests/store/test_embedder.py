"""The packaged MiniLM: bf16 autocast, where the CPU has it, gives the float32 embeddings back."""

from __future__ import annotations

import numpy as np
import pytest

from r3mem.machine import native_bf16
from r3mem.store.embedder import MiniLM

TEXTS = ["Where is Anna flying on 12 May, and what did the room in Lyon cost?", "My dog is called Rex.",
         "a much longer text about the sea, the ships and the harbour " * 12, "x"]


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM(bf16=False)


def test_embeddings_are_unit_vectors_and_rank_the_same_text_first(minilm):
    vectors = minilm.encode(TEXTS)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    query = minilm.encode(["What did the hotel in Lyon cost?"])[0]
    assert int(np.argmax(vectors @ query)) == 0


@pytest.mark.skipif(not native_bf16("cpu"), reason="this CPU has no native bfloat16: the encoder runs in float32")
def test_bf16_autocast_keeps_every_cosine(minilm):
    exact = minilm.encode(TEXTS)
    fast = MiniLM(bf16=True)
    assert fast.bf16 and MiniLM().bf16, "where bf16 is native it is the default"
    approx = fast.encode(TEXTS)
    assert float((exact * approx).sum(1).min()) > 0.9999


def test_float32_is_kept_where_asked(minilm):
    assert not minilm.bf16 and not native_bf16("cuda")
