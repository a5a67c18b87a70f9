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
# Sampling temperature of those extra candidates; a probe on training text chose 0.7 (below it the
# samples repeat the beams, above it they drift from the memory).
SAMPLE_TEMPERATURE = 0.7


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
            "the candidate that re-compresses nearest the stored memory")
