"""How a memory is expanded back into tokens: one `Decoding` value, its defaults and its bounds.

The value travels unchanged from the command line, the HTTP API and the store down to the decoder
(`r3mem.decode.beam`, `r3mem.decode.cycle_decoding`), like transformers' `GenerationConfig`. Kept free
of torch so the command line can check a setting before a model loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from r3mem.errors import InvalidInput

# Beam search by default: a reconstruction often drops or repeats one early token, and every
# position after it then disagrees with the source; keeping the most likely continuations avoids many
# of those slips, and pool guidance charges a chunk only as it is written, so a beam must hold a right
# path through a whole chunk (4 tokens at ratio 4, 8 at ratio 8) to be paid for it. 16 beams, chosen on
# 16 training windows (`scripts/probe_pool_guidance.py`, guidance 4, spread 0.25): position-wise
# accuracy at ratio 8 was 0.608 / 0.713 / 0.732 with 8 / 16 / 32 beams (61 / 126 / 286 s), at ratio 4
# 0.907 / 0.932 with 8 / 16 (61 / 136 s); then checked once on the 128 held-out floor segments (the
# card's reconstruct-floors eval). 8 beams, the default from ea94102, gave 0.919 / 0.520 there at
# ratio 4 / 8 and 4 beams, the default before, 0.890 / 0.399. Fewer beams answer sooner (1 is greedy).
DEFAULT_BEAMS = 16
MAX_BEAMS = 16
# Samples drawn beside the beams for cycle-consistent selection (`r3mem.decode.cycle_decoding`): 0 keeps the
# top beam. Each sample costs about what one greedy expansion does, so the bound keeps one request
# from holding a worker for minutes.
DEFAULT_SAMPLES = 0
MAX_SAMPLES = 32
# Sampling temperature of those extra candidates: the setting the rerank probe on training text used
# (scripts/probe_memory_rerank.py); other temperatures have not been measured.
SAMPLE_TEMPERATURE = 0.7
# How much worse (mean token NLL under the memory, nats) than the likeliest candidate a candidate may
# read and still be chosen for its nearer memory. Chosen on 16 ratio-4 windows of training text
# (`scripts/probe_memory_rerank.py`, 4 beams + 8 samples): position-wise accuracy / BLEU-4 were
# 0.369 / 0.749 for the top beam, 0.481 / 0.701 with no margin limit, 0.416 / 0.748 at 0.05 and
# 0.431 / 0.744 at 0.1, where aligned accuracy was 0.887 against the top beam's 0.882.
NLL_MARGIN = 0.1
# Pool guidance (`r3mem.decode.pool_guidance`): at each chunk's last token, beam scores lose this many nats per
# unit of squared distance (pooled units) between the chunk's written tokens and its memory slot. 0
# turns it off. Chosen on 8 windows of training text at ratios 4 and 8, 4 beams
# (`scripts/probe_pool_guidance.py`): position-wise accuracy at ratio 4 was 0.28, 0.68, 0.79, 0.81, 0.81,
# 0.82 at strengths 0, 0.5, 1, 2, 4, 8, and at ratio 8 0.11, 0.20, 0.26, 0.30 at 0, 1, 2, 4. Guidance also
# charges tokens outside each chunk's recovered bag (`DEFAULT_BAG`), so 0 turns both off.
DEFAULT_GUIDANCE = 4.0
MAX_GUIDANCE = 64.0
# The share of each chunk's pool-guidance charge paid as the chunk is written rather than at its last
# token (`r3mem.decode.pool_guidance`): long chunks (ratio 8) need it so a beam is paid for staying in
# step before the chunk ends. Chosen on training windows, position-wise 0.403 / 0.515 at ratio 8 with
# 0 / 0.25 (docs/decoding.md, `scripts/probe_pool_guidance.py --spreads 0,0.25`).
DEFAULT_SPREAD = 0.25
# Nats charged, under guidance, to a token its chunk's recovered bag of tokens (`r3mem.decode.slot_bags`)
# does not hold: on 16 training windows at ratio 8, position-wise 0.713 without it, 0.782 at 4, 0.722 at 6
# (docs/decoding.md, `scripts/probe_pool_guidance.py --bags`). 0 turns the bag off.
DEFAULT_BAG = 4.0
# Already far past what any beam pays to keep a word; a bound keeps the charge a finite number.
MAX_BAG = 64.0
GUIDANCE_HELP = (f"pool guidance: how strongly each chunk of an expansion is held to the tokens its memory slot "
                 f"pools, which keeps it in step with its source (default {DEFAULT_GUIDANCE:g}; 0 turns it off; "
                 f"at most {MAX_GUIDANCE:g})")


@dataclass(frozen=True)
class Decoding:
    """How a memory is expanded: every option the decoder reads, checked once, when made.

    Invalid values raise `InvalidInput` naming the field, before any model work is done.
    """

    beams: int = DEFAULT_BEAMS  # beam width; 1 is greedy
    samples: int = DEFAULT_SAMPLES  # extra samples for cycle-consistent selection; 0 keeps the top beam
    guidance: float = DEFAULT_GUIDANCE  # pool-guidance strength; 0 turns guidance (and the bag) off
    spread: float = DEFAULT_SPREAD  # share of a chunk's guidance charge paid as it is written
    bag: float = DEFAULT_BAG  # nats charged to a token outside its chunk's recovered bag; 0: no bag

    def __post_init__(self) -> None:
        _integer("beams", self.beams, 1, MAX_BEAMS)
        _integer("samples", self.samples, 0, MAX_SAMPLES)
        # floats are stored as floats, so equal settings compare (and hash) equal however spelt
        object.__setattr__(self, "guidance", _number("guidance", self.guidance, 0.0, MAX_GUIDANCE))
        object.__setattr__(self, "spread", _number("spread", self.spread, 0.0, 1.0))
        object.__setattr__(self, "bag", _number("bag", self.bag, 0.0, MAX_BAG))

    def describe(self) -> str:
        """How reconstructions were decoded, in words for cards and result pages."""
        beams, samples, guidance, spread, bag = self.beams, self.samples, self.guidance, self.spread, self.bag
        plain = "greedily" if beams == 1 else f"by {beams}-beam search"
        if guidance:
            paid = f"; {spread:g} of each chunk's charge paid as it is written" if spread else ""
            if bag:
                paid += f"; a token outside its chunk's recovered bag charged {bag:g} nats"
            plain += f" with pool guidance {guidance:g} (each chunk held to the tokens its memory slot pools{paid})"
        if not samples:
            return plain
        drawn = "the greedy expansion" if beams == 1 else f"the {beams} beams"
        if guidance:
            drawn += f", pool-guided ({guidance:g}),"
        return (f"by choosing, among {drawn} and {samples} samples at temperature {SAMPLE_TEMPERATURE}, "
                "the candidate that re-compresses nearest the stored memory of those whose mean token NLL is "
                f"within {NLL_MARGIN:g} nats of the likeliest one's")

    def record(self) -> dict[str, int | float]:
        """The keys an evaluation result records this decoding under (`r3mem eval reconstruct`'s JSON);
        spread and bag only count under guidance, so they are 0 without it."""
        return {"beams": self.beams, "cycle_samples": self.samples, "guidance": self.guidance,
                "guidance_spread": self.spread if self.guidance else 0.0,
                "guidance_bag": self.bag if self.guidance else 0.0}

    @classmethod
    def from_record(cls, result: Mapping[str, Any]) -> Decoding:
        """The decoding a result was recorded under (`record`). A key it lacks is a setting that did not
        exist when it was written: no beams then meant greedy, and no other option was on."""
        return cls(beams=result.get("beams") or 1, samples=result.get("cycle_samples") or 0,
                   guidance=result.get("guidance") or 0.0, spread=result.get("guidance_spread") or 0.0,
                   bag=result.get("guidance_bag") or 0.0)


def _integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:  # NaN fails too
        raise InvalidInput(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


DEFAULT_DECODING = Decoding()
