"""The sandbox's search engines: what they list and how they guard `i.js`."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from tests.tasks.collect.helpers import http_for, series_with_images
from tv100.sandbox.engines import EngineSite, engine_urls, normalize_query, register_engines
from tv100.sandbox.server import SandboxServer
from tv100.tasks.collect.config import SearchConfig
from tv100.tasks.collect.duckduckgo import (
    extract_vqd,
)
from tv100.tasks.collect.engines import ENGINE_NAMES
from tv100.tasks.web.client import HttpClient


@pytest.fixture(scope="module")
def catalog(world):
    from tv100.sandbox.imagehost import build_catalog

    return build_catalog(world, scale=0.5)


@pytest.fixture(scope="module")
def engines(world, catalog):
    """A sandbox server with the image host and the three engines: (server, site)."""
    with SandboxServer(world) as server:
        catalog.register(server)
        site = register_engines(server, world, catalog)
        yield server, site
        assert server.errors == []


def test_engine_urls_name_every_engine(engines):
    server, _ = engines
    urls = engine_urls(server.base_url + "/")
    assert list(urls) == list(ENGINE_NAMES)
    assert urls["duckduckgo"] == f"{server.base_url}/ddg"
    config = SearchConfig.from_engine_urls(urls)
    assert [config.base_url(n) for n in ENGINE_NAMES] == list(urls.values())


def test_engines_list_different_overlapping_subsets(world, catalog, engines):
    _, site = engines
    title = series_with_images(world, catalog, 20)[0]
    listed = [img.url_path for img in catalog.for_series(title.series_id)]
    bing = [i.url_path for i in site.results("bing", title.series_id)]
    google = [i.url_path for i in site.results("google", title.series_id)]
    ddg = [i.url_path for i in site.results("duckduckgo", title.series_id)]
    assert bing == listed
    assert set(google) < set(listed) and set(ddg) < set(listed)
    assert 0.6 * len(listed) <= len(google) <= len(listed) - 1
    assert 0.3 * len(listed) <= len(ddg) <= 0.9 * len(listed)
    assert google != sorted(google, key=listed.index)  # mildly shuffled
    assert ddg == sorted(ddg, key=listed.index)
    assert site.results("google", title.series_id) == site.results("google", title.series_id)


def test_queries_resolve_to_series(world, engines):
    _, site = engines
    for title in world.titles:
        sid = title.series_id
        assert site.resolve(title.title) == sid
        assert site.resolve(f"{title.title.upper()} tv series") == sid
        assert site.resolve(f'"{title.title}" TV Series') == sid
        assert site.resolve(quote(f"{title.title} TV Series")) == sid  # encoded twice
    assert site.resolve("No Such Show TV Series") is None
    assert normalize_query("\u201cMoonlit Harbor\u201d  TV   Series") == "moonlit harbor"


def test_duckduckgo_i_js_needs_token_and_referer(world, catalog, engines):
    server, site = engines
    query = f"{series_with_images(world, catalog, 5)[0].title} TV Series"
    base = f"{server.base_url}/ddg/i.js?o=json&q={quote(query)}"
    good = site.vqd(query)
    referer = {"Referer": f"{server.base_url}/ddg/"}

    async def go():
        async with HttpClient(http_for(server, retries=0)) as client:
            return [
                await client.get(base, headers=referer),
                await client.get(f"{base}&vqd=4-000", headers=referer),
                await client.get(f"{base}&vqd={site.vqd('another query')}", headers=referer),
                await client.get(f"{base}&vqd={good}"),
                await client.get(f"{base}&vqd={good}", headers=referer),
                await client.get(f"{server.base_url}/ddg/?q={quote(query)}&iax=images&ia=images"),
            ]

    no_token, wrong, other, no_referer, ok, html = asyncio.run(go())
    assert [f.http_status for f in (no_token, wrong, other, no_referer)] == [403] * 4
    assert ok.http_status == 200 and json.loads(ok.content)["results"]
    assert extract_vqd(html.content) == good


def test_engine_site_rejects_unknown_engine(world, catalog):
    site = EngineSite(world, catalog)
    with pytest.raises(ValueError, match="unknown engine"):
        site.results("yahoo", "tt0")
