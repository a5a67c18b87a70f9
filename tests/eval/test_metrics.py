"""Tests for r3mem.eval.metrics: hand-computed values, edge cases and properties."""

from __future__ import annotations

import math
import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r3mem.eval.metrics import (
    aligned_token_accuracy,
    bleu4,
    char_similarity,
    corpus_bleu4,
    entity_hits,
    entity_recall,
    exact_match,
    levenshtein_distance,
    normalize_answer,
    percentile,
    recall_at_k,
    rouge_l,
    squad_exact_match,
    squad_f1,
    token_accuracy,
)

# --------------------------------------------------------------------------- token_accuracy


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ([1, 2, 3, 4], [1, 2, 9, 4], 3 / 4),  # one substitution out of 4
        ([1, 2, 3, 4], [1, 2], 2 / 4),  # missing positions 2,3 count as wrong
        ([1, 2], [1, 2, 3, 4, 5], 1.0),  # extra hypothesis tokens are ignored
        ([1, 2, 3], [0, 1, 2, 3], 0.0),  # shifted by one: no position matches
        ([1, 2, 3], [], 0.0),  # nothing reconstructed
        ([], [], 1.0),  # perfect reconstruction of nothing
        ([], [7], 0.0),  # hallucinated content for an empty reference
        ((5, 6, 7), (5, 0, 7), 2 / 3),  # tuples are sequences too
    ],
)
def test_token_accuracy(ref: list[int], hyp: list[int], expected: float) -> None:
    assert token_accuracy(ref, hyp) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ([1, 2, 3], [0, 1, 2, 3], 3 / 4),  # one inserted token: the rest still counts, the extra one does not
        ([1, 2, 3, 4], [2, 3, 4], 3 / 4),  # one dropped token
        ([1, 2, 3, 4], [1, 2, 9, 4], 3 / 4),  # a substitution costs what it costs position-wise
        ([1, 2], [1, 2, 3, 4], 2 / 4),  # extra tokens are charged, unlike position-wise
        ([1, 2, 3], [3, 2, 1], 1 / 3),  # order matters
        ([1, 2, 3], [], 0.0),
        ([], [], 1.0),
        ([], [7], 0.0),
    ],
)
def test_aligned_token_accuracy(ref: list[int], hyp: list[int], expected: float) -> None:
    assert aligned_token_accuracy(ref, hyp) == pytest.approx(expected)


# --------------------------------------------------------------------------- exact_match


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("abc", "abc", 1.0),
        ("abc", "  abc\n", 1.0),  # surrounding whitespace stripped
        ("abc", "Abc", 0.0),  # case matters
        ("a b", "a  b", 0.0),  # inner whitespace matters
        ("", "", 1.0),
        ("   ", "", 1.0),  # whitespace-only == empty after strip
        ("café", "cafe", 0.0),  # unicode is compared exactly
        ("日本語", " 日本語 ", 1.0),
    ],
)
def test_exact_match(ref: str, hyp: str, expected: float) -> None:
    assert exact_match(ref, hyp) == expected


# --------------------------------------------------------------------------- BLEU


