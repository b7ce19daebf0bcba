"""DiscoverConfig: defaults, validation naming the value, the per-step projections."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from tv100.tasks.discover.config import (
    DISCOVER,
    SOURCES,
    CrawlConfig,
    DiscoverConfig,
    SeriesFilter,
    Source,
)


def test_defaults():
    assert DISCOVER == DiscoverConfig()
    assert (DISCOVER.source, DISCOVER.since, DISCOVER.min_votes) == ("imdb-datasets", 2021, None)
    assert (DISCOVER.max_pages, DISCOVER.locale, DISCOVER.page_size) == (200, None, None)
    assert SOURCES == get_args(Source) == ("imdb-datasets", "imdb-web")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"source": "imdb"}, "source"),
        ({"since": 1500}, "since"),
        ({"since": "2021"}, "since"),
        ({"since": True}, "since"),
        ({"min_votes": -1}, "min_votes"),
        ({"min_votes": 1.5}, "min_votes"),
        ({"max_pages": 0}, "max_pages"),
        ({"locale": "DE"}, "locale"),
        ({"locale": "../x"}, "locale"),
        ({"page_size": 0}, "page_size"),
    ],
)
def test_validation_names_the_field(overrides: dict[str, Any], field: str):
    with pytest.raises(ValueError, match=field):
        DiscoverConfig(**overrides)


def test_projections_hold_only_their_knobs():
    c = DiscoverConfig(
        source="imdb-web", since=2020, min_votes=5, max_pages=3, locale="de", page_size=10
    )
    assert c.filter == SeriesFilter(2020, 5)
    assert c.crawl == CrawlConfig(2020, 3, "de", 10)
    # min_votes does not change what is crawled: the crawl's cache key stays the same.
    assert DiscoverConfig(source="imdb-web", min_votes=100).crawl == DISCOVER.crawl


def test_empty_locale_is_the_english_site():
    assert DiscoverConfig(locale="").locale is None
    assert DiscoverConfig(locale="fr-ca").locale == "fr-ca"
