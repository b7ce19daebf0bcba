"""IMDb's code vocabularies."""

from __future__ import annotations

import pytest

from tv100.tasks.discover.imdb_codes import SERIES_KINDS, normalize_country, normalize_language


def test_series_kinds():
    assert SERIES_KINDS == ("tvSeries", "tvMiniSeries")


@pytest.mark.parametrize(
    ("code", "expected"),
    [("us", "US"), (" KR ", "KR"), ("XWW", None), ("SUHH", None), ("", None), (None, None)],
)
def test_normalize_country(code: object, expected: str | None):
    assert normalize_country(code) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [("cmn", "zh"), ("yue", "zh"), ("EN", "en"), ("jpn", "ja"), ("tlh", "tlh"),
     ("en-US", None), ("", None), (3, None)],
)  # fmt: skip
def test_normalize_language(code: object, expected: str | None):
    assert normalize_language(code) == expected
