"""A week earlier: a collected `images` table as it was before a refresh's new images came.

A weekly refresh finds new series (IMDb lists new titles) and new images of old ones
(engines index more). `week_earlier` takes the images of a finished collect and removes
exactly that: every image of the last `new_series` share of the series (by id) and the
`per_grown` best-ranked ok images of every ``1 / grown_series``-th other series. Building
on its result, then on the whole table, is a refresh whose new inputs are known; the
incremental-refresh test (tests/flows/test_incremental.py) and ``bench/refresh.py`` do.
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

#: The issue's refresh: 5% new series, and new images of 5% of the old ones.
NEW_SERIES = 0.05
GROWN_SERIES = 0.05
PER_GROWN = 2


def week_earlier(
    images: pa.Table,
    new_series: float = NEW_SERIES,
    grown_series: float = GROWN_SERIES,
    per_grown: int = PER_GROWN,
) -> tuple[pa.Table, int]:
    """`images` (the `images` table) without the refresh's new rows (module docstring).

    Returns:
        the older table (rows in their order) and how many ok images the refresh adds.

    Raises:
        ValueError: a share outside (0, 1) or `per_grown` below 1.
    """
    for name, share in (("new_series", new_series), ("grown_series", grown_series)):
        if not 0 < share < 1:
            raise ValueError(f"{name}={share!r}; expected a share in (0, 1)")
    if per_grown < 1:
        raise ValueError(f"per_grown={per_grown!r}; expected >= 1")
    series_ids = images.column("series_id").to_pylist()
    series = sorted(set(series_ids))
    n_new = max(1, round(len(series) * new_series))
    new, old = set(series[-n_new:]), series[:-n_new]
    grown = set(old[:: max(1, round(1 / grown_series))])
    statuses = images.column("status").to_pylist()
    ok_rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, (sid, status, rank) in enumerate(zip(
        series_ids, statuses, images.column("rank").to_pylist(), strict=True,
    )):
        if sid in grown and status == "ok":
            ok_rows[sid].append((rank if rank is not None else 1 << 62, i))
    dropped = {i for rows in ok_rows.values() for _, i in sorted(rows)[:per_grown]}
    keep = [i for i, sid in enumerate(series_ids) if sid not in new and i not in dropped]
    kept = set(keep)
    added = sum(1 for i, s in enumerate(statuses) if i not in kept and s == "ok")
    return images.take(pa.array(keep, pa.int64())), added
