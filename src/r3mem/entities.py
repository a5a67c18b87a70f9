"""Rule-based entity extraction for the lowest level of the r3mem hierarchy.

Entities are the finest unit r3mem learns to reconstruct (sentence -> entities). They are
the facts a memory must not lose: who, when, how many. The extractor is deliberately
rule-based and offline so that training pairs are reproducible bit for bit on any machine,
with no model downloads; it trades recall for determinism and speed. Anything smarter can be
plugged in through the :class:`EntityExtractor` protocol.

Only the Python standard library is used.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Entity", "EntityExtractor", "RuleEntityExtractor", "KINDS"]

KINDS = ("date", "quantity", "name", "number")
"""Entity kinds, in the order that breaks ties between equally long overlapping spans."""


@dataclass(frozen=True)
class Entity:
    """A span of the text handed to the extractor.

    ``start``/``end`` are offsets into that text (for tree nodes: the sentence text), so
    ``text[start:end] == entity.text`` always holds; this keeps entities checkable.
    """

    text: str
    kind: str
    start: int
    end: int


@runtime_checkable
class EntityExtractor(Protocol):
    """Anything that finds entities in a piece of text; kept tiny so it is easy to swap."""

    def extract(self, text: str) -> list[Entity]:
        """Return non-overlapping entities of ``text`` ordered by start offset."""
        ...


# --- dates -------------------------------------------------------------------------------

_MONTH_FULL = (
    "January|February|March|April|May|June|July|August|September|October|November|December"
)
_MONTH = rf"(?:(?:{_MONTH_FULL})\b|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\b\.?)"
_WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_WEEKDAY = rf"(?:{_WEEKDAYS})\b"
_DAY = r"(?<!\d)(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?(?![\d:])"
_YEAR = r"(?<![\d$£€])(?:1\d{3}|20\d{2})(?!\d)"
_AMPM = r"(?:[ap]\.?m\.?|[AP]\.?M\.?)(?!\w)"
_TIME = rf"(?<![\d:])(?:[01]?\d|2[0-3]):[0-5]\d(?:\s?{_AMPM})?"
_AT = rf"(?:{_TIME}\s+on\s+)?(?:{_WEEKDAY},?\s+)?"

_DATE_PATTERNS = [
    re.compile(p)
    for p in (
        rf"{_AT}(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?",
        rf"{_AT}{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?",
        rf"{_AT}{_MONTH},?\s+{_YEAR}",
        r"(?<!\d)\d{4}-\d{1,2}-\d{1,2}(?!\d)",
        r"(?<![\d/])\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})(?![\d/])",
        rf"(?<![\d:])(?:[01]?\d|2[0-3])(?::[0-5]\d)?\s?{_AMPM}(?:\s+on\s+{_WEEKDAY})?",
        # A bare "May" is usually the modal verb, so only the other months stand alone.
        r"\b(?:January|February|March|April|June|July|August|September|October|November"
        r"|December)\b",
        rf"\b{_WEEKDAY}",
        rf"{_YEAR}s?(?![,.]\d|%|\w)",
        # Relative dates matter for conversational memory ("last week", "yesterday").
        r"\b(?:[Yy]esterday|[Tt]oday|[Tt]onight|[Tt]omorrow|(?:[Ll]ast|[Nn]ext|[Tt]his)\s+"
        r"(?:week(?:end)?|month|year|summer|winter|spring|fall|autumn|night|"
        rf"{_WEEKDAYS}))\b",
    )
]

# --- numbers and quantities --------------------------------------------------------------

# Digits with thousands separators / decimals; " @,@ " and " @.@ " are WikiText's tokenised
# forms of "," and ".", which we accept so the tokenised corpus yields the same entities.
_DIGITS = r"(?:\d{1,3}(?:(?:,| @,@ )\d{3})+|\d+)(?:(?:\.| @\.@ )\d+)?"
_UNITS_WORDS = (
    "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    "|sixteen|seventeen|eighteen|nineteen"
)
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_NUMWORD = (
    rf"(?:(?:{_TENS})(?:-(?:one|{_UNITS_WORDS}))?|{_UNITS_WORDS}|a\s+hundred|one\s+hundred"
    r"|hundreds|thousands)\b"
)
_SCALE = r"(?:hundred|thousand|million|billion|trillion)\b"
_UNIT = (
    r"(?:%|percent\b|per\s+cent\b|(?:years?|months?|weeks?|days?|hours?|hrs?|minutes?|mins?"
    r"|seconds?|secs?|decades?|centur(?:y|ies)|km|kilomet(?:er|re)s?|m|met(?:er|re)s?|cm"
    r"|centimet(?:er|re)s?|mm|millimet(?:er|re)s?|miles?|mi|feet|foot|ft|inches|yards?|kg"
    r"|kilograms?|g|grams?|lbs?|pounds?|tons?|tonnes?|ounces?|oz|lit(?:er|re)s?|ml|gallons?"
    r"|mph|km/h|kph|degrees?|°[CF]?|dollars?|euros?|cents?|acres?|hectares?)\b)"
)
_QUANTITY = re.compile(
    rf"(?<![\w.])(?P<cur>[$£€¥]\s?)?(?P<num>{_DIGITS}|{_NUMWORD}|one\b)"
    rf"(?P<scale>\s?{_SCALE})?(?P<unit>\s?(?:{_UNIT}))?",
    re.IGNORECASE,
)
_NUMBER = re.compile(rf"(?<![\w.]){_DIGITS}(?:st|nd|rd|th)?(?![\w])|\b{_NUMWORD}", re.IGNORECASE)

# --- names -------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_](?:\w|['’-](?=\w))*")


def _wordset(words: str) -> frozenset[str]:
    """Whitespace-separated word lists read better than long list literals."""
    return frozenset(words.split())


_TITLES = _wordset("mr mrs ms dr st prof sr jr capt col gen lt sgt rev hon messrs mt mme mlle")
_CONNECTORS = _wordset("of de da di du del der van von la le y bin al")
_STOPWORDS = _wordset(
    """the a an it its it's he she they we you i his her hers their our my your this that
    these those there here in on at of for to from by with as and but or nor so if when while
    after before then now yet also however although though because since until what who whom
    whose which where why how yes no not oh ah hey hi hello wow well yeah yep yup ok okay
    thanks thank please sorry dear sure just all any some each every both either neither
    one such very let do did does is was are were be have has had will would can could may
    might must shall should"""
)
_EDGE_WORDS = _STOPWORDS | _CONNECTORS
_NOT_NAME = frozenset(_MONTH_FULL.lower().split("|")) | frozenset(_WEEKDAYS.lower().split("|"))
_OPENERS = "\"'“‘«([{<-*•–—¿¡ \t\r\n\f\v"
_SENTENCE_ENDERS = ".!?:;…。！？"


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    text: str


def _is_cap(tok: _Tok) -> bool:
    """Capitalised words start a name, except "I"-forms and month/weekday names (dates)."""
    t = tok.text
    if not t[0].isupper() or t == "I" or t[:2] in ("I'", "I’"):
        return False
    return t.lower() not in _NOT_NAME


def _linked(text: str, a: _Tok, b: _Tok) -> bool:
    """Two tokens belong to one name only if separated by plain spacing (or a title's dot)."""
    gap = text[a.end : b.start]
    if gap.startswith("."):
        is_title = a.text.lower() in _TITLES or (len(a.text) == 1 and a.text.isupper())
        if not is_title:
            return False
        gap = gap[1:]
    return gap == "" or (len(gap) <= 3 and gap.isspace() and gap.count("\n") <= 1)


def _at_sentence_start(text: str, pos: int) -> bool:
    """True when only openers/whitespace separate ``pos`` from a sentence boundary."""
    before = text[max(0, pos - 64) : pos].rstrip(_OPENERS)
    return not before or before[-1] in _SENTENCE_ENDERS


def _trim(run: list[_Tok]) -> list[_Tok]:
    """Drop function words at the run's edges ("Hey Mel" -> "Mel", "The NFL" -> "NFL")."""
    lo, hi = 0, len(run)
    while lo < hi and run[lo].text.lower() in _STOPWORDS:
        lo += 1
    while hi > lo and run[hi - 1].text.lower() in _EDGE_WORDS:
        hi -= 1
    return run[lo:hi]


class RuleEntityExtractor:
    """Regex/rule based :class:`EntityExtractor`: dates, quantities, names, numbers.

    Overlapping candidates are resolved by keeping the longest span (ties go to the more
    specific kind, in :data:`KINDS` order), because "February 7, 2016" is one fact, not a
    month plus two numbers. Output is sorted by start offset so it is deterministic.
    """

    def extract(self, text: str) -> list[Entity]:
        """Return non-overlapping entities of ``text`` ordered by start offset."""
        if not text or text.isspace():
            return []
        candidates = self._dates(text) + self._quantities(text)
        candidates += self._names(text) + self._numbers(text)
        return _resolve(candidates)

    @staticmethod
    def _dates(text: str) -> list[Entity]:
        return [
            Entity(m.group(), "date", m.start(), m.end())
            for pattern in _DATE_PATTERNS
            for m in pattern.finditer(text)
        ]

    @staticmethod
    def _quantities(text: str) -> list[Entity]:
        """Numbers count as quantities only with a currency, a scale word or a unit."""
        out = []
        for m in _QUANTITY.finditer(text):
            if not (m.group("cur") or m.group("scale") or m.group("unit")):
                continue
            if m.group("num").lower() == "one" and not m.group("unit"):
                continue
            out.append(Entity(m.group(), "quantity", m.start(), m.end()))
        return out

    @staticmethod
    def _numbers(text: str) -> list[Entity]:
        return [Entity(m.group(), "number", m.start(), m.end()) for m in _NUMBER.finditer(text)]

    @staticmethod
    def _names(text: str) -> list[Entity]:
        tokens = [_Tok(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        out: list[Entity] = []
        i = 0
        while i < len(tokens):
            if not _is_cap(tokens[i]):
                i += 1
                continue
            j = _extend_run(text, tokens, i)
            entity = _name_entity(text, tokens, i, j)
            if entity is not None:
                out.append(entity)
            i = j + 1
        return out


def _extend_run(text: str, tokens: list[_Tok], i: int) -> int:
    """Index of the last token of the capitalised run starting at ``i``.

    Lower-case connectors ("Bank of England") join only when a capitalised word follows, and
    a number of at most three digits may end a run of two or more words ("Super Bowl 50";
    four digits would swallow years, as in "Jane Austen 1816").
    """
    j = i
    while j + 1 < len(tokens) and _linked(text, tokens[j], tokens[j + 1]):
        nxt = tokens[j + 1]
        if _is_cap(nxt):
            j += 1
        elif (
            nxt.text in _CONNECTORS
            and j + 2 < len(tokens)
            and _linked(text, nxt, tokens[j + 2])
            and _is_cap(tokens[j + 2])
        ):
            j += 2
        elif _trailing_number(text, nxt) and len(_trim(tokens[i : j + 1])) >= 2:
            return j + 1
        else:
            break
    return j


def _trailing_number(text: str, tok: _Tok) -> bool:
    """A short standalone number, not the start of a score, range, time or decimal."""
    after = text[tok.end : tok.end + 2]
    if after[:1] in ("–", "—", "-", "/", ":") or (after[:1] in ".," and after[1:].isdigit()):
        return False
    return tok.text.isdigit() and len(tok.text) <= 3


def _name_entity(text: str, tokens: list[_Tok], i: int, j: int) -> Entity | None:
    """Turn tokens[i..j] into a name, or None when it is only a capitalised function word."""
    run = _trim(tokens[i : j + 1])
    if not run:
        return None
    start, end = run[0].start, run[-1].end
    if text[end - 2 : end] in ("'s", "’s"):
        end -= 2
    if len(run) == 1:
        word = run[0].text
        acronym = sum(c.isupper() for c in word) >= 2
        # A lone capitalised word at a sentence start is just the first word of a sentence.
        if not acronym and _at_sentence_start(text, start):
            return None
    if end <= start:
        return None
    return Entity(text[start:end], "name", start, end)


def _resolve(candidates: list[Entity]) -> list[Entity]:
    """Greedy longest-first overlap removal; ties go to the more specific kind."""
    rank = {kind: r for r, kind in enumerate(KINDS)}
    ordered = sorted(
        set(candidates), key=lambda e: (-(e.end - e.start), rank[e.kind], e.start, e.text)
    )
    starts: list[int] = []
    kept: list[Entity] = []
    for ent in ordered:
        if ent.end <= ent.start:
            continue
        k = bisect.bisect_left(starts, ent.start)
        if k > 0 and kept[k - 1].end > ent.start:
            continue
        if k < len(kept) and kept[k].start < ent.end:
            continue
        starts.insert(k, ent.start)
        kept.insert(k, ent)
    return kept