def test_bleu4_identical_and_disjoint() -> None:
    pytest.importorskip("sacrebleu")
    assert bleu4("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert bleu4("cat", "cat") == 1.0  # effective order: only unigrams count
    assert bleu4("Ünïcödé 日本語", "Ünïcödé 日本語") == 1.0
    assert bleu4("a b c", "x y z") == 0.0


def test_bleu4_hand_computed() -> None:
    pytest.importorskip("sacrebleu")
    # ref "the cat on the mat" (5 tokens), hyp "the cat sat on the mat" (6 tokens)
    # 1-grams: the x2, cat, on, mat match -> 5/6
    # 2-grams: "the cat", "on the", "the mat" match -> 3/5
    # 3-grams: "on the mat" -> 1/4
    # 4-grams: 0/3 -> sacrebleu "exp" smoothing: 1 / (2 * 3) = 1/6
    # BP = 1 (hyp longer); BLEU = (5/6 * 3/5 * 1/4 * 1/6) ** (1/4) = (1/48) ** 0.25 = 0.37992
    expected = (1 / 48) ** 0.25
    assert bleu4("the cat on the mat", "the cat sat on the mat") == pytest.approx(expected)


def test_bleu4_empty_is_zero() -> None:
    pytest.importorskip("sacrebleu")
    assert bleu4("", "") == 0.0
    assert bleu4("a", "") == 0.0
    assert bleu4("", "a") == 0.0


def test_corpus_bleu4() -> None:
    pytest.importorskip("sacrebleu")
    refs = ["the cat on the mat", "a b c d e"]
    hyps = ["the cat sat on the mat", "a b c d e"]
    # pooled counts: 1-gram (5+5)/(6+5) = 10/11, 2-gram (3+4)/(5+4) = 7/9,
    # 3-gram (1+3)/(4+3) = 4/7, 4-gram (0+2)/(3+2) = 2/5; hyp_len 11 > ref_len 10 -> BP = 1
    expected = (10 / 11 * 7 / 9 * 4 / 7 * 2 / 5) ** 0.25
    assert corpus_bleu4(refs, hyps) == pytest.approx(expected)
    long = ["one two three four five six", "seven eight nine ten eleven"]
    assert corpus_bleu4(long, long) == 1.0


def test_corpus_bleu4_errors() -> None:
    with pytest.raises(ValueError, match="length"):
        corpus_bleu4(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        corpus_bleu4([], [])


# --------------------------------------------------------------------------- ROUGE-L


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        # LCS = 5 ("the cat on the mat"), P = 5/5, R = 5/6, F = 2PR/(P+R) = 10/11
        ("the cat sat on the mat", "the cat on the mat", 10 / 11),
        ("The Cat", "the cat", 1.0),  # lowercased
        ("a b c", "c b a", 1 / 3),  # LCS = 1, P = R = 1/3
        ("a", "a a a", 0.5),  # LCS = 1, P = 1/3, R = 1, F = (2/3)/(4/3)
        ("日本 語", "日本 語 です", 0.8),  # LCS = 2, P = 2/3, R = 1, F = (4/3)/(5/3)
        ("x y", "p q", 0.0),  # disjoint
        ("", "", 1.0),  # both empty: identical
        ("  ", "\n", 1.0),  # whitespace-only counts as empty
        ("a", "", 0.0),
        ("", "a", 0.0),
        ("cat.", "cat", 0.0),  # punctuation stays attached to the token
    ],
)
def test_rouge_l(ref: str, hyp: str, expected: float) -> None:
    assert rouge_l(ref, hyp) == pytest.approx(expected)


def test_rouge_l_common_affixes() -> None:
    # shared prefix "p q" and suffix "z" around "a b c" vs "b x c": LCS = 2 + 2 + 1 = 5
    # ref has 6 tokens, hyp 6 tokens -> P = R = F = 5/6
    assert rouge_l("p q a b c z", "p q b x c z") == pytest.approx(5 / 6)


def _lcs_full_matrix(a: list[str], b: list[str]) -> int:
    """Textbook full-matrix LCS, used as an oracle."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]


_WORDS = st.lists(st.sampled_from(["a", "b", "c", "The", "the", "d"]), max_size=12).map(" ".join)


@settings(max_examples=200)
@given(_WORDS, _WORDS)
def test_rouge_l_properties(ref: str, hyp: str) -> None:
    score = rouge_l(ref, hyp)
    assert 0.0 <= score <= 1.0
    assert score == rouge_l(hyp, ref)  # F1 is symmetric
    r, h = ref.lower().split(), hyp.lower().split()
    if r and h:
        lcs = _lcs_full_matrix(r, h)
        expected = 0.0 if lcs == 0 else 2 * lcs / (len(r) + len(h))  # F1 = 2L/(|r|+|h|)
        assert score == pytest.approx(expected)


# --------------------------------------------------------------------------- characters


@pytest.mark.parametrize(
    ("a", "b", "distance", "similarity"),
    [
        ("kitten", "sitting", 3, 1 - 3 / 7),  # k->s, e->i, +g
        ("flaw", "lawn", 2, 1 - 2 / 4),  # -f, +n
        ("abc", "abc", 0, 1.0),
        ("abc", "xyz", 3, 0.0),
        ("abc", "", 3, 0.0),
        ("", "", 0, 1.0),
        ("café", "cafe", 1, 1 - 1 / 4),  # é is one code point
        ("😀a", "a", 1, 1 - 1 / 2),  # emoji is one code point
        ("abXcd", "abcd", 1, 1 - 1 / 5),  # prefix/suffix trimming path
    ],
)
def test_levenshtein_and_char_similarity(a: str, b: str, distance: int, similarity: float) -> None:
    assert levenshtein_distance(a, b) == distance
    assert levenshtein_distance(b, a) == distance
    assert char_similarity(a, b) == pytest.approx(similarity)


def test_char_similarity_long_near_identical_is_fast() -> None:
    text = "lorem ipsum dolor sit amet " * 200  # 5400 chars
    edited = text[:2000] + "X" + text[2001:]
    assert char_similarity(text, edited) == pytest.approx(1 - 1 / len(text))


def _levenshtein_full_matrix(a: str, b: str) -> int:
    """Textbook full-matrix edit distance, used as an oracle."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(
                table[i - 1][j] + 1,
                table[i][j - 1] + 1,
                table[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
            )
    return table[len(a)][len(b)]


