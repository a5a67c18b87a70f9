"""A fake grounded answerer for the eval tests: the gold when a recalled record holds it, else an abstention."""

from r3mem.answers import GroundedAnswer, Source


def answer_if_held(gold: str, evidence) -> GroundedAnswer:
    holding = [e for e in evidence if gold in e.text]
    if not holding:
        return GroundedAnswer(None, True, 0.1, [Source(e.id, e.text, None) for e in evidence])
    start = holding[0].text.index(gold)
    return GroundedAnswer(gold, False, 0.9, [Source(holding[0].id, holding[0].text, (start, start + len(gold)))])
