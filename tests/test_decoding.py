"""The beam-count check shared by the API, the CLI and the evaluation harness."""

import pytest

from r3mem.decoding import DEFAULT_BEAMS, MAX_BEAMS, check_beams
from r3mem.errors import InvalidInput


@pytest.mark.parametrize("beams", [1, DEFAULT_BEAMS, MAX_BEAMS])
def test_counts_in_range_pass_through(beams):
    assert check_beams(beams) == beams


@pytest.mark.parametrize("beams", [0, -1, MAX_BEAMS + 1, 2.0, "2", None, True])
def test_anything_else_is_invalid_input(beams):
    with pytest.raises(InvalidInput, match="beams must be an integer from 1 to"):
        check_beams(beams)
