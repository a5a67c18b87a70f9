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
    ppl = {"1024": {"memory": 30.0, "memory_minus_window_nats": 0.01, "ci95": [-0.01, 0.03]},
           "4096": {"memory": 29.5, "memory_minus_window_nats": -0.02, "ci95": [-0.03, -0.01]},
           "all": {"memory": 29.0, "memory_minus_window_nats": -0.03, "ci95": [-0.05, -0.01]}}
    checks = floors({"4": row, "8": row}, ppl, {"4": row})
    assert set(checks) == {"token_accuracy@4", "token_accuracy@8", "token_accuracy@4 (cycle-consistent)",
                           "token_accuracy@8 (cycle-consistent)", "memory_beats_window"}
    assert checks["memory_beats_window"]["met"] and verdict(checks["memory_beats_window"]) == "yes"
    ppl["4096"]["ci95"] = [-0.03, 0.001]  # an interval reaching 0 is not a win
    assert not floors({"4": row}, ppl)["memory_beats_window"]["met"]
    ppl["4096"]["ci95"], ppl["all"]["memory"] = [-0.03, -0.01], 31.0  # a longer past must not hurt
    assert not floors({"4": row}, ppl)["memory_beats_window"]["met"]
    assert not checks["token_accuracy@8 (cycle-consistent)"]["met"]  # cycle measured at ratio 4 only
    assert "token_accuracy@4 (cycle-consistent)" not in floors({"4": row}, ppl)
