"""tasks/clean/sweep.py: precision and recall of pHash grouping per threshold."""

from __future__ import annotations

import pytest

from tests.tasks.clean.records import ZERO, flip, rec, table
from tv100.tasks.clean.sweep import sweep_thresholds


def test_sweep_thresholds_counts_pairs_over_groups():
    o1, o2, o3 = ZERO, flip(ZERO, *range(20, 44)), flip(ZERO, *range(40, 64))
    rows = [
        rec("o1", o1),
        rec("o1c", flip(o1, *range(4))),  # 4
        rec("o2", o2),
        rec("o2c", flip(o2, *range(0, 9))),  # 9
        rec("o3", o3),
        rec("o3c", flip(o3, *range(0, 15))),  # 15
        rec("x", flip(o1, *range(4, 16))),  # 12 from o1, a false match
        rec("e", ZERO, sha="exact"),
        rec("ec", ZERO, sha="exact"),
    ]
    truth = [("o1", "o1c"), ("o2", "o2c"), ("o3c", "o3"), ("e", "ec"), ("o1", "not-there")]
    got = {p.threshold: p for p in sweep_thresholds(table(rows), truth, [0, 4, 9, 12, 15])}
    # e/ec share o1's pHash, so at any threshold they sit in o1's group: the sweep is honest
    # about that: e-o1 and e-o1c count as false pairs.
    assert got[0].true_pairs == 4
    assert (got[0].tp, got[0].predicted_pairs) == (1, 3)  # {o1, e, ec}
    assert (got[4].tp, got[4].predicted_pairs) == (2, 6)  # {o1, o1c, e, ec}
    assert (got[9].tp, got[9].predicted_pairs) == (3, 7)
    assert (got[12].tp, got[12].predicted_pairs) == (3, 11)  # x joins o1's group
    assert got[15].recall == 1.0 and got[15].fn == 0
    assert got[15].precision == pytest.approx(4 / 12)
    with pytest.raises(ValueError, match="0..32"):
        sweep_thresholds(table(rows), truth, [40])
