"""How likely a grounded answer is right: a small logistic model over what the answer rests on.

Features (`FEATURES`, in this order):

- `top_score`: the first recalled record's fused recall score (an estimate of P(evidence)).
- `logprob`: the answer's mean token log-probability given the sources and the question.
- `pmi`: that minus the same given the question alone; near 0 when the context did not help.
- `question_coverage`: share of the question's content words that the supporting record holds
  (its speaker prefix included).
- `name_coverage`: the same for the question's names (capitalised words), 1 when it has none.
  LoCoMo's adversarial questions mostly ask about one speaker what the other one said.
- `possession_held`: whether the supporting record speaks of what the question says someone has,
  as theirs (`r3mem.answers.speakers`): "My cat is called Luna." does not answer "What is my dog
  called?", nor does Caroline's "my grandma" answer a question about Melanie's grandma.
- `source_rank`: the supporting record's place in recall order (0: the best-scored one). Evidence
  is read in time order, so the best record is not always first; an answer from the fifth-ranked
  record is more often a distractor.

The weights and the abstention threshold live in `calibration.json` beside this module, with
the command that fitted them (`scripts/fit_answer_confidence.py`); docs/results.md has the figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from r3mem.answers.grounding import STOPWORDS, stem, words
from r3mem.answers.speakers import possession_held

FEATURES = ("top_score", "logprob", "pmi", "question_coverage", "name_coverage", "possession_held",
            "source_rank")


def _coverage(needed: list[str], text: str) -> float:
    if not needed:
        return 1.0
    have = {stem(m.group(0)) for m in words(text)}
    return sum(stem(w) in have for w in needed) / len(needed)


def question_coverage(question: str, source: str) -> tuple[float, float]:
    """(content-word coverage, name coverage) of `question` by `source`."""
    tokens = [m.group(0) for m in words(question)]
    content = [w for w in tokens if w.lower() not in STOPWORDS]
    names = [w for w in content if w[0].isupper()]
    return _coverage(content, source), _coverage(names, source)


def features(top_score: float, logprob: float, pmi: float, question: str, source: str,
             source_rank: int) -> dict[str, float]:
    """`FEATURES` of an answer read from `source`."""
    coverage, names = question_coverage(question, source)
    return {"top_score": top_score, "logprob": max(logprob, -20.0), "pmi": max(min(pmi, 20.0), -20.0),
            "question_coverage": coverage, "name_coverage": names,
            "possession_held": possession_held(question, source), "source_rank": source_rank}


@dataclass(frozen=True)
class Calibration:
    """Standardised logistic regression over `features`, and the confidence below which to abstain."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float

    def __post_init__(self) -> None:
        n = len(self.features)
        for name in ("mean", "scale", "weights"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have one value per feature ({n})")
        if not 0 <= self.threshold <= 1:
            raise ValueError("threshold must lie in [0, 1]")

    def confidence(self, values: dict[str, float]) -> float:
        x = (np.array([values[f] for f in self.features]) - np.array(self.mean)) / np.array(self.scale)
        z = float(x @ np.array(self.weights) + self.bias)
        return 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(tuple(data["features"]), tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]),
                   float(data["bias"]), float(data["threshold"]))

    def as_dict(self) -> dict:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "weights": list(self.weights), "bias": self.bias, "threshold": self.threshold}


def read_calibration(path: str) -> Calibration:
    """A calibration written by `scripts/fit_answer_confidence.py`, e.g. one fitted without the
    conversations an evaluation asks about; a missing or malformed file raises ValueError."""
    try:
        return Calibration.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:  # a JSONDecodeError is a ValueError
        raise ValueError(f"cannot read the calibration {path}: {error}") from None


@cache
def load_calibration() -> Calibration:
    """The packaged calibration (`r3mem/answers/calibration.json`), read once per process."""
    text = resources.files("r3mem.answers").joinpath("calibration.json").read_text(encoding="utf-8")
    return Calibration.from_dict(json.loads(text))
