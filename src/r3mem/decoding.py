"""How a memory is expanded back into tokens: the beam width and its bounds.

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


def check_beams(beams: object) -> int:
    """The beam count, or InvalidInput before any work is done."""
    if isinstance(beams, bool) or not isinstance(beams, int) or not 1 <= beams <= MAX_BEAMS:
        raise InvalidInput(f"beams must be an integer from 1 to {MAX_BEAMS}, got {beams!r}")
    return beams


def describe(beams: int) -> str:
    """How reconstructions were decoded, in words for cards and result pages."""
    return "greedily" if beams == 1 else f"by {beams}-beam search"
