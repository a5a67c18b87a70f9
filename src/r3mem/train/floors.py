"""Issue 4's floors, checked together with their sampling noise.

A mean just above a floor says little without its spread: at ratio 4 the step-2580 weights read
0.902 on the card's 32 held-out segments and 0.885 on 128. So each accuracy check carries its
number of segments, the standard error of the per-segment accuracies and a 95 % interval, and
says whether the whole interval clears the floor (`clear_of_noise`), not only the mean (`met`).
The memory-perplexity check is already a noise check: the whole interval of memory - window must lie below 0.
"""

from __future__ import annotations

# issue 4's floors, on held-out text, 128-token segments
FLOORS = {"token_accuracy@4": 0.90, "token_accuracy@8": 0.70}
# two-sided 95 % normal interval; per-segment accuracies are bounded, so with tens of segments
# their mean is close to normal
Z95 = 1.96


def accuracy_check(row: dict | None, floor: float) -> dict:
    """One ratio's reconstruction row (mean, standard error, segments and, when the caller tagged it,
    the evaluation it came from) against its floor."""
    row = row or {}
    measured, se = row.get("token_accuracy"), row.get("token_accuracy_se")
    interval = ([round(measured - Z95 * se, 4), round(measured + Z95 * se, 4)]
                if measured is not None and se is not None else None)
    met = measured is not None and measured >= floor
    clear = met and interval is not None and interval[0] >= floor
    return {"floor": floor, "measured": measured, "segments": row.get("n"), "standard_error": se,
            "interval_95": interval, "met": met, "clear_of_noise": clear, "evaluation": row.get("evaluation")}


def perplexity_check(ppl: dict) -> dict:
    """Retention's floors: at every history >= 4,096 tokens the memory reads better than the raw window
    of the same size (the whole 95 % interval of memory - window below 0), and the longest history
    does no worse than 1,024 tokens."""
    long = {h: v for h, v in ppl.items() if (h == "all" or (h.isdigit() and int(h) >= 4096)) and "ci95" in v}
    below = {h: v["ci95"][1] < 0 for h, v in long.items()}
    longest = ppl.get("all", {}).get("memory")
    short = ppl.get("1024", {}).get("memory")
    never_hurts = longest is not None and short is not None and longest <= short
    return {"memory_minus_window": {h: v.get("memory_minus_window_nats") for h, v in long.items()},
            "interval_below_zero": below, "longer_history_no_worse": never_hurts,
            "met": bool(below) and all(below.values()) and never_hurts}


def floors(recon: dict, ppl: dict, cycle: dict | None = None) -> dict:
    """Each floor under the default decoding, and under cycle-consistent selection when measured.

    `recon` and `cycle` map a ratio ("4") to its reconstruction row."""
    checks = {name: accuracy_check(recon.get(name.split("@")[1]), floor) for name, floor in FLOORS.items()}
    for name, floor in FLOORS.items() if cycle else ():
        checks[f"{name} (cycle-consistent)"] = accuracy_check((cycle or {}).get(name.split("@")[1]), floor)
    checks["memory_beats_window"] = perplexity_check(ppl)
    return checks


def verdict(check: dict) -> str:
    """The card's "met" cell: a mean above the floor whose interval dips below it is said so."""
    if not check["met"]:
        return "**no**"
    if "interval_95" not in check or check["clear_of_noise"]:
        return "yes"
    if check["interval_95"] is None:
        return "mean only (no interval recorded)"
    return "mean only: the 95 % interval reaches below the floor"