_SHORT_TEXT = st.text(alphabet="abcé😀 ", max_size=15)


@settings(max_examples=300)
@given(_SHORT_TEXT, _SHORT_TEXT)
def test_char_similarity_properties(a: str, b: str) -> None:
    score = char_similarity(a, b)
    assert 0.0 <= score <= 1.0
    assert score == char_similarity(b, a)
    assert (score == 1.0) == (a == b)
    assert levenshtein_distance(a, b) == _levenshtein_full_matrix(a, b)


# --------------------------------------------------------------------------- entities


def test_entity_recall_basic() -> None:
    text = "Alice met Bob in London."
    # Alice and Bob found, Paris not: 2/3
    assert entity_recall(["Alice", "Bob", "Paris"], text) == pytest.approx(2 / 3)
    assert entity_hits(["Alice", "Bob", "Paris"], text) == (2, 3)


def test_entity_recall_edge_cases() -> None:
    assert entity_recall(["Alice", "Alice", "Bob"], "Alice") == 0.5  # distinct: {Alice, Bob}
    assert entity_recall(["alice"], "Alice") == 0.0  # case-sensitive
    assert entity_recall(["Ann"], "Anna") == 1.0  # substring semantics (documented)
    assert entity_recall(["Zürich", "1984"], "In 1984 in Zürich") == 1.0
    assert entity_recall((e for e in ["x", "y"]), "x") == 0.5  # any iterable works
    assert entity_recall([], "anything") == 1.0  # nothing to lose
    assert entity_hits([], "anything") == (0, 0)
    assert entity_recall(["", "  "], "") == 1.0  # blank entities are dropped
    assert entity_hits(["", "  ", "Q"], "") == (0, 1)


