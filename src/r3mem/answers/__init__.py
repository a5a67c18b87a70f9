"""Grounded answers: extracted from recalled records, located in one, scored, or abstained on."""

from r3mem.answers.grounded import Evidence, GroundedAnswer, Source, answer_question, describe, evidence_of

__all__ = ["Evidence", "GroundedAnswer", "Source", "answer_question", "describe", "evidence_of"]
