"""Sample rows for the storage tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from tv100.storage.schemas import SERIES

TS = datetime(2026, 1, 2, tzinfo=UTC)


def series_rows(n: int, start: int = 0) -> pa.Table:
    """`n` rows of the `series` table, ids from `start`."""
    rows = [
        {
            "series_id": f"tt{1000000 + i:07d}",
            "title": f'Show "{i}"',
            "original_title": f"Show {i}",
            "kind": "tvSeries" if i % 2 else "tvMiniSeries",
            "start_year": 2022 + i % 3,
            "end_year": None,
            "genres": ["Drama"],
            "countries": ["KR"],
            "languages": ["ko"],
            "rating": 7.5,
            "num_votes": 100 * i,
            "source": "imdb-datasets",
            "discovered_at": TS,
        }
        for i in range(start, start + n)
    ]
    return pa.Table.from_pylist(rows, schema=SERIES)