# --------------------------------------------------------------------------- SQuAD


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  Hello,   World!  ", "hello world"),
        ("an apple a day", "apple day"),
        ("theater", "theater"),  # articles only as whole words
        ("A.B.C.", "abc"),
        ("the-end", "theend"),  # punctuation removed before articles
        ("The", ""),
        ("“curly”", "“curly”"),  # only ASCII punctuation is removed, as in the official script
        (1984, "1984"),  # LoCoMo integer answers
    ],
)
def test_normalize_answer(raw: str | int, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def _official_normalize_answer(s: str) -> str:
    """Verbatim logic of SQuAD v1.1 evaluate-v1.1.py normalize_answer (oracle)."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction: str, ground_truth: str) -> float:
    """Verbatim logic of SQuAD v1.1 evaluate-v1.1.py f1_score (oracle)."""
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


_ANSWERS = st.text(alphabet="aAnThe .,!-xyz\t", max_size=20)


@settings(max_examples=300)
@given(_ANSWERS, st.lists(_ANSWERS, min_size=1, max_size=3))
def test_squad_matches_official_script(pred: str, truths: list[str]) -> None:
    assert normalize_answer(pred) == _official_normalize_answer(pred)
    expected_em = max(
        float(_official_normalize_answer(pred) == _official_normalize_answer(t)) for t in truths
    )
    assert squad_exact_match(pred, truths) == expected_em
    assert squad_f1(pred, truths) == pytest.approx(max(_official_f1(pred, t) for t in truths))


def test_squad_exact_match() -> None:
    assert squad_exact_match("Denver Broncos", ["The Denver Broncos"]) == 1.0
    assert squad_exact_match("denver broncos!", ["foo", "The Denver Broncos"]) == 1.0  # max
    assert squad_exact_match("Carolina Panthers", ["Denver Broncos"]) == 0.0
    assert squad_exact_match(7, ["7"]) == 1.0
    assert squad_exact_match("7", [7]) == 1.0


def test_squad_f1() -> None:
    # pred -> [cat, sat], truth -> [cat, sat, down]: common 2, P = 1, R = 2/3, F1 = 0.8
    assert squad_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert squad_f1("the cat sat", ["dog", "a cat sat down"]) == pytest.approx(0.8)  # max
    # multiset overlap: [x, x, y] & [x, y, y] = {x: 1, y: 1} -> 2; P = R = 2/3, F1 = 2/3
    assert squad_f1("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert squad_f1("dog", ["cat"]) == 0.0
    assert squad_f1(2022, ["in 2022"]) == pytest.approx(2 / 3)  # P = 1, R = 1/2
    # both normalise to empty: official script gives F1 = 0 while EM = 1
    assert squad_f1("the", ["a"]) == 0.0
    assert squad_exact_match("the", ["a"]) == 1.0


def test_squad_rejects_bad_ground_truths() -> None:
    with pytest.raises(ValueError, match="at least one"):
        squad_exact_match("x", [])
    with pytest.raises(ValueError, match="at least one"):
        squad_f1("x", [])
    with pytest.raises(TypeError):
        squad_f1("x", "x")


# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),  # h = 3 * 0.5 = 1.5 -> 2 + 0.5 * (3 - 2)
        ([1, 2, 3, 4], 95, 3.85),  # h = 3 * 0.95 = 2.85 -> 3 + 0.85 * (4 - 3)
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 100, 4.0),
        ([7.5], 99, 7.5),  # single value
        ([10, 1, 5], 25, 3.0),  # sorted [1, 5, 10]; h = 0.5 -> 1 + 0.5 * 4
        ([2.0, 2.0, 2.0], 50, 2.0),
    ],
)
def test_percentile_hand_computed(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(
    "values",
    [[0.1, 0.5, 0.2, 9.0, 3.3], list(range(100)), [5.0, -1.0], [1e-3, 2e-3, 1e3]],
)
@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    np = pytest.importorskip("numpy")
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


@settings(max_examples=200)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30),
    st.floats(0, 100),
)
def test_percentile_property_matches_numpy(values: list[float], q: float) -> None:
    np = pytest.importorskip("numpy")
    got = percentile(values, q)
    assert got == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)
    assert min(values) <= got <= max(values)


def test_percentile_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    for bad_q in (-1, 101, math.nan):
        with pytest.raises(ValueError, match="q must be"):
            percentile([1.0], bad_q)


# --------------------------------------------------------------------------- recall_at_k


def test_recall_at_k() -> None:
    retrieved = ["d1", "d2", "d3"]
    assert recall_at_k(retrieved, ["d2", "d4"]) == 0.5  # d2 found, d4 not
    assert recall_at_k(retrieved, ["d2", "d4"], k=1) == 0.0  # only d1 considered
    assert recall_at_k(retrieved, ["d2", "d4"], k=2) == 0.5
    assert recall_at_k(retrieved, ["d2", "d4"], k=10) == 0.5  # k beyond list is fine
    assert recall_at_k(retrieved, ["d2", "d2"]) == 1.0  # duplicate evidence counts once
    assert recall_at_k(retrieved, ["d1", "d3"], k=0) == 0.0
    assert recall_at_k([], ["d1"]) == 0.0
    assert recall_at_k(retrieved, []) == 1.0  # no evidence: documented convention
    assert recall_at_k([], set()) == 1.0


def test_recall_at_k_rejects_negative_k() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        recall_at_k(["d1"], ["d1"], k=-1)


# --------------------------------------------------------------------------- properties


@settings(max_examples=200)
@given(st.lists(st.integers(0, 3), max_size=10), st.lists(st.integers(0, 3), max_size=10))
def test_token_accuracy_properties(ref: list[int], hyp: list[int]) -> None:
    score = token_accuracy(ref, hyp)
    assert 0.0 <= score <= 1.0
    assert token_accuracy(ref, ref) == 1.0
    if ref:  # (an empty reference with extra tokens is hallucination: 0.0)
        assert token_accuracy(ref, ref + hyp) == 1.0  # extra tokens never hurt


@settings(max_examples=200)
@given(st.lists(st.integers(0, 3), max_size=10), st.lists(st.integers(0, 3), max_size=10))
def test_aligned_token_accuracy_properties(ref: list[int], hyp: list[int]) -> None:
    score = aligned_token_accuracy(ref, hyp)
    assert 0.0 <= score <= 1.0
    assert score == aligned_token_accuracy(hyp, ref), "symmetric: it divides by the longer one"
    assert (score == 1.0) == (ref == hyp)
    if len(ref) == len(hyp):
        assert score >= token_accuracy(ref, hyp), "aligning can only find more matches in place"
