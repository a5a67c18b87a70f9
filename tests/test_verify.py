"""Source digests and the verdicts built on them (no model needed)."""

from r3mem.verify import Reconstruction, digest_rows, matches, segment_digest


def test_digest_depends_on_every_token_and_their_order():
    base = segment_digest([1, 2, 3])
    assert len(base) == 8 and base == segment_digest((1, 2, 3))
    assert len({base, segment_digest([1, 2]), segment_digest([3, 2, 1]), segment_digest([1, 2, 4]),
                segment_digest([1, 2, 3, 0]), segment_digest([])}) == 6


def test_rows_match_only_their_own_segment():
    rows = digest_rows([[5, 6], [7], [50_000, 49_999]])
    assert rows.shape == (3, 8)
    assert matches(rows[0], [5, 6]) and matches(rows[2], [50_000, 49_999])
    assert not matches(rows[1], [5, 6]) and not matches(rows[1], [7, 7])


def test_summary_names_the_segments_that_differ():
    assert Reconstruction("t", [0, 1], [True, True]).summary() == (
        "verified: 2 of 2 segment(s) regenerate their source exactly")
    result = Reconstruction("t", list(range(14)), [False] * 12 + [True, True])
    assert not result.exact
    assert result.summary().endswith("segment(s) 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more differ from it")
    assert Reconstruction("t", [3], [None]).summary().startswith("not verifiable")
