"""How a memory is expanded back into tokens: the beam width, the extra samples, and their bounds.

Kept free of torch so the command line can show and check the setting before a model loads.
"""

from __future__ import annotations

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
# Samples drawn beside the beams for cycle-consistent selection (`r3mem.cycle_decoding`): 0 keeps the
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
# Pool guidance (`r3mem.pool_guidance`): at each chunk's last token, beam scores lose this many nats per
# unit of squared distance (pooled units) between the chunk's written tokens and its memory slot. 0
# turns it off. Chosen on 8 windows of training text at ratios 4 and 8, 4 beams
# (`scripts/probe_pool_guidance.py`): position-wise accuracy at ratio 4 was 0.28, 0.68, 0.79, 0.81, 0.81,
# 0.82 at strengths 0, 0.5, 1, 2, 4, 8, and at ratio 8 0.11, 0.20, 0.26, 0.30 at 0, 1, 2, 4. Guidance also
# charges tokens outside each chunk's recovered bag (`r3mem.pool_guidance.DEFAULT_BAG`), so 0 turns both off.
DEFAULT_GUIDANCE = 4.0
MAX_GUIDANCE = 64.0
GUIDANCE_HELP = (f"pool guidance: how strongly each chunk of an expansion is held to the tokens its memory slot "
                 f"pools, which keeps it in step with its source (default {DEFAULT_GUIDANCE:g}; 0 turns it off; "
                 f"at most {MAX_GUIDANCE:g})")


def check_beams(beams: object) -> int:
    """The beam count, or InvalidInput before any work is done."""
    if isinstance(beams, bool) or not isinstance(beams, int) or not 1 <= beams <= MAX_BEAMS:
        raise InvalidInput(f"beams must be an integer from 1 to {MAX_BEAMS}, got {beams!r}")
    return beams


def check_samples(samples: object) -> int:
    """The sample count, or InvalidInput before any work is done."""
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= MAX_SAMPLES:
        raise InvalidInput(f"samples must be an integer from 0 to {MAX_SAMPLES}, got {samples!r}")
    return samples


def check_guidance(guidance: object) -> float:
    """The pool-guidance strength as a float, or InvalidInput before any work is done."""
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance <= MAX_GUIDANCE:
        raise InvalidInput(f"guidance must be a number from 0 to {MAX_GUIDANCE:g}, got {guidance!r}")
    return float(guidance)


def describe(beams: int, samples: int = 0, guidance: float = 0.0, spread: float = 0.0, bag: float = 0.0) -> str:
    """How reconstructions were decoded, in words for cards and result pages."""
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
