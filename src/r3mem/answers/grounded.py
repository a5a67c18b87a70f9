"""A grounded answer: extracted from the sources, located in one of them, and scored.

`answer_question` runs the three steps: constrained extraction (`constrained`), grounding
(`grounding`), confidence (`confidence`). It abstains (answer None) when the extraction is
empty, when no source holds the answer, or when the confidence falls below the calibration's
threshold; the sources are then the closest records, without spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from r3mem.answers.confidence import Calibration, features, load_calibration
from r3mem.answers.constrained import extract, likelihood
from r3mem.answers.grounding import ground
from r3mem.api import R3Mem

CLOSEST = 3  # records named when abstaining


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


def _abstain(evidence: list[Evidence], candidate: str = "", confidence: float = 0.0,
             values: dict[str, float] | None = None) -> GroundedAnswer:
    closest = [Source(e.id, e.text, None) for e in evidence[:CLOSEST]]
    return GroundedAnswer(None, True, confidence, closest, candidate, values or {})


def answer_question(r3: R3Mem, question: str, evidence: list[Evidence],
                    calibration: Calibration | None = None) -> GroundedAnswer:
    """Answer `question` from `evidence` (in the order the reader should see it), or abstain."""
    if not evidence:
        return _abstain([])
    calibration = calibration or load_calibration()
    texts = [e.text for e in evidence]
    candidate = extract(r3, texts, question)
    where = ground(candidate, texts, question) if candidate else None
    if where is None:
        return _abstain(evidence, candidate)
    source = evidence[where.source]
    answer = source.text[where.start : where.end]
    logprob, pmi = likelihood(r3, texts, question, answer)
    values = features(max(e.score for e in evidence), logprob, pmi, question, source.text)
    confidence = calibration.confidence(values)
    if confidence < calibration.threshold:
        return _abstain(evidence, answer, confidence, values)
    return GroundedAnswer(answer, False, confidence, [Source(source.id, source.text, (where.start, where.end))],
                          answer, values)


def describe(result: Answered) -> str:
    """One plain sentence for people: the answer, or that nothing remembered answers it and what came closest."""
    if not result.abstained:
        return str(result.answer)
    if not result.sources:
        return "Nothing remembered answers this: there are no records to read."
    closest = "; ".join(f"{s.id}: {s.text!r}" for s in result.sources)
    return f"Nothing remembered answers this. The closest records: {closest}"
