"""Answers to "when" questions: the date a record's own words point to, read against its date.

People say when something happened relative to when they say it ("I went to a support group
yesterday"), and an assistant asked weeks later must answer with a date, not with "yesterday".
A record's date is its leading stamp when it has one (`[1:56 pm on 8 May, 2023] ...`, as
conversation logs and `r3mem eval locomo` write them), else the time it was stored. The answer is
that date moved by the relative expression nearest the supporting span ("7 May 2023"), or said
relative to it where the words are no more precise ("the Friday before 15 July 2023"), and its
span is the expression itself, so the reader can check it. A record with neither gives nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

QUESTION = re.compile(r"^\s*(when|what (day|date|month|year|time))\b", re.IGNORECASE)
STAMP = re.compile(r"^\s*\[(?:[^\]]*?\bon\s+)?(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})\s*\]")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SHORT_DAYS = {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4, "sat": 5, "sun": 6}
_COUNTS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "a couple of": 2, "couple of": 2}
_DAY_WORD = "|".join([*_DAYS, *_SHORT_DAYS])
_COUNT_WORD = r"\d+|a couple of|couple of|one|two|three|four|five|a"


def _day(d: date) -> str:
    return f"{d.day} {d:%B} {d.year}"


def _month(d: date, shift: int) -> str:
    index = d.year * 12 + d.month - 1 + shift
    return f"{date(index // 12, index % 12 + 1, 1):%B} {index // 12}"


def _weekday(name: str) -> str:
    name = name.lower()
    return _DAYS[_SHORT_DAYS[name]] if name in _SHORT_DAYS else name


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _COUNTS[word.lower()]


# (pattern, answer given the record's date and the match), most specific first.
_RULES: list[tuple[re.Pattern[str], Callable[[date, re.Match[str]], str]]] = [
    (re.compile(r"\b(yesterday|last night)\b", re.I), lambda d, m: _day(d - timedelta(days=1))),
    (re.compile(r"\b(today|tonight|this morning|this afternoon|this evening)\b", re.I), lambda d, m: _day(d)),
    (re.compile(r"\btomorrow\b", re.I), lambda d, m: _day(d + timedelta(days=1))),
    (re.compile(rf"\b(?:last|this past|past) ({_DAY_WORD})\b\.?", re.I),
     lambda d, m: f"the {_weekday(m.group(1)).capitalize()} before {_day(d)}"),
    (re.compile(rf"\b({_COUNT_WORD}) (weekend|week|month|year)s? ago\b", re.I),
     lambda d, m: _ago(d, m.group(1), m.group(2).lower())),
    (re.compile(r"\b(?:last|this past|past) (weekend|week)\b", re.I),
     lambda d, m: f"the {m.group(1).lower()} before {_day(d)}"),
    (re.compile(r"\bthis (weekend|week)\b", re.I), lambda d, m: f"the {m.group(1).lower()} of {_day(d)}"),
    (re.compile(r"\blast month\b", re.I), lambda d, m: _month(d, -1)),
    (re.compile(r"\bthis month\b", re.I), lambda d, m: _month(d, 0)),
    (re.compile(r"\bnext month\b", re.I), lambda d, m: _month(d, 1)),
    (re.compile(r"\blast year\b", re.I), lambda d, m: str(d.year - 1)),
    (re.compile(r"\bthis year\b", re.I), lambda d, m: str(d.year)),
    (re.compile(r"\bnext year\b", re.I), lambda d, m: str(d.year + 1)),
]


def _ago(d: date, count: str, unit: str) -> str:
    """"two weekends ago" said on d: "two weekends before d"; months and years counted back."""
    n = _count(count)
    if unit == "year":
        return str(d.year - n)
    if unit == "month":
        return _month(d, -n)
    return f"the {unit} before {_day(d)}" if n == 1 else f"{count.lower()} {unit}s before {_day(d)}"


@dataclass(frozen=True)
class Dated:
    """The answer, and the characters of the record it was read from (the expression, or the stamp)."""

    answer: str
    start: int
    end: int


def asks_when(question: str) -> bool:
    return QUESTION.search(question) is not None


def record_date(text: str, written: float | None = None) -> tuple[date, tuple[int, int]] | None:
    """The record's date and the span it was read from: its stamp, else `written` (Unix seconds, no span)."""
    stamp = STAMP.match(text)
    if stamp:
        try:
            when = datetime.strptime(" ".join(stamp.groups()), "%d %B %Y").date()
        except ValueError:
            when = None
        if when is not None:
            return when, (stamp.start(1), stamp.end(3))
    if written is None:
        return None
    return datetime.fromtimestamp(written).date(), (0, 0)


def resolve(text: str, near: int, written: float | None = None) -> Dated | None:
    """The date `text` says something happened, from the relative expression nearest character `near`
    (the supporting span); the record's stamped date when it holds none; None when it has neither."""
    dated = record_date(text, written)
    if dated is None:
        return None
    when, (stamp_start, stamp_end) = dated
    found = [(abs(m.start() - near), m, rule) for pattern, rule in _RULES for m in pattern.finditer(text)
             if m.start() >= stamp_end]
    if not found:  # the record's own date, which only a stamp can say
        return Dated(_day(when), stamp_start, stamp_end) if stamp_end else None
    _, match, rule = min(found, key=lambda f: f[0])
    return Dated(rule(when, match), match.start(), match.end())
