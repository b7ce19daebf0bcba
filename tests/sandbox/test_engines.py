"""The sandbox's search engines: what they list and how they guard `i.js`."""

from __future__ import annotations

import asyncio
import io
import json
from urllib.parse import quote

import pytest
from PIL import Image

from tests.tasks.collect.helpers import fixture, http_for, series_with_images
from tv100.sandbox.engines import (
    VARIANTS,
    EngineSite,
    engine_urls,
    normalize_query,
    register_engines,
)
from tv100.sandbox.imagehost import THUMBNAIL_SIDE
from tv100.sandbox.server import SandboxServer
from tv100.tasks.collect.config import SearchConfig
from tv100.tasks.collect.duckduckgo import (
    extract_vqd,
)
from tv100.tasks.collect.engines import ENGINE_NAMES, read_page
from tv100.tasks.collect.pages import block_kind
from tv100.tasks.collect.source_page import PageImage, page_image
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


def _get(server: SandboxServer, *paths: str) -> list:
    """GET each sandbox path with the product's HTTP client (redirects followed)."""

    async def go():
        async with HttpClient(http_for(server, retries=0)) as client:
            return [await client.get(server.base_url + p) for p in paths]

    return asyncio.run(go())


def test_engine_urls_select_variants(engines):
    server, _ = engines
    base = server.base_url
    urls = engine_urls(base, {"google": "basic", "duckduckgo": "blocked"})
    assert urls == {
        "bing": f"{base}/bing",
        "google": f"{base}/google-basic",
        "duckduckgo": f"{base}/ddg-blocked",
    }
    assert set(VARIANTS) == set(ENGINE_NAMES)
    with pytest.raises(ValueError, match="no sandbox variant 'basic' of 'bing'"):
        engine_urls(base, {"bing": "basic"})
    with pytest.raises(ValueError, match="has no variant"):
        engines[1].variant("duckduckgo", "consent")


# (engine, variant, path and query, the saved page it stands for)
SERVED = [
    ("google", "blocked", "/search?q={q}&tbm=isch", "google_enablejs.html"),
    ("google", "consent", "/search?q={q}&tbm=isch", "google_consent.html"),
    ("google", "basic", "/search?q={q}&tbm=isch", "google_basic.html"),
    ("google", "basic", "/search?q=No+Such+Show&tbm=isch", "google_no_results.html"),
    ("google", None, "/search?q=No+Such+Show&tbm=isch", "google_no_results.html"),
    ("bing", "blocked", "/images/search?q={q}&first=1", "bing_captcha.html"),
    ("bing", "consent", "/images/search?q={q}&first=1", "bing_consent.html"),
    ("bing", None, "/images/search?q=No+Such+Show&first=1", "bing_no_results.html"),
]


@pytest.mark.parametrize(
    "engine,variant,target,saved", SERVED, ids=[f"{e}-{v}-{f}" for e, v, _, f in SERVED]
)
def test_variants_serve_the_pages_of_the_fixtures(
    world, catalog, engines, engine, variant, target, saved
):
    """Each variant's page is read by the product as the saved page it stands for is."""
    server, _ = engines
    title = series_with_images(world, catalog, 25)[0]
    base = engine_urls("", {engine: variant} if variant else None)[engine]
    (fetched,) = _get(server, base + target.format(q=quote(f"{title.title} TV Series")))
    assert fetched.ok, fetched.error_message
    served, real = read_page(engine, fetched.content), read_page(engine, fixture(saved))
    assert served.page_class == real.page_class, served.reason
    assert block_kind(served.reason) == block_kind(real.reason)
    assert [h.thumbnail_only for h in served.hits[:1]] == [h.thumbnail_only for h in real.hits[:1]]


