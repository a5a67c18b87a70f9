"""How a memory is expanded back into tokens: the beam width, the extra samples, and their bounds.

Kept free of torch so the command line can show and check the setting before a model loads.
"""

from __future__ import annotations

from r3mem.errors import InvalidInput

# Beam search by default: a reconstruction often drops or repeats one early token, and every
# position after it then disagrees with the source; keeping the 4 most likely continuations
# avoids many of those slips for about 1.6 times the time of greedy decoding (docs/results.md sets
# the "reconstruct" table, 4 beams, beside "reconstruct-greedy" on the same segments).
# 1 is greedy, for when speed matters more than fidelity.
DEFAULT_BEAMS = 4
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


def describe(beams: int, samples: int = 0) -> str:
    """How reconstructions were decoded, in words for cards and result pages."""
    plain = "greedily" if beams == 1 else f"by {beams}-beam search"
    if not samples:
        return plain
    drawn = "the greedy expansion" if beams == 1 else f"the {beams} beams"
    return (f"by choosing, among {drawn} and {samples} samples at temperature {SAMPLE_TEMPERATURE}, "
            "the candidate that re-compresses nearest the stored memory of those whose mean token NLL is "
            f"within {NLL_MARGIN:g} nats of the likeliest one's")
