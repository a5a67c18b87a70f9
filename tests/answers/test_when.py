"""'When' questions are answered with the date a record's words point to, read against its date."""

from __future__ import annotations

from datetime import datetime

import pytest

from r3mem.answers import Evidence, grounded, phrasing, when
from r3mem.answers.confidence import FEATURES, Calibration

STAMPED = "[1:56 pm on 8 May, 2023] Caroline: I went to a LGBTQ support group yesterday and it was so powerful."


@pytest.mark.parametrize(("said", "answer"), [
    ("I went to a support group yesterday.", "7 May 2023"),
    ("Last Fri I finally took my kids to a pottery workshop.", "the Friday before 8 May 2023"),
    ("I joined a mentorship program last weekend.", "the weekend before 8 May 2023"),
    ("We went camping two weekends ago.", "two weekends before 8 May 2023"),
    ("I started hitting the gym last week.", "the week before 8 May 2023"),
    ("We're putting on a talent show next month.", "June 2023"),
    ("I went to a conference last month.", "April 2023"),
    ("We had a blast last year at the Pride fest.", "2022"),
    ("The opening night is tomorrow!", "9 May 2023"),
    ("My online clothes store is open!", "8 May 2023"),  # no expression: the stamp's own date
])
def test_resolves_the_expression_against_the_stamp(said, answer):
    text = f"[1:56 pm on 8 May, 2023] Gina: {said}"
    got = when.resolve(text, text.index(":", 20))
    assert got is not None and got.answer == answer


def test_the_span_is_the_expression_and_the_nearest_one_wins():
    text = "[10:00 am on 3 July, 2023] Jon: Yesterday was busy. I signed up for pottery last week."
    got = when.resolve(text, text.index("pottery"))
    assert (got.answer, text[got.start:got.end]) == ("the week before 3 July 2023", "last week")
    first = when.resolve(text, text.index("busy"))
    assert (first.answer, text[first.start:first.end]) == ("2 July 2023", "Yesterday")


def test_a_record_without_stamp_is_dated_by_when_it_was_stored():
    written = datetime(2026, 12, 7, 12).timestamp()
    assert when.resolve("I went to the dentist yesterday.", 0, written).answer == "6 December 2026"
    assert when.resolve("I went to the dentist.", 0, written) is None, "no words and no stamp: no date"
    assert when.resolve("I went to the dentist yesterday.", 0) is None


def test_asks_when_only_for_time_questions():
    assert when.asks_when("When did Caroline go to the support group?")
    assert when.asks_when("What year did Jon lose his job?")
    assert not when.asks_when("Where do I live?") and not when.asks_when("What is my dog called?")


def test_a_when_answer_is_the_date_with_the_words_as_its_span(monkeypatch):
    monkeypatch.setattr(grounded, "extract", lambda r3, texts, question: "Caroline went yesterday")
    monkeypatch.setattr(grounded, "generate", lambda r3, texts, question: "")
    monkeypatch.setattr(grounded, "likelihood", lambda r3, t, q, a: (-1.0, 1.0))
    always = Calibration(FEATURES, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), (0.0,) * len(FEATURES), 0.0, 0.0)
    got = grounded.answer_question(None, "When did Caroline go to the LGBTQ support group?",  # type: ignore[arg-type]
                                   [Evidence("r1", STAMPED, 0.5)], always)
    assert got.answer == "7 May 2023" and STAMPED[slice(*got.sources[0].span)] == "yesterday"
    assert phrasing.reply(got).startswith("7 May 2023")
    other = grounded.answer_question(None, "Who went to the LGBTQ support group?",  # type: ignore[arg-type]
                                     [Evidence("r1", STAMPED, 0.5)], always)
    assert other.answer == "Caroline: I went to a LGBTQ support group yesterday", "only a 'when' question is dated"


def test_a_restated_question_or_a_date_stamp_is_no_answer():
    from r3mem.answers.grounding import admissible

    turn = "[1:14 pm on 25 May, 2023] Melanie: I ran a charity race for mental health."
    assert not admissible("What book did Caroline recommend?", "What book did Caroline recommend?", turn, 40)
    assert admissible("Did Jon prefer tea or coffee?", "coffee", "Jon: coffee, always", 5), "a choice repeats an option"
    assert not admissible("What did Melanie run for?", "1:14 pm", turn, 1), "the stamp says when, not what"
    assert admissible("When did Melanie run a race?", "1:14 pm on 25 May, 2023", turn, 1)
    assert admissible("What did Melanie run for?", "mental health", turn, turn.index("mental"))
