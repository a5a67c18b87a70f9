"""The beam- and sample-count checks shared by the API, the CLI and the evaluation harness."""

import pytest

from r3mem.decoding import (
    DEFAULT_BEAMS,
    DEFAULT_GUIDANCE,
    MAX_BEAMS,
    MAX_GUIDANCE,
    MAX_SAMPLES,
    check_beams,
    check_guidance,
    check_samples,
    describe,
)
from r3mem.errors import InvalidInput


@pytest.mark.parametrize("beams", [1, DEFAULT_BEAMS, MAX_BEAMS])
def test_counts_in_range_pass_through(beams):
    assert check_beams(beams) == beams


@pytest.mark.parametrize("beams", [0, -1, MAX_BEAMS + 1, 2.0, "2", None, True])
def test_anything_else_is_invalid_input(beams):
    with pytest.raises(InvalidInput, match="beams must be an integer from 1 to"):
        check_beams(beams)


@pytest.mark.parametrize("samples", [0, 1, MAX_SAMPLES])
def test_sample_counts_in_range_pass_through(samples):
    assert check_samples(samples) == samples


@pytest.mark.parametrize("samples", [-1, MAX_SAMPLES + 1, 2.0, "2", None, True])
def test_any_other_sample_count_is_invalid_input(samples):
    with pytest.raises(InvalidInput, match="samples must be an integer from 0 to"):
        check_samples(samples)


def test_description_names_the_selection_only_when_samples_are_drawn():
    assert describe(4) == describe(4, 0) == "by 4-beam search"
    assert "re-compresses nearest" in describe(4, 8) and "4 beams and 8 samples" in describe(4, 8)
    assert "greedy expansion and 2 samples" in describe(1, 2)


@pytest.mark.parametrize("guidance", [0, 0.5, DEFAULT_GUIDANCE, MAX_GUIDANCE])
def test_guidance_in_range_passes_as_a_float(guidance):
    assert check_guidance(guidance) == float(guidance) and isinstance(check_guidance(guidance), float)


@pytest.mark.parametrize("guidance", [-0.1, MAX_GUIDANCE + 1, float("nan"), float("inf"), "4", None, True])
def test_any_other_guidance_is_invalid_input(guidance):
    with pytest.raises(InvalidInput, match="guidance must be a number from 0 to"):
        check_guidance(guidance)


def test_description_names_the_guidance_only_when_it_is_on():
    assert describe(4, 0, 0.0) == "by 4-beam search"
    assert "pool guidance 4" in describe(4, 0, 4.0) and "paid as it is written" not in describe(4, 0, 4.0)
    assert "0.25 of each chunk's charge paid as it is written" in describe(4, 0, 4.0, 0.25)
    assert "pool-guided (2)" in describe(4, 8, 2.0) and "re-compresses nearest" in describe(4, 8, 2.0)


def test_description_names_the_bag_charge_only_under_guidance():
    with_bag = describe(16, 0, 4.0, 0.25, 4.0)
    assert "recovered bag charged 4 nats" in with_bag and "0.25 of each chunk's charge" in with_bag
    assert "bag" not in describe(16, 0, 4.0, 0.25) and "bag" not in describe(16, 0, 0.0, 0.0, 4.0)
