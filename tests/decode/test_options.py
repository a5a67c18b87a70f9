"""The `Decoding` value: its defaults, its checks (each naming the field it rejects) and its description."""

import dataclasses
import subprocess
import sys

import pytest

from r3mem.decode.options import (
    DEFAULT_BAG,
    DEFAULT_BEAMS,
    DEFAULT_DECODING,
    DEFAULT_GUIDANCE,
    DEFAULT_SAMPLES,
    DEFAULT_SPREAD,
    MAX_BAG,
    MAX_BEAMS,
    MAX_GUIDANCE,
    MAX_SAMPLES,
    Decoding,
)
from r3mem.errors import InvalidInput


def test_defaults_are_the_library_constants():
    assert Decoding() == DEFAULT_DECODING == Decoding(DEFAULT_BEAMS, DEFAULT_SAMPLES, DEFAULT_GUIDANCE,
                                                      DEFAULT_SPREAD, DEFAULT_BAG)
    assert (DEFAULT_DECODING.beams, DEFAULT_DECODING.samples, DEFAULT_DECODING.guidance) == (16, 0, 4.0)
    assert (DEFAULT_DECODING.spread, DEFAULT_DECODING.bag) == (0.25, 4.0)


def test_a_decoding_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_DECODING.beams = 1  # type: ignore[misc]


@pytest.mark.parametrize("field, good", [
    ("beams", [1, DEFAULT_BEAMS, MAX_BEAMS]),
    ("samples", [0, 1, MAX_SAMPLES]),
    ("guidance", [0, 0.5, DEFAULT_GUIDANCE, MAX_GUIDANCE]),
    ("spread", [0, 0.25, 1]),
    ("bag", [0, DEFAULT_BAG, MAX_BAG]),
])
def test_values_in_range_pass(field, good):
    for value in good:
        assert getattr(Decoding(**{field: value}), field) == value


@pytest.mark.parametrize("field, bad, message", [
    *[("beams", v, f"beams must be an integer from 1 to {MAX_BEAMS}") for v in (0, -1, MAX_BEAMS + 1, 2.0, "2",
                                                                               None, True)],
    *[("samples", v, f"samples must be an integer from 0 to {MAX_SAMPLES}") for v in (-1, MAX_SAMPLES + 1, 2.0,
                                                                                    "2", None, True)],
    *[("guidance", v, "guidance must be a number from 0 to 64") for v in (-0.1, MAX_GUIDANCE + 1, float("nan"),
                                                                        float("inf"), "4", None, True)],
    *[("spread", v, "spread must be a number from 0 to 1") for v in (-0.1, 1.5, float("nan"), "0.25", None, False)],
    *[("bag", v, "bag must be a number from 0 to 64") for v in (-1.0, MAX_BAG + 1, float("inf"), "4", None, True)],
])
def test_each_rejected_field_is_named_in_one_line(field, bad, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        Decoding(**{field: bad})
    assert str(caught.value).endswith(f"got {bad!r}") and "\n" not in str(caught.value)


def test_numbers_are_kept_as_floats_so_equal_settings_are_equal():
    assert Decoding(guidance=4) == Decoding(guidance=4.0) and isinstance(Decoding(guidance=4).guidance, float)
    assert hash(Decoding(spread=1)) == hash(Decoding(spread=1.0))


def test_description_names_the_selection_only_when_samples_are_drawn():
    off = {"guidance": 0.0}
    assert Decoding(beams=4, **off).describe() == Decoding(beams=4, samples=0, **off).describe() == "by 4-beam search"
    with_samples = Decoding(beams=4, samples=8, **off).describe()
    assert "re-compresses nearest" in with_samples and "4 beams and 8 samples" in with_samples
    assert "greedy expansion and 2 samples" in Decoding(beams=1, samples=2, **off).describe()


def test_description_names_the_guidance_only_when_it_is_on():
    assert "pool guidance 4" in Decoding(beams=4, spread=0.0).describe()
    assert "paid as it is written" not in Decoding(beams=4, spread=0.0, bag=0.0).describe()
    assert "0.25 of each chunk's charge paid as it is written" in Decoding(beams=4, bag=0.0).describe()
    guided = Decoding(beams=4, samples=8, guidance=2.0).describe()
    assert "pool-guided (2)" in guided and "re-compresses nearest" in guided


def test_description_names_the_bag_charge_only_under_guidance():
    with_bag = Decoding(beams=16, guidance=4.0, spread=0.25, bag=4.0).describe()
    assert "recovered bag charged 4 nats" in with_bag and "0.25 of each chunk's charge" in with_bag
    assert "bag" not in Decoding(beams=16, bag=0.0).describe()
    assert "bag" not in Decoding(beams=16, guidance=0.0, spread=0.0, bag=4.0).describe()


def test_a_recorded_decoding_reads_back_and_old_results_read_as_greedy():
    for decoding in (DEFAULT_DECODING, Decoding(beams=2, samples=3, guidance=0.0), Decoding(beams=1, spread=0.5)):
        again = Decoding.from_record(decoding.record())
        assert again.record() == decoding.record()
        assert again.describe() == decoding.describe()
    assert Decoding.from_record({}) == Decoding(beams=1, samples=0, guidance=0.0, spread=0.0, bag=0.0)
    assert Decoding.from_record({}).describe() == "greedily"


def test_the_value_imports_without_torch():
    """The command line checks a decoding before any model loads, so making one must not pull torch in."""
    code = "import sys; from r3mem.decode import Decoding; Decoding(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
