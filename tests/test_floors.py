"""Issue 4's floor checks: a mean above a floor is not the same as a floor cleared beyond noise."""

import pytest

from r3mem.train.floors import accuracy_check, floors, verdict


def test_a_mean_above_the_floor_with_a_wide_interval_is_met_but_not_clear():
    check = accuracy_check({"token_accuracy": 0.902, "token_accuracy_se": 0.02, "n": 32}, 0.90)
    assert check["met"] is True and check["clear_of_noise"] is False
    assert check["interval_95"] == pytest.approx([0.902 - 1.96 * 0.02, 0.902 + 1.96 * 0.02], abs=1e-4)
    assert check["segments"] == 32 and verdict(check).startswith("mean only")


def test_a_narrow_interval_above_the_floor_is_clear():
    check = accuracy_check({"token_accuracy": 0.95, "token_accuracy_se": 0.01, "n": 128}, 0.90)
    assert check["met"] and check["clear_of_noise"] and verdict(check) == "yes"


def test_below_the_floor_is_not_met_whatever_the_interval():
    check = accuracy_check({"token_accuracy": 0.89, "token_accuracy_se": 0.05, "n": 8}, 0.90)
    assert not check["met"] and not check["clear_of_noise"] and verdict(check) == "**no**"


def test_a_result_without_a_standard_error_is_never_clear():
    """Evaluations written before the standard error was recorded: the mean alone is shown."""
    check = accuracy_check({"token_accuracy": 0.99, "n": 32}, 0.90)
    assert check["met"] and check["interval_95"] is None and not check["clear_of_noise"]
    assert verdict(check) == "mean only (no interval recorded)"


def test_an_unmeasured_ratio_is_not_met():
    check = accuracy_check(None, 0.70)
    assert check["measured"] is None and not check["met"] and verdict(check) == "**no**"


def test_floors_cover_both_ratios_cycle_rows_and_the_perplexity_gain():
    row = {"token_accuracy": 0.95, "token_accuracy_se": 0.001, "n": 128}
    ppl = {"512": {"memory_gain_nats": 0.1, "memory_gain_2se": 0.2},
           "all": {"memory_gain_nats": 0.3, "memory_gain_2se": 0.07}}
    checks = floors({"4": row, "8": row}, ppl, {"4": row})
    assert set(checks) == {"token_accuracy@4", "token_accuracy@8", "token_accuracy@4 (cycle-consistent)",
                           "token_accuracy@8 (cycle-consistent)", "memory_beats_no_context"}
    assert checks["memory_beats_no_context"] == {"gain_nats": 0.3, "two_standard_errors": 0.07, "met": True}
    assert verdict(checks["memory_beats_no_context"]) == "yes"
    assert not checks["token_accuracy@8 (cycle-consistent)"]["met"]  # cycle measured at ratio 4 only
    assert "token_accuracy@4 (cycle-consistent)" not in floors({"4": row}, ppl)