def test_google_consent_redirects_to_its_consent_page(world, catalog, engines):
    server, _ = engines
    title = series_with_images(world, catalog, 5)[0]
    target = f"/google-consent/search?q={quote(title.title)}&tbm=isch"
    (fetched,) = _get(server, target)
    assert fetched.final_url.startswith(f"{server.base_url}/google-consent/ml?continue=")
    assert b"Before you continue to Google" in fetched.content
    assert b"https://consent.google.com/save" in fetched.content


def test_duckduckgo_blocked_answers_its_challenge_everywhere(world, catalog, engines):
    server, site = engines
    query = quote(f"{series_with_images(world, catalog, 5)[0].title} TV Series")
    token, ijs = _get(
        server,
        f"/ddg-blocked/?q={query}&iax=images&ia=images",
        f"/ddg-blocked/i.js?q={query}&o=json&vqd=4-1",
    )
    for fetched in (token, ijs):
        assert fetched.http_status == 202 and extract_vqd(fetched.content) is None
        page = read_page("duckduckgo", fetched.content)
        assert (page.page_class, block_kind(page.reason)) == ("blocked", "captcha")


def test_google_basic_thumbnails_are_small_and_their_pages_name_the_image(
    world, catalog, engines
):
    """A basic-layout hit is a real thumbnail (the image shrunk, a JPEG); its source page
    names the full image in og:image, as the downloader reads it."""
    server, site = engines
    title = series_with_images(world, catalog, 5)[0]
    (fetched,) = _get(server, f"/google-basic/search?q={quote(title.title)}&tbm=isch")
    hits = read_page("google", fetched.content).hits
    listed = site.results("google", title.series_id)
    img = next(i for i in listed if i.plant is None and i.page_plant is None)
    hit = hits[listed.index(img)]
    assert hit.thumbnail_only and hit.page_url == server.base_url + img.page_path
    thumb, page = _get(server, hit.image_url.removeprefix(server.base_url), img.page_path)
    assert thumb.ok and thumb.final_url == hit.image_url  # served, not redirected
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content == catalog.thumbnail(img.url_path)
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert max(im.size) == THUMBNAIL_SIDE < max(img.width, img.height)
    assert page_image(page.content, page.final_url) == PageImage(
        server.base_url + img.url_path, "og:image"
    )


def test_thumbnails_of_every_engine(world, catalog, engines):
    """Bing's and Google's thumbnail URLs serve the same thumbnail; none for what the host
    serves no decodable image of, or for an id no engine listed."""
    server, site = engines
    title = series_with_images(world, catalog, 5)[0]
    img = site.results("bing", title.series_id)[0]
    tid = site._thumb_id(img)
    bing, google, unknown = _get(
        server, f"/bing/th?id=OIP.{tid}&pid=Api", f"/google/images?q=tbn:{tid}&s",
        "/google/images?q=tbn:0000000000",
    )  # fmt: skip
    assert bing.ok and google.ok and bing.content == google.content
    assert unknown.http_status == 404
    bodiless = next(i for i in catalog.images if i.plant == "fault_5xx")
    site.results("bing", bodiless.series_id)  # registers its thumbnail id
    (missing,) = _get(server, f"/google/images?q=tbn:{site._thumb_id(bodiless)}")
    assert missing.http_status == 404


def test_the_listing_key_names_what_the_engines_list(world, catalog):
    """Another scale, seed or number of series lists other images: another key, so a search
    cached against one sandbox is never served for another (the world prefix of the URLs)."""
    from tv100.sandbox.imagehost import build_catalog
    from tv100.sandbox.world import build_world

    key = catalog.listing_key()
    assert key == build_catalog(world, scale=0.5).listing_key()  # deterministic
    assert len(key) == 16
    others = {
        build_catalog(world, scale=1.0).listing_key(),
        build_catalog(world, scale=0.5, noise=False).listing_key(),
        build_catalog(build_world(seed=world.seed + 1), scale=0.5).listing_key(),
        build_catalog(build_world(seed=world.seed, n_series=24), scale=0.5).listing_key(),
    }
    assert key not in others and len(others) == 4
