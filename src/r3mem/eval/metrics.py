"""Text-comparison metrics for the r3mem evaluation harness.

Every metric here has an exact, hand-verifiable definition (stated in its docstring), so that
reported numbers can be checked with pencil and paper and do not drift with library versions.
Only the standard library is imported at module level; BLEU imports ``sacrebleu`` lazily so the
rest of the module works without it.

All scores are floats in ``[0, 1]`` (higher is better) unless documented otherwise.
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Sequence

from r3mem.fidelity import aligned_token_accuracy, lcs_length, token_accuracy, trim_common_affixes

__all__ = [
    "bleu4",
    "char_similarity",
    "corpus_bleu4",
    "entity_hits",
    "entity_recall",
    "exact_match",
    "levenshtein_distance",
    "normalize_answer",
    "paired_interval",
    "percentile",
    "recall_at_k",
    "rouge_l",
    "squad_exact_match",
    "squad_f1",
    "token_accuracy",
    "aligned_token_accuracy",
]



# --------------------------------------------------------------------------- token level
# token_accuracy and aligned_token_accuracy live in r3mem.fidelity (the product and training use them).


def exact_match(reference: str, hypothesis: str) -> float:
    """1.0 iff the strings are identical after stripping surrounding whitespace, else 0.0.

    Surrounding whitespace is stripped because decoders commonly add or drop a leading space or
    trailing newline, which carries no content; everything else (case, inner spacing,
    punctuation) must match exactly, since lossless reconstruction is the goal.
    """
    return 1.0 if reference.strip() == hypothesis.strip() else 0.0


# --------------------------------------------------------------------------- BLEU


def bleu4(reference: str, hypothesis: str) -> float:
    """Sentence-level BLEU-4 in ``[0, 1]``, computed by ``sacrebleu``.

    Uses ``sacrebleu.metrics.BLEU(effective_order=True)`` (sacrebleu's recommended setting for
    single sentences: n-gram orders with no possible matches are dropped) with its default
    ``13a`` tokenisation and ``exp`` smoothing, and divides the 0-100 score by 100. sacrebleu is
    used instead of a local implementation so numbers are comparable with published results.
    The result is clamped to ``[0, 1]`` because sacrebleu's floating point can give
    ``100.00000000000004`` for identical inputs. Empty inputs score 0.0 (sacrebleu's behaviour).
    """
    from sacrebleu.metrics.bleu import BLEU  # same class as sacrebleu.metrics.BLEU

    score = BLEU(effective_order=True).sentence_score(hypothesis, [reference]).score
    return _clamp_unit(score / 100.0)


def corpus_bleu4(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level BLEU-4 in ``[0, 1]``: ``sacrebleu.metrics.BLEU().corpus_score(...) / 100``.

    Uses sacrebleu's default configuration (no effective order, ``exp`` smoothing, ``13a``
    tokenisation), i.e. the standard corpus BLEU reported in the literature: n-gram counts are
    pooled over all pairs before the geometric mean, so it is *not* the mean of ``bleu4``.

    Raises ValueError if the sequences differ in length or are empty.
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"references and hypotheses differ in length: {len(references)} != {len(hypotheses)}"
        )
    if len(references) == 0:
        raise ValueError("corpus_bleu4 needs at least one reference/hypothesis pair")
    from sacrebleu.metrics.bleu import BLEU  # same class as sacrebleu.metrics.BLEU

    score = BLEU().corpus_score(list(hypotheses), [list(references)]).score
    return _clamp_unit(score / 100.0)


def _clamp_unit(x: float) -> float:
    """Clamp to ``[0, 1]`` (guards against floating-point overshoot)."""
    return min(1.0, max(0.0, x))


# --------------------------------------------------------------------------- ROUGE-L


def rouge_l(reference: str, hypothesis: str) -> float:
    """ROUGE-L F1 over lowercased whitespace-separated word tokens.

    With ``L = LCS(ref_tokens, hyp_tokens)``: ``P = L / len(hyp)``, ``R = L / len(ref)``,
    ``F = 2PR / (P + R)`` (F = 0 when L = 0). F1 (beta = 1) is used, as in the common
    ``rouge-score`` package, so the metric is symmetric in its arguments. Tokenisation is a
    plain ``lower().split()`` (no stemming, punctuation kept attached) so it is hand-checkable
    and dependency-free.

    Edge cases: two empty (or whitespace-only) texts score 1.0 (identical); exactly one empty
    scores 0.0.
    """
    ref = reference.lower().split()
    hyp = hypothesis.lower().split()
    if not ref or not hyp:
        return 1.0 if not ref and not hyp else 0.0
    lcs = lcs_length(ref, hyp)
    if lcs == 0:
        return 0.0
    precision = lcs / len(hyp)
    recall = lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- characters


def levenshtein_distance(a: str, b: str) -> int:
    """Unit-cost Levenshtein (insert/delete/substitute) distance between two strings.

    Two-row DP over Unicode code points: O(len(a) * len(b)) time, O(min(len(a), len(b)))
    memory, fine for texts up to a few thousand characters. A shared prefix/suffix is stripped
    first (it never needs an edit), which makes near-identical texts cheap.
    """
    longer, shorter, _ = trim_common_affixes(a, b)
    if len(longer) < len(shorter):
        longer, shorter = shorter, longer  # rows are sized by the shorter string
    if not shorter:
        return len(longer)
    prev = list(range(len(shorter) + 1))
    for i, ca in enumerate(longer, start=1):
        cur = [i]
        left = i  # cur[j - 1]; comparisons below are a faster inline min() of three costs
        for j, cb in enumerate(shorter):
            best = prev[j] if ca == cb else prev[j] + 1  # substitute (free if equal)
            if prev[j + 1] + 1 < best:  # delete ca
                best = prev[j + 1] + 1
            if left + 1 < best:  # insert cb
                best = left + 1
            cur.append(best)
            left = best
        prev = cur
    return prev[-1]


def char_similarity(reference: str, hypothesis: str) -> float:
    """``1 - levenshtein(ref, hyp) / max(len(ref), len(hyp))`` on characters; 1.0 if both empty.

    Normalising by the longer length keeps the score in ``[0, 1]`` (the distance never exceeds
    the longer length) and symmetric. Character level captures near-misses (a typo, a dropped
    digit) that word-level metrics score as whole-token errors.
    """
    longest = max(len(reference), len(hypothesis))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein_distance(reference, hypothesis) / longest


# --------------------------------------------------------------------------- entities


def _distinct_entities(source_entities: Iterable[str]) -> set[str]:
    """Distinct non-blank entity strings (a blank string would trivially match any text)."""
    return {e for e in source_entities if e.strip()}


def entity_hits(source_entities: Iterable[str], reconstruction: str) -> tuple[int, int]:
    """Return ``(hits, total)`` for :func:`entity_recall`.

    ``total`` is the number of distinct non-blank source entity strings and ``hits`` how many of
    them occur as case-sensitive substrings of ``reconstruction``. Exposed so callers can pool
    counts across documents (micro-average) instead of averaging per-document ratios.
    """
    entities = _distinct_entities(source_entities)
    hits = sum(1 for e in entities if e in reconstruction)
    return hits, len(entities)


def entity_recall(source_entities: Iterable[str], reconstruction: str) -> float:
    """Fraction of distinct source entity strings found verbatim in the reconstruction.

    Matching is a case-sensitive substring test: names, numbers and dates must survive
    compression exactly, and case often distinguishes entities. Duplicates are counted once and
    blank strings are dropped (they would always match).

    If there are no entities the score is 1.0: nothing that needed preserving was lost. Use
    :func:`entity_hits` to see the count and exclude such documents if desired.
    """
    hits, total = entity_hits(source_entities, reconstruction)
    return 1.0 if total == 0 else hits / total


# --------------------------------------------------------------------------- SQuAD v1.1 QA

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str | int) -> str:
    """SQuAD v1.1 official answer normalisation.

    Exactly the official ``evaluate-v1.1.py`` steps, in order: lowercase, remove ASCII
    punctuation, replace the articles ``a``/``an``/``the`` (whole words) with a space, collapse
    whitespace. Following the official script keeps QA scores comparable with published ones.
    Non-string answers (LoCoMo has integer answers) are converted with ``str``.
    """
    text = str(s).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _check_ground_truths(ground_truths: Sequence[str | int]) -> None:
    if isinstance(ground_truths, (str, int)):
        raise TypeError("ground_truths must be a sequence of answers, not a single answer")
    if len(ground_truths) == 0:
        raise ValueError("ground_truths must contain at least one answer")


def squad_exact_match(prediction: str | int, ground_truths: Sequence[str | int]) -> float:
    """SQuAD EM: 1.0 if the normalised prediction equals any normalised ground truth, else 0.0.

    The maximum over ground truths follows the official script. Raises ValueError if
    ``ground_truths`` is empty (the official ``max`` would also fail).
    """
    _check_ground_truths(ground_truths)
    pred = normalize_answer(prediction)
    return max(1.0 if pred == normalize_answer(gt) else 0.0 for gt in ground_truths)


def _token_f1(prediction: str | int, ground_truth: str | int) -> float:
    """Official SQuAD v1.1 token F1 for one pair (bag-of-tokens overlap)."""
    pred_tokens = normalize_answer(prediction).split()
    gt_tokens = normalize_answer(ground_truth).split()
    common = Counter(pred_tokens) & Counter(gt_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gt_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str | int, ground_truths: Sequence[str | int]) -> float:
    """SQuAD token-level F1, maximised over ground truths (official v1.1 definition).

    Tokens are the whitespace split of :func:`normalize_answer`; overlap is the multiset
    intersection. As in the official script, a pair with no common tokens scores 0.0 — even when
    both normalise to empty (e.g. prediction "the" vs answer "a"), whereas EM scores that 1.0.
    Raises ValueError if ``ground_truths`` is empty.
    """
    _check_ground_truths(ground_truths)
    return max(_token_f1(prediction, gt) for gt in ground_truths)


# --------------------------------------------------------------------------- latency & retrieval


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``q`` in ``[0, 100]``) by linear interpolation.

    Same as ``numpy.percentile(values, q)`` with its default ``method="linear"``: sort the
    values, take the fractional rank ``h = (n - 1) * q / 100`` and interpolate between the
    neighbours at ``floor(h)`` and ``ceil(h)``. Used for latency p50/p95/p99 without needing
    numpy at runtime. Raises ValueError on empty input or ``q`` outside ``[0, 100]``.
    """
    if len(values) == 0:
        raise ValueError("percentile of an empty sequence is undefined")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(float(v) for v in values)
    h = (len(ordered) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    frac = h - lo
    return ordered[lo] + frac * (ordered[hi] - ordered[lo])


def recall_at_k(
    retrieved_ids: Sequence[str], evidence_ids: Iterable[str], k: int | None = None
) -> float:
    """Fraction of distinct evidence ids that appear among the retrieved ids.

    ``retrieved_ids`` is the ranked retrieval list; pass ``k`` to look only at its first ``k``
    entries, or truncate it yourself and leave ``k=None`` to use the whole list. Duplicate
    evidence ids count once.

    If there is no evidence the score is 1.0 (nothing required was missed) rather than NaN, so
    averages stay finite; callers that want to exclude such questions should check for empty
    evidence themselves. Raises ValueError for negative ``k``.
    """
    if k is not None and k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    evidence = set(evidence_ids)
    if not evidence:
        return 1.0
    window = retrieved_ids if k is None else retrieved_ids[:k]
    found = evidence.intersection(window)
    return len(found) / len(evidence)


def paired_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and normal 95 % interval of paired per-item differences (infinite for one item)."""
    mean = statistics.fmean(diffs)
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
    return mean, mean - half, mean + half
