"""A grounded answer: extracted from the sources, located in one of them, and scored.

`answer_question` runs the three steps: constrained extraction (`constrained`), grounding
(`grounding`), confidence (`confidence`); optionally also for a candidate from each of the
first few sources alone, keeping the most confident. It abstains (answer None) when the extraction is
empty, when no source holds the answer, or when the confidence falls below the calibration's
threshold; the sources are then the closest records, without spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from r3mem.answers.confidence import Calibration, features, load_calibration
from r3mem.answers.grounding import ground

if TYPE_CHECKING:  # the model stack loads to answer, not to read an answer (`r3mem ask --url`)
    from r3mem.api import R3Mem

CLOSEST = 3  # records named when abstaining
# Sources also read alone for a candidate of their own (one extra extraction each). Off: the
# packaged threshold was fitted on the joint candidate, and the best of several candidates clears
# it more often, right or wrong (docs/results.md, "answers"); it needs its own calibration first.
PER_SOURCE = 0


@dataclass(frozen=True)
class Evidence:
    """One recalled record as the answerer sees it."""

    id: str
    text: str
    score: float


@dataclass(frozen=True)
class Source:
    id: str
    text: str
    span: tuple[int, int] | None  # characters of `text` holding the answer; None for a closest record

    def as_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "span": list(self.span) if self.span is not None else None}


@dataclass(frozen=True)
class GroundedAnswer:
    answer: str | None
    abstained: bool
    confidence: float
    sources: list[Source]
    candidate: str = ""  # what the extraction produced, kept even when abstaining (for evaluation)
    features: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The public shape: `r3mem ask --json` and `/v1/ask`."""
        return {"answer": self.answer, "abstained": self.abstained, "confidence": self.confidence,
                "sources": [s.as_dict() for s in self.sources]}


class Answered(Protocol):
    """What `describe` and chat replies read: a `GroundedAnswer`, or the store's `Answer`."""

    @property
    def answer(self) -> str | None: ...

    @property
    def abstained(self) -> bool: ...

    @property
    def sources(self) -> list[Source]: ...


def extract(r3: R3Mem, texts: list[str], question: str) -> str:
    """`constrained.extract`, imported when first called: it imports torch, which reading an answer does not need."""
    from r3mem.answers import constrained

    return constrained.extract(r3, texts, question)


def likelihood(r3: R3Mem, texts: list[str], question: str, answer: str) -> tuple[float, float]:
    """`constrained.likelihood`, imported when first called (see `extract`)."""
    from r3mem.answers import constrained

    return constrained.likelihood(r3, texts, question, answer)


def _abstain(evidence: list[Evidence], candidate: str = "", confidence: float = 0.0,
             values: dict[str, float] | None = None) -> GroundedAnswer:
    closest = [Source(e.id, e.text, None) for e in evidence[:CLOSEST]]
    return GroundedAnswer(None, True, confidence, closest, candidate, values or {})


def answer_question(r3: R3Mem, question: str, evidence: list[Evidence],
                    calibration: Calibration | None = None, per_source: int = PER_SOURCE) -> GroundedAnswer:
    """Answer `question` from `evidence` (in the order the reader should see it), or abstain.

    The candidate is extracted from all sources read together and, with `per_source` > 0, also
    from each of the first `per_source` sources read alone (a small reader reading several
    records often copies a distracting one); each is grounded and scored with the same features,
    always given all sources, and the most confident one is answered if it clears the threshold.
    """
    if not evidence:
        return _abstain([])
    calibration = calibration or load_calibration()
    texts = [e.text for e in evidence]
    top_score = max(e.score for e in evidence)
    best: GroundedAnswer | None = None
    first_candidate = ""
    scored: set[tuple[int, int, int]] = set()
    groups = [list(range(len(texts)))]
    if len(texts) > 1:
        groups += [[i] for i in range(min(per_source, len(texts)))]
    for group in groups:
        candidate = extract(r3, [texts[i] for i in group], question)
        first_candidate = first_candidate or candidate
        where = ground(candidate, [texts[i] for i in group], question) if candidate else None
        if where is None:
            continue
        n = group[where.source]
        if (n, where.start, where.end) in scored:
            continue
        scored.add((n, where.start, where.end))
        answer = texts[n][where.start : where.end]
        logprob, pmi = likelihood(r3, texts, question, answer)
        values = features(top_score, logprob, pmi, question, texts[n])
        confidence = calibration.confidence(values)
        if best is None or confidence > best.confidence:
            span = Source(evidence[n].id, texts[n], (where.start, where.end))
            best = GroundedAnswer(answer, False, confidence, [span], answer, values)
    if best is None:
        return _abstain(evidence, first_candidate)
    if best.confidence < calibration.threshold:
        return _abstain(evidence, best.candidate, best.confidence, best.features)
    return best


def describe(result: Answered) -> str:
    """One plain sentence for people: the answer, or that nothing remembered answers it and what came closest."""
    if not result.abstained:
        return str(result.answer)
    if not result.sources:
        return "Nothing remembered answers this: there are no records to read."
    closest = "; ".join(f"{s.id}: {s.text!r}" for s in result.sources)
    return f"Nothing remembered answers this. The closest records: {closest}"
