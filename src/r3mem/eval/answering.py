"""The answer columns of `r3mem eval locomo` and `r3mem eval qa`: grounded answers beside free generation.

`r3mem` answers as `MemoryStore.ask` does (`r3mem.answers`: extracted, grounded, abstaining
below the packaged calibration's threshold); every other method's reader generates freely
(`r3mem.reader`). A free answer counts as an abstention when it says it does not know (the
`DECLINES` pattern). F1 and exact match score the text as given: an abstention's empty answer
scores 0.

Per category the rows carry `f1`, `exact_match` and `abstained` (the share of answered
questions abstained on): on category 5 (adversarial) that share is the one to raise, on
categories 1-4 it is the share wrongly abstained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r3mem import reader
from r3mem.answers import answer_question, evidence_of
from r3mem.answers.confidence import Calibration
from r3mem.api import R3Mem
from r3mem.eval.metrics import squad_exact_match, squad_f1
from r3mem.store import Hit

GROUNDED = ("r3mem",)
DECLINES = re.compile(r"\b(not (mentioned|stated|specified|known|sure|clear)|(don't|do not|doesn't|does not) "
                      r"(know|say|mention)|no (information|mention)|unknown|cannot (be )?(determined|answer))\b",
                      re.IGNORECASE)


@dataclass(frozen=True)
class Scored:
    prediction: str
    abstained: bool
    f1: float
    exact_match: float


def answer(r3: R3Mem, method: str, question: str, references: list[str], context: str, hits: list[Hit],
           calibration: Calibration | None = None) -> Scored:
    """One question answered the way `method` answers; `hits` are the recalled records in the order
    the reader sees them (`eval locomo`: time order; `eval qa`: best first, as `MemoryStore.ask`);
    `calibration` replaces the packaged one for grounded answers."""
    if method in GROUNDED:
        got = answer_question(r3, question, evidence_of(hits), calibration)
        prediction, abstained = got.answer or "", got.abstained
    else:
        prediction = reader.answer_from_text(r3, context, question)
        abstained = not prediction.strip() or DECLINES.search(prediction) is not None
    return Scored(prediction, abstained, squad_f1(prediction, references), squad_exact_match(prediction, references))
