"""The collect stage's configs: validation, defaults, queries."""

from __future__ import annotations

import dataclasses

import pytest

from tv100.tasks.collect.config import (
    COLLECT,
    DOWNLOAD,
    SEARCH,
    CollectConfig,
    DownloadConfig,
    SearchConfig,
)
from tv100.tasks.collect.engines import ENGINE_NAMES


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"query_template": ""}, "query_template"),
        ({"query_template": "{title"}, "query_template"),
        ({"query_template": "{name} TV Series"}, "query_template"),
        ({"query_template": "{year} drama"}, "query_template"),
        ({"per_series_cap": 0}, "per_series_cap"),
        ({"per_series_cap": True}, "per_series_cap"),
        ({"per_series_cap": 2.5}, "per_series_cap"),
        ({"max_pages": 0}, "max_pages"),
        ({"page_size": 0}, "page_size"),
        ({"bing_url": "www.bing.com"}, "bing_url"),
        ({"google_url": "ftp://www.google.com"}, "google_url"),
        ({"duckduckgo_url": "https://duckduckgo.com/?q=x"}, "duckduckgo_url"),
    ],
)
def test_search_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SearchConfig(**kwargs)


def test_search_config_defaults_and_queries():
    config = SearchConfig()
    assert (config.query_template, config.per_series_cap, config.max_pages) == (
        "{title} TV Series",
        200,
        10,
    )
    assert config.base_url("bing") == "https://www.bing.com"
    assert config.base_url("duckduckgo") == "https://duckduckgo.com"
    assert config.query({"series_id": "tt1", "title": "Moonlit  Harbor"}) == (
        "Moonlit Harbor TV Series"
    )
    custom = SearchConfig(query_template="{original_title} {year} drama")
    row = {
        "series_id": "tt1",
        "title": "Moonlit Harbor",
        "original_title": "月港",
        "start_year": 2023,
    }
    assert custom.query(row) == "月港 2023 drama"
    assert custom.query({"series_id": "tt1", "title": "Moonlit Harbor"}) == "Moonlit Harbor drama"
    moved = SearchConfig.from_engine_urls({"google": "http://127.0.0.1:1234/g/"}, max_pages=3)
    assert moved.base_url("google") == "http://127.0.0.1:1234/g"
    assert moved.base_url("bing") == "https://www.bing.com"
    assert moved.max_pages == 3
    with pytest.raises(ValueError, match="unknown search engine 'yahoo'"):
        SearchConfig.from_engine_urls({"yahoo": "http://127.0.0.1:1234/y"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_pages = 3  # type: ignore[misc]


def test_download_config_validation():
    with pytest.raises(ValueError, match="max_side"):
        DownloadConfig(max_side=0)
    with pytest.raises(ValueError, match="shard_size"):
        DownloadConfig(shard_size=True)
    assert DownloadConfig(opt_out_directives=("NoAI",)).opt_out_directives == ("noai",)


def test_collect_config_from_options():
    config = CollectConfig.from_options(
        engines=["google", "bing", "google"],
        engine_urls={"bing": "http://127.0.0.1:9/bing"},
        per_series_cap=7,
        max_side=128,
        image_timeout_s=2.5,
        image_retries=0,
        download_shard_size=8,
        allow_hosts=["127.0.0.1:9"],
    )
    assert config.engines == ("google", "bing")
    assert (config.search.per_series_cap, config.search.bing_url) == (7, "http://127.0.0.1:9/bing")
    assert config.search_http.allow_hosts == ("127.0.0.1:9",)
    download = config.download
    assert (download.max_side, download.shard_size) == (128, 8)
    assert (download.http.timeout_s, download.http.retries) == (2.5, 0)
    assert download.http.allow_hosts == ("127.0.0.1:9",)
    # The defaults are the stage's defaults, every engine included.
    assert CollectConfig.from_options() == COLLECT
    assert COLLECT.engines == ENGINE_NAMES == ("bing", "google", "duckduckgo")
    assert (COLLECT.search, COLLECT.download.shard_size) == (SEARCH, DOWNLOAD.shard_size)


@pytest.mark.parametrize(
    "options,field",
    [
        ({"engines": ["altavista"]}, "altavista"),
        ({"engine_urls": {"bing": "bing.com"}}, "bing_url"),
        ({"max_side": 8}, "max_side"),
        ({"download_shard_size": 0}, "shard_size"),
        ({"image_timeout_s": 0}, "timeout_s"),
    ],
)
def test_collect_config_names_the_bad_value(options, field):
    with pytest.raises(ValueError, match=field):
        CollectConfig.from_options(**options)
