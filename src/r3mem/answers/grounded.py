"""A grounded answer: extracted from the sources, located in one of them, and scored.

`answer_question` runs three steps for each candidate answer: reading (`constrained` extraction,
and free generation), locating it in a source (`grounding`: an extraction is grounded, a free answer
anchored to the span that supports it) and confidence (`confidence`); the most confident candidate
wins. It abstains (answer None) when no candidate is located in a source, or when the winner's
confidence falls below the calibration's threshold; the sources are then the closest records,
without spans. The answer is always a span of a source, never the reader's own words, except
that a "when" question is answered with the date the supporting record's words point to, read
against its date (`when`: "yesterday" said on 8 May 2023 is "7 May 2023"), its span the words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from r3mem.answers import when
from r3mem.answers.confidence import Calibration, features, load_calibration
from r3mem.answers.grounding import Grounding, admissible, anchor, ground
from r3mem.answers.speakers import author_named, own_things_mentioned

if TYPE_CHECKING:  # the model stack loads to answer, not to read an answer (`r3mem ask --url`)
    from r3mem.api import R3Mem
    from r3mem.store import Hit

CLOSEST = 3  # records named when abstaining
# The best-ranked sources also read alone for a candidate of their own (one extra extraction each).
# Off: even with a threshold fitted on its candidates it gains no F1 and abstains less on
# adversarial questions, since the best of several candidates clears a threshold more often, right
# or wrong (docs/results.md, "answers").
PER_SOURCE = 0
# A candidate from free generation too, anchored to the span of a source that supports it: the
# 135M reader finds the right turn more often when it may phrase its answer than when it must copy,
# and the anchored span drops what it added (docs/results.md, "answers").
FREE_CANDIDATE = True


@dataclass(frozen=True)
class Evidence:
    """One recalled record as the answerer sees it."""

    id: str
    text: str
    score: float
    written: float | None = None  # when it was stored (Unix seconds): the date of a record with no stamp


def evidence_of(hits: Iterable[Hit]) -> list[Evidence]:
    """Recalled records, in the order given, as the answerer sees them."""
    return [Evidence(h.record.id, h.text, h.score, h.record.created_at) for h in hits]


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
    candidate: str = ""  # the reader's own words before locating (extraction or free answer), kept when abstaining
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


def generate(r3: R3Mem, texts: list[str], question: str) -> str:
    """The free reader's answer over `texts` (`r3mem.reader`), imported when first called (see `extract`)."""
    from r3mem import reader

    return reader.answer_from_text(r3, "\n".join(texts), question)


def likelihood(r3: R3Mem, texts: list[str], question: str, answer: str) -> tuple[float, float]:
    """`constrained.likelihood`, imported when first called (see `extract`)."""
    from r3mem.answers import constrained

    return constrained.likelihood(r3, texts, question, answer)


def _abstain(evidence: list[Evidence], candidate: str = "", confidence: float = 0.0,
             values: dict[str, float] | None = None) -> GroundedAnswer:
    closest = [Source(e.id, e.text, None) for e in evidence[:CLOSEST]]
    return GroundedAnswer(None, True, confidence, closest, candidate, values or {})


def _locate(candidate: str, texts: list[str], question: str, extracted: bool) -> Grounding | None:
    """Where a candidate is supported: an extraction wholly, a free answer by what a source holds of it."""
    return ground(candidate, texts, question) if extracted else anchor(candidate, texts, question)


def located(r3: R3Mem, question: str, evidence: list[Evidence], per_source: int = PER_SOURCE,
            free: bool = FREE_CANDIDATE) -> list[GroundedAnswer]:
    """Every candidate answer that a source supports, as its span with its features (not yet scored).

    Candidates: the extraction from all sources read together; with `per_source` > 0, the
    extractions from each of the `per_source` best-scored sources read alone (a small reader reading
    several records often copies a distracting one); with `free`, the free reader's answer. The
    features of each are computed against all sources, with the rank of its record's recall
    score. A span found twice is kept once, and one that is no answer (`grounding.admissible`),
    that someone other than the person the question is about said (`speakers.author_named`), or
    that never mentions the asker's own thing the question is about
    (`speakers.own_things_mentioned`) not at all.
    """
    texts = [e.text for e in evidence]
    top_score = max(e.score for e in evidence)
    ranked = sorted((e.score for e in evidence), reverse=True)
    everything = list(range(len(texts)))
    best_first = sorted(everything, key=lambda i: -evidence[i].score)[:per_source] if len(texts) > 1 else []
    groups = [everything] + [[i] for i in best_first]
    candidates = [(extract(r3, [texts[i] for i in group], question), group, True) for group in groups]
    if free:
        candidates.append((generate(r3, texts, question), everything, False))
    out: list[GroundedAnswer] = []
    seen: set[tuple[int, int, int]] = set()
    for candidate, group, extracted in candidates:
        where = _locate(candidate, [texts[i] for i in group], question, extracted) if candidate else None
        if where is None:
            continue
        n = group[where.source]
        if (n, where.start, where.end) in seen or not admissible(question, candidate, texts[n], where.start):
            continue
        if not author_named(question, texts[n], texts):  # asked about one person, said by another
            continue
        if not own_things_mentioned(question, texts[n]):  # "my dog" asked of a record about a cat
            continue
        seen.add((n, where.start, where.end))
        answer = texts[n][where.start : where.end]
        logprob, pmi = likelihood(r3, texts, question, answer)
        values = features(top_score, logprob, pmi, question, texts[n], ranked.index(evidence[n].score))
        span = Source(evidence[n].id, texts[n], (where.start, where.end))
        out.append(GroundedAnswer(answer, False, 0.0, [span], candidate, values))
    return out


def answer_question(r3: R3Mem, question: str, evidence: list[Evidence], calibration: Calibration | None = None,
                    per_source: int = PER_SOURCE, free: bool = FREE_CANDIDATE) -> GroundedAnswer:
    """Answer `question` from `evidence` (in the order the reader should see it), or abstain.

    The most confident of the `located` candidates is answered if it clears the threshold."""
    if not evidence:
        return _abstain([])
    calibration = calibration or load_calibration()
    scored = [replace(c, confidence=calibration.confidence(c.features))
              for c in located(r3, question, evidence, per_source, free)]
    if not scored:
        return _abstain(evidence)
    best = max(scored, key=lambda c: c.confidence)  # the first of equals: the joint extraction
    if best.confidence < calibration.threshold:
        return _abstain(evidence, best.candidate, best.confidence, best.features)
    return dated(best, question, evidence)


def dated(answer: GroundedAnswer, question: str, evidence: list[Evidence]) -> GroundedAnswer:
    """A "when" question's answer as the date its record points to (`when.resolve`), when it has one."""
    source = answer.sources[0]
    if not when.asks_when(question) or source.span is None:
        return answer
    written = next((e.written for e in evidence if e.id == source.id), None)
    resolved = when.resolve(source.text, source.span[0], written)
    if resolved is None:
        return answer
    return replace(answer, answer=resolved.answer, sources=[replace(source, span=(resolved.start, resolved.end))])


def describe(result: Answered) -> str:
    """One plain sentence for people: the answer, or that nothing remembered answers it and what came closest."""
    if not result.abstained:
        return str(result.answer)
    if not result.sources:
        return "Nothing remembered answers this: there are no records to read."
    closest = "; ".join(f"{s.id}: {s.text!r}" for s in result.sources)
    return f"Nothing remembered answers this. The closest records: {closest}"
