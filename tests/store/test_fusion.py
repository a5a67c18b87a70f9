"""Fusion: reciprocal ranks, calibrated scores, neighbours as candidates."""

import numpy as np
import pytest

from r3mem.errors import InvalidInput
from r3mem.store.fusion import DEFAULT_FUSION, Fusion, candidates, fuse, rrf


def test_rrf_sums_reciprocal_ranks():
    fused = dict(rrf(["a", "b"], ["b", "c"]))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61) and fused["a"] == pytest.approx(1 / 61)
    assert max(fused, key=fused.get) == "b"


def test_candidates_are_both_lists_and_their_neighbours():
    lexical = np.array([0, 0, 1, 0, 0, 0, 0], np.float32)
    dense = np.array([0, 0, 0, 0, 0, 0, 0.5], np.float32)
    assert candidates(lexical, dense).tolist() == [1, 2, 3, 5, 6]


def test_fused_scores_are_probabilities_best_first_and_rise_with_the_evidence():
    ids = [f"r{i}" for i in range(6)]
    cosines = np.array([0.1, 0.2, 0.8, 0.3, 0.1, 0.05], np.float32)
    lexical, dense = [("r2", 9.0), ("r4", 1.0)], [("r2", 0.8), ("r3", 0.3), ("r1", 0.2)]
    fused = fuse(DEFAULT_FUSION, ids, cosines, lexical, dense)
    scores = dict(fused)
    assert fused[0][0] == "r2" and all(0 < s < 1 for s in scores.values())
    assert [s for _, s in fused] == sorted(scores.values(), reverse=True)
    assert set(scores) == {"r0", "r1", "r2", "r3", "r4", "r5"}  # r0, r5: neighbours of listed records
    assert scores["r3"] > scores["r5"]  # next to the best match, and in the dense list
    weaker = fuse(DEFAULT_FUSION, ids, cosines * 0.5, lexical, dense)
    assert dict(weaker)["r2"] < scores["r2"]  # the same ranks with lower cosines: less likely evidence


def test_a_key_weight_adds_the_key_feature_and_zero_ignores_it():
    ids, cosines = ["a", "b"], np.array([0.5, 0.5], np.float32)
    lists = ([("a", 1.0), ("b", 1.0)], [("a", 0.5), ("b", 0.5)])
    assert fuse(DEFAULT_FUSION, ids, cosines, *lists, keys={"b": 1.0})[0][0] == "a"  # key weight 0: tie, earlier
    keyed = Fusion(key=5.0)
    assert fuse(keyed, ids, cosines, *lists, keys={"b": 1.0})[0][0] == "b"


def test_empty_scope_and_bad_settings():
    assert fuse(DEFAULT_FUSION, [], np.zeros(0, np.float32), [], []) == []
    with pytest.raises(InvalidInput):
        Fusion(depth=0)
    with pytest.raises(InvalidInput):
        Fusion(scale=0)
