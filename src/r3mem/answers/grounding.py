"""Grounding: the record, and the character span in it, that an answer was read from.

An extracted answer is grounded in a source when the source holds it verbatim (case-insensitive,
on word boundaries), or else when one window of the source holds all its content words that the
question does not; the shortest such window over all sources is the span, and its text is the
answer (`ground`). A freely generated answer is anchored instead (`anchor`): it may add words no
source holds, so its span is the shortest window of the source holding the most of its words.
An answer with no content word ("the", "yes") is never grounded: any text would hold it, and a
reading that only restates the question, or a span in a record's date stamp for a question that
does not ask when, is no answer at all (`admissible`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r3mem.answers import when

_WORD = re.compile(r"\w+")
_EDGE = " \t\n.,;:!?\"'()[]"
_STOP = """
a an the and or but if of to in on at by for with from about as into onto over under than then so
is are was were be been being am do does did done has have had having will would shall should can could
might must i me my mine myself you your yours yourself he him his she her hers it its we us our
they them their this that these those there here what which who whom whose when where why how
not no nor yes too very just also any some all both each more most other such own same only
up down out off again once s t ll ve re d m o
"""
STOPWORDS = frozenset(_STOP.split())


@dataclass(frozen=True)
class Grounding:
    """`source` indexes the texts given to `ground`; `start:end` is the span in that text."""

    source: int
    start: int
    end: int


def words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text))


def stem(word: str) -> str:
    """A crude stem, so "realized" meets "realize" and "dogs" meets "dog"."""
    word = word.lower().removesuffix("'s")
    return re.sub(r"(ing|ed|es|s)$", "", word)[:6] if len(word) > 4 else word


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (stop words and the like left out), in order."""
    return [w for w in (m.group(0).lower() for m in words(text)) if w not in STOPWORDS]


def _verbatim(answer: str, texts: list[str]) -> Grounding | None:
    pattern = re.compile(r"(?<!\w)" + re.escape(answer) + r"(?!\w)", re.IGNORECASE)
    for n, text in enumerate(texts):
        found = pattern.search(text)
        if found:
            return Grounding(n, found.start(), found.end())
    return None


def _shortest_window(needed: set[str], text: str) -> tuple[int, int] | None:
    """Character span of the fewest consecutive words of `text` that hold every word in `needed`."""
    tokens = words(text)
    best: tuple[int, int] | None = None
    count: dict[str, int] = {}
    left = 0
    for right, m in enumerate(tokens):
        w = m.group(0).lower()
        if w in needed:
            count[w] = count.get(w, 0) + 1
        while len(count) == len(needed):
            if best is None or right - left < best[1] - best[0]:
                best = (left, right)
            lw = tokens[left].group(0).lower()
            if lw in count:
                count[lw] -= 1
                if not count[lw]:
                    del count[lw]
            left += 1
    return None if best is None else (tokens[best[0]].start(), tokens[best[1]].end())


def _new_words(answer: str, question: str) -> set[str]:
    """The answer's content words the question does not already hold (all of them if it holds every one)."""
    own = set(content_words(answer.strip(_EDGE)))
    return own - set(content_words(question)) or own


def anchor(answer: str, texts: list[str], question: str = "") -> Grounding | None:
    """The span of one source holding the most of the answer's new content words.

    A 135M reader generating freely often finds the right turn and then restates or embroiders it
    ("Rex is a famous British dog named Lionel"): the span keeps only what a source says ("Rex").
    Ties go to the shorter span, then to the earlier source."""
    needed = _new_words(answer, question)
    best: tuple[tuple[int, int], Grounding] | None = None
    for n, text in enumerate(texts):
        held = needed & {m.group(0).lower() for m in words(text)}
        span = _shortest_window(held, text) if held else None
        if span is None:
            continue
        rank = (len(held), span[0] - span[1])
        if best is None or rank > best[0]:
            best = (rank, Grounding(n, *span))
    return None if best is None else best[1]


def ground(answer: str, texts: list[str], question: str = "") -> Grounding | None:
    """Where in `texts` the answer is supported, or None when nothing holds it.

    Words the question already holds are left out first: a small reader often restates the
    question ("My dog is called Rex." for "What is my dog called?"), and the span is then "Rex".
    """
    answer = answer.strip(_EDGE)
    own = set(content_words(answer))
    if not own:
        return None
    needed = _new_words(answer, question)
    if needed == own:
        verbatim = _verbatim(answer, texts)
        if verbatim is not None:
            return verbatim
    spans = [(n, span) for n, text in enumerate(texts) if (span := _shortest_window(needed, text)) is not None]
    if not spans:
        return None
    n, (start, end) = min(spans, key=lambda s: s[1][1] - s[1][0])
    return Grounding(n, start, end)


def says_something_new(reading: str, question: str) -> bool:
    """Whether `reading` holds a content word the question does not, or picks between its options."""
    fresh = set(content_words(reading.strip(_EDGE))) - set(content_words(question))
    return bool(fresh) or re.search(r"\bor\b", question, re.IGNORECASE) is not None


def admissible(question: str, reading: str, source: str, start: int) -> bool:
    """Whether a reading located at character `start` of `source` can answer `question`: a reader
    that restates the question has not answered it, and a record's date stamp says when it was
    said, which answers only a question asking when."""
    if not says_something_new(reading, question):
        return False
    stamp = when.record_date(source)
    return stamp is None or when.asks_when(question) or start >= stamp[1][1]
