"""The discover result built from the tables a run wrote."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from tv100.tasks.discover.config import DiscoverResult
from tv100.tasks.discover.steps import discover_result


def test_discover_result_counts():
    series = pa.table({"kind": ["tvSeries", "tvMiniSeries", "tvSeries"]})
    fetches = pa.table({"status": ["ok", "timeout", "ok", "http_error"]})
    result = discover_result(series, fetches, {"series": "abc"})
    assert result == DiscoverResult(
        series=3,
        kinds={"tvSeries": 2, "tvMiniSeries": 1},
        fetches=4,
        failed_fetches=2,
        tables={"series": "abc"},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.series = 0  # type: ignore[misc]
