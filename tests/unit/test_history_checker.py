"""The history checker itself: each anomaly it claims to find, it finds; a clean history passes."""

from __future__ import annotations

from history import check


def test_a_clean_history_passes() -> None:
    acked = [("a", 0, 0), ("b", 0, 1), ("c", 1, 0)]
    reads = [[(0, 0, "a"), (0, 1, "b")], [(1, 0, "c")]]
    verdict = check(acked, reads)
    assert verdict.ok, verdict.summary()
    assert (verdict.acked, verdict.read) == (3, 3)


def test_each_anomaly_is_found() -> None:
    acked = [("a", 0, 0), ("b", 0, 1), ("lost", 0, 2)]
    reads = [
        [(0, 0, "a"), (0, 1, "b"), (0, 4, "b")],  # "b" stored twice; offsets 2-3 never read: a gap
        [(0, 1, "other"), (0, 0, "a")],  # offset 1 with another value; then backwards
    ]
    verdict = check(acked, reads)
    assert verdict.lost == {"lost"}
    assert verdict.duplicated == {"b": [(0, 1), (0, 4)]}
    assert (0, 1, "b", "other") in verdict.inconsistent
    assert verdict.nonmonotonic == [(0, 1, 0)]
    assert verdict.gaps == {0: [2, 3]}
    assert not verdict.ok
    assert check(acked[:2], [[(0, 0, "a"), (0, 1, "b"), (0, 2, "b")]], allow_duplicates=True).ok
