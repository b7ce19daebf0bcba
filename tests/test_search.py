"""Search adapters: parsers on saved pages, fetchers against the sandbox engines over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest

from tv100.sandbox.engines import EngineSite, normalize_query, register_engines
from tv100.sandbox.server import Request, Response, SandboxServer
from tv100.tasks.collect.search import (
    ENGINES,
    SEARCH_HITS,
    SEARCH_PAGES,
    DuckDuckGoEngine,
    SearchConfig,
    SearchHit,
    canonical_url,
    check_engines,
    extract_vqd,
    parse_bing,
    parse_duckduckgo,
    parse_google,
    parse_page,
    read_duckduckgo,
    search_series,
    search_series_tables,
)
from tv100.tasks.web.http import HttpClient, HttpConfig

FIXTURES = Path(__file__).parent / "fixtures" / "search"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def urls(hits: list[SearchHit]) -> list[str]:
    return [h.image_url for h in hits]


# --------------------------------------------------------------------------- Bing parser


def test_bing_tiles_read_from_m_json():
    hits = parse_bing(fixture("bing_results.html"))
    assert hits[0] == SearchHit(
        image_url="https://static.wikia.nocookie.net/moonlit-harbor/images/a/a1/Poster.jpg"
        "/revision/latest?cb=20230514",
        thumb_url="https://tse1.mm.bing.net/th?id=OIP.aB3dE5fG7hI9jK1lM3nO5pQHaK9&pid=15.1",
        page_url="https://moonlit-harbor.fandom.com/wiki/Moonlit_Harbor",
        title="Moonlit Harbor (TV Series 2023\u2013 )",  # highlight marks U+E000/E001 dropped
        width=1000,
        height=1481,
    )
    # Tile 5 repeats tile 1's image (other host case, :443, fragment): dropped. Script
    # decoys ("murl" inside <script>) and related-search / ad links give no hits.
    assert urls(hits) == [
        hits[0].image_url,
        "https://i.mydramalist.com/Wq2Rx_4c",  # no file extension: a normal image URL
        "https://6.vikiplatform.com/image/0b1c2d3e4f/poster.png",
        "https://img.example.net/get?id=42&size=large",  # &amp; in the attribute decoded
    ]
    viki = hits[2]
    # No expw/exph on the detail link: the size comes from the tile's caption.
    assert (viki.width, viki.height) == (800, 1200)
    assert viki.thumb_url == "https://tse3.mm.bing.net/th?id=OIP.Kp7Lm9&pid=15.1"
    assert hits[1].title == "Moonlit Harbor - MyDramaList"
    assert (hits[3].width, hits[3].height) == (800, 600)


def test_bing_broken_tiles_give_what_is_valid():
    hits = parse_bing(fixture("bing_broken.html"))
    by_url = {h.image_url: h for h in hits}
    assert urls(hits) == [
        "https://cdn.example.org/posters/77.webp",  # no m: the detail link's mediaurl
        "https://pics.example.com/single.jpg",  # m as a single-quoted JS object
        "https://pics.example.com/attr.jpg",  # single-quoted attribute
        "https://pics.example.com/trunc.jpg",  # m cut inside turl
        "https://pics.example.com/seven.jpg",  # relative murl: detail link instead
        "https://pics.example.com/nine",
    ]
    no_m = by_url["https://cdn.example.org/posters/77.webp"]
    assert (no_m.width, no_m.height, no_m.page_url) == (600, 900, None)
    assert no_m.thumb_url == "https://tse1.mm.bing.net/th?id=OIP.Nm1&w=160&h=240"
    assert no_m.title == "No m attribute"
    single = by_url["https://pics.example.com/single.jpg"]
    assert single.page_url == "https://pics.example.com/page"
    assert single.thumb_url == "https://tse2.mm.bing.net/th?id=OIP.s1"
    assert single.title == "Single quoted"
    assert by_url["https://pics.example.com/attr.jpg"].title == "It's quoted"
    trunc = by_url["https://pics.example.com/trunc.jpg"]
    assert trunc.thumb_url == "https://tse3.mm.bing.net/th?id=OIP.t6"  # from the <img>
    seven = by_url["https://pics.example.com/seven.jpg"]
    assert (seven.page_url, seven.title, seven.width, seven.height) == (
        "https://pics.example.com/seven",
        "Relative murl",
        1920,
        1080,
    )
    nine = by_url["https://pics.example.com/nine"]
    assert (nine.title, nine.width, nine.height) == (None, None, None)  # "", "abc", "-5"
    assert nine.thumb_url == "https://tse1.mm.bing.net/th?id=OIP.n9"


def test_bing_detail_v2_links_without_tiles():
    hits = parse_bing(fixture("bing_detail_links.html"))
    assert hits == [
        SearchHit(
            "https://www.example.com/shows/moonlit/key-art.jpg",
            "https://tse1.mm.bing.net/th?id=OIP.Pq1&w=300&h=169&c=7",
            None,
            "Moonlit Harbor key art",
            1920,
            1080,
        ),
        SearchHit(  # absolute link, MediaUrl / ExpW / ExpH in other letter case
            "http://images.example.net/photo?id=9f8e",
            "https://tse2.mm.bing.net/th?id=OIP.Pq2&w=200&h=300",
            None,
            "Behind the scenes",
            427,
            640,
        ),
    ]


# --------------------------------------------------------------------------- Google parser

GOOGLE_HITS = [
    SearchHit(
        "https://www.moonlitharbor-tv.com/media/key-art.jpg",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcQx1Yz2Ab3Cd4Ef5Gh6Ij7Kl8Mn9Op0Qr1St2"
        "&usqp=CAU",
        "https://www.moonlitharbor-tv.com/about",
        "Moonlit Harbor | Official Site",
        1125,
        1500,
    ),
    SearchHit(
        "https://m.media-amazon.com/images/M/MV5BZTk3NzQ1YjAtZGQ0Ni00MDc1LWI1NmEtMzk4NDMwNTc3NDQ5",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcRa2Bc3De4Fg5Hi6Jk7Lm8No9Pq0Rs1Tu2Vw"
        "&usqp=CAU",
        "https://www.imdb.com/title/tt21234567/",
        "Moonlit Harbor (TV Series 2023\u2013 ) - IMDb",
        1382,
        2048,
    ),
    SearchHit(
        "https://img.example.net/get?id=42&size=large",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcS42&usqp=CAU",
        "https://img.example.net/gallery/42",
        "Episode 3 still",
        800,
        600,
    ),
    SearchHit(
        "https://pics.example.com/still-06.png",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcStill06",
        "https://pics.example.com/stills",
        None,
        1280,
        720,
    ),
]


def test_google_af_init_data_callback():
    # Full-size triples after thumbnails ([url, H, W]), \u003d / \u0026 decoded, page and
    # title from the entry's "2003" list; the related-searches chip, the ds:0 block, base64
    # thumbnails in the DOM and the repeated key art (other host case, :443) give no hits.
    assert parse_google(fixture("google_results.html")) == GOOGLE_HITS


def test_google_truncated_block_is_scanned_entry_by_entry():
    hits = parse_google(fixture("google_truncated.html"))
    assert hits == [
        SearchHit(
            "https://posters.example.com/moonlit-harbor/season-1.jpg",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT1&usqp=CAU",
            "https://posters.example.com/moonlit-harbor",
            "Moonlit Harbor & the Sea - season 1 poster",
            764,
            1200,
        ),
        SearchHit(
            "https://cdn.example.tv/stills/ep01/0042",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT2",
            "https://cdn.example.tv/moonlit-harbor/episode-1",
            'Episode 1: "The Lighthouse"',
            1920,
            1080,
        ),
        # Cut before its "2003" list: the image is known, its page and title are not.
        SearchHit(
            "https://fan.example.org/gallery/cast-photo.jpeg",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT3",
            None,
            None,
            1024,
            768,
        ),
    ]


def test_google_imgres_fallback():
    hits = parse_google(fixture("google_imgres.html"))
    assert hits == [
        SearchHit(
            "https://www.example.org/wp-content/uploads/2023/05/harbor.jpg",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcH1&s",
            "https://www.example.org/reviews/moonlit-harbor",
            "Review: Moonlit Harbor",
            1280,
            720,
        ),
        SearchHit(
            "https://cdn.example.tv/img/poster?id=7&v=2",
            "https://encrypted-tbn1.gstatic.com/images?q=tbn:ANd9GcH2",
            "https://cdn.example.tv/shows/7",
            None,
            1000,
            1500,
        ),
    ]


@pytest.mark.parametrize(
    "name,parser",
    [
        ("google_results.html", parse_google),
        ("bing_results.html", parse_bing),
        ("ddg_i.json", parse_duckduckgo),
    ],
)
def test_truncation_anywhere_never_invents_data(name, parser):
    content = fixture(name)
    full = {h.image_url: h for h in parser(content)}
    for cut in range(0, len(content), 53):
        for hit in parser(content[:cut]):
            whole = full[hit.image_url]  # never an image the whole page does not list
            for f in dataclasses.fields(SearchHit):
                value = getattr(hit, f.name)
                assert value is None or value == getattr(whole, f.name), (cut, f.name)


# --------------------------------------------------------------------------- DuckDuckGo


def test_duckduckgo_json():
    page = read_duckduckgo(fixture("ddg_i.json"))
    assert page.valid
    assert (
        page.next == "i.js?q=Moonlit%20Harbor%20TV%20Series&o=json&p=1&s=100&u=bing&f=,,,,,&l=us-en"
    )
    assert page.hits[1] == SearchHit(
        "https://i.mydramalist.com/Wq2Rx_4c",
        "https://tse2.mm.bing.net/th?id=OIP.Wq2Rx4cHaE8&pid=Api",
        "https://mydramalist.com/735121-moonlit-harbor",
        "Moonlit Harbor - MyDramaList",
        1280,
        720,
    )
    assert len(page.hits) == 3


def test_duckduckgo_broken_results():
    page = read_duckduckgo(fixture("ddg_broken.json"))
    assert page.valid and page.next is None  # "next": "" is the last page
    assert page.hits == [
        SearchHit("https://cdn.example.tv/stills/0007", None, None, "sizes as strings", 1920, 1080),
        SearchHit(
            "https://img.example.org/protocol-relative.jpg",
            "https://tse2.mm.bing.net/th?id=OIP.pr",
            "https://img.example.org/p",
            "spaced title",
            None,  # true is not a width
            None,  # -5 is not a height
        ),
        SearchHit("https://pics.example.com/a%20b.jpg", None, None, "space in URL", 640, 480),
    ]
    assert read_duckduckgo(b'{"results": [') == ([], None, False)
    assert read_duckduckgo(b"[1, 2]").valid is False
    assert read_duckduckgo(b'{"results": "nope"}') == ([], None, True)


@pytest.mark.parametrize(
    "content,token",
    [
        (fixture("ddg_page.html"), "4-211201371298312318573618426633357063738"),
        (fixture("ddg_page_quoted.html"), "4-98765432109876543210987654321098765432"),
        (b"<script>vqd='4-1234567890_abc-def';</script>", "4-1234567890_abc-def"),
        (b'{"q":"x","vqd":"4-55555555555555"}', "4-55555555555555"),
        (b"<a href='/d.js?q=x&vqd=4-77777777777&p=1'>", "4-77777777777"),
        (b"<html>no token here, vqd=unknown</html>", None),
        (b"", None),
        (b"\xff\xfe\x00vqd=\xff", None),
    ],
)
def test_extract_vqd(content, token):
    assert extract_vqd(content) == token


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        fixture("garbage.bin"),
        b"\xff\xfe\xfa" * 1000,
        b"<html><body><a class='iusc' m></a><a class=iusc m=\"{\"></a>",
        b"AF_initDataCallback({key: 'ds:1', data:[[[[[[",
        b"AF_initDataCallback(",
        b"[" * 5000 + b"]" * 5000,
        b'{"results": [{"image": "https://x.example/a.jpg", "width": 1e400}]',
        b'{"results": [{"image": "https://x.example/a.jpg", "width": 1e400}]}',
        b"AF_initDataCallback({key: 'ds:1', data:" + b"[" * 3000 + b"]" * 3000 + b"});",
        b"AF_initDataCallback({key: 'ds:1', data:" + b"[0," * 900 + b"0" + b"]" * 900 + b"});",
        "<p>\u00e9\u4e2d\U0001f600</p>".encode("utf-16"),
    ],
)
def test_parsers_never_crash(engine, content):
    hits = parse_page(engine, content)
    assert isinstance(hits, list)
    assert all(canonical_url(h.image_url) for h in hits)


def test_invalid_utf8_between_tiles_keeps_valid_tiles():
    page = fixture("bing_results.html")
    broken = page.replace(b'<li data-idx="2"', b'\xff\xfe\x80\xc3(<li data-idx="2"')
    assert parse_bing(broken) == parse_bing(page)
    assert len(parse_bing(broken)) == 4


def test_parse_page_dispatch_and_unknown_engine():
    assert parse_page("google", fixture("google_results.html")) == GOOGLE_HITS
    assert parse_page("duckduckgo", fixture("ddg_i.json"))[0].width == 1000
    assert len(parse_page("bing", fixture("bing_results.html"))) == 4
    with pytest.raises(ValueError, match="bing, duckduckgo, google"):
        parse_page("yahoo", b"")


# --------------------------------------------------------------------------- canonical URLs


@pytest.mark.parametrize(
    "url,canonical",
    [
        ("HTTPS://Example.COM:443/A/b.JPG?X=1&y=2#frag", "https://example.com/A/b.JPG?X=1&y=2"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://example.com:80/x", "https://example.com:80/x"),
        ("//cdn.example.com/img/ab12", "https://cdn.example.com/img/ab12"),
        ("http://[::1]:80/x", "http://[::1]/x"),
        ("https://example.com/a b.jpg", "https://example.com/a%20b.jpg"),
        ("https://example.com/x?b=2&a=1", "https://example.com/x?b=2&a=1"),
        ("ftp://example.com/x.jpg", None),
        ("data:image/png;base64,AAAA", None),
        ("/relative/path.jpg", None),
        ("https://example.com:99999/x", None),
        ("https:///nohost", None),
        ("https://exa\nmple.com/x", None),
        ("", None),
    ],
)
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


# --------------------------------------------------------------------------- configuration


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
    sandbox = SearchConfig.sandbox("http://127.0.0.1:1234/", max_pages=3)
    assert sandbox.base_url("google") == "http://127.0.0.1:1234/google"
    assert sandbox.max_pages == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_pages = 3  # type: ignore[misc]


def test_check_engines():
    assert check_engines(["google", "bing", "google"]) == ("google", "bing")
    assert check_engines("duckduckgo") == ("duckduckgo",)
    with pytest.raises(ValueError, match="known engines: bing, duckduckgo, google"):
        check_engines(["bing", "ddg"])
    with pytest.raises(ValueError, match="at least one"):
        check_engines([])


def test_duckduckgo_next_link_must_stay_on_the_engine():
    engine = DuckDuckGoEngine()
    here = "https://duckduckgo.com/i.js?q=x&o=json&vqd=4-1"
    page = read_duckduckgo(b'{"results": [], "next": "i.js?q=x&o=json&s=100"}')
    assert engine.next_url("https://duckduckgo.com", "x", here, page, 0, None, "4-1") == (
        "https://duckduckgo.com/i.js?q=x&o=json&s=100&vqd=4-1"
    )
    away = page._replace(next="https://elsewhere.example/i.js?s=100")
    assert engine.next_url("https://duckduckgo.com", "x", here, away, 0, None, "4-1") is None


# --------------------------------------------------------------------------- sandbox engines


@pytest.fixture(scope="module")
def catalog(world):
    from tv100.sandbox.imagehost import build_catalog

    return build_catalog(world, scale=0.5)


@pytest.fixture(scope="module")
def engines(world, catalog):
    """A sandbox server with the image host and the three engines."""
    with SandboxServer(world) as server:
        catalog.register(server)
        site = register_engines(server, world, catalog)
        yield server, site
        assert server.errors == []


def http_for(server: SandboxServer, **kw) -> HttpConfig:
    return HttpConfig(allow_hosts=(f"127.0.0.1:{server.port}",), **kw)


def fetch(server, engine, query, **kw):
    async def go():
        async with HttpClient(http_for(server, retries=0)) as client:
            return await ENGINES[engine].fetch(client, query, **kw)

    return asyncio.run(go())


def series_with_images(world, catalog, least: int) -> list:
    out = [t for t in world.titles if len(catalog.for_series(t.series_id)) >= least]
    assert out, f"no sandbox series with {least}+ images"
    return out


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


def test_bing_pages_until_no_new_hits(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 25)[0]
    expected = site.results("bing", title.series_id)
    n = len(expected)
    result = fetch(
        server,
        "bing",
        f"{title.title} TV Series",
        base_url=f"{server.base_url}/bing",
        cap=10_000,
        max_pages=100,
        page_size=10,
    )
    assert [r.hit.image_url for r in result.hits] == [
        server.base_url + i.url_path for i in expected
    ]
    assert [r.rank for r in result.hits] == list(range(1, n + 1))
    assert [r.page for r in result.hits] == [i // 10 + 1 for i in range(n)]
    first = result.hits[0].hit
    assert (first.width, first.height, first.title) == (
        expected[0].width,
        expected[0].height,
        expected[0].title,
    )
    assert first.page_url == server.base_url + expected[0].page_path
    # Past the end Bing repeats its last page: one more request, nothing new, stop.
    pages = result.pages
    assert len(pages) == math.ceil(n / 10) + 1
    assert all(p.status == "ok" and p.kind == "results" for p in pages)
    assert pages[-1].new_hits == 0 and pages[-1].hits and pages[-1].hits > 0
    assert "first=11" in pages[1].url and "count=10" in pages[1].url


def test_cap_and_max_pages_stop_paging(world, catalog, engines):
    server, _ = engines
    title = series_with_images(world, catalog, 40)[0]
    query = f"{title.title} TV Series"
    capped = fetch(server, "bing", query, base_url=f"{server.base_url}/bing", cap=15, page_size=10)
    assert len(capped.hits) == 15 and len(capped.pages) == 2
    assert capped.pages[-1].new_hits == 5
    limited = fetch(
        server, "google", query, base_url=f"{server.base_url}/google", max_pages=2, page_size=7
    )
    assert len(limited.pages) == 2 and len(limited.hits) == 14
    assert "start=7" in limited.pages[1].url and "tbm=isch" in limited.pages[1].url


def test_google_fetcher(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 20)[1]
    expected = site.results("google", title.series_id)
    result = fetch(
        server,
        "google",
        f"{title.title} TV Series",
        base_url=f"{server.base_url}/google",
        page_size=8,
        max_pages=100,
    )
    got = [r.hit for r in result.hits]
    assert [h.image_url for h in got] == [server.base_url + i.url_path for i in expected]
    assert [(h.width, h.height, h.title) for h in got] == [
        (i.width, i.height, i.title) for i in expected
    ]
    assert all(h.thumb_url and h.thumb_url.startswith(server.base_url) for h in got)
    # Past the end Google answers an empty page (it does not repeat): one more request.
    assert len(result.pages) == math.ceil(len(expected) / 8) + 1
    assert (result.pages[-1].hits, result.pages[-2].new_hits) == (0, len(expected) % 8 or 8)


def test_duckduckgo_vqd_flow(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 25)[2]
    query = f"{title.title} TV Series"
    expected = site.results("duckduckgo", title.series_id)
    result = fetch(
        server, "duckduckgo", query, base_url=f"{server.base_url}/ddg", page_size=5, max_pages=100
    )
    assert [r.hit.image_url for r in result.hits] == [
        server.base_url + i.url_path for i in expected
    ]
    token, *pages = result.pages
    assert (token.kind, token.page, token.status, token.hits) == ("token", 0, "ok", None)
    assert "iax=images" in token.url
    # Paging follows "next" (the token added back) and stops where the engine gives none.
    assert len(pages) == math.ceil(len(expected) / 5)
    assert all(f"vqd={site.vqd(query)}" in p.url for p in pages)
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))
    assert "s=5" in pages[1].url


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


def test_unknown_query_gives_empty_pages(engines):
    server, _ = engines
    for engine, path in (("bing", "bing"), ("google", "google"), ("duckduckgo", "ddg")):
        result = fetch(
            server, engine, "No Such Show TV Series", base_url=f"{server.base_url}/{path}"
        )
        assert result.hits == []
        assert result.pages[-1].status == "ok" and result.pages[-1].hits == 0


def test_failed_pages_are_recorded_and_logged(world, catalog, engines, caplog):
    server, site = engines
    title = series_with_images(world, catalog, 25)[0]
    query = f"{title.title} TV Series"

    def flaky(request: Request) -> Response | None:  # Bing whose second page is gone
        if request.query.get("first", "1") != "1":
            return Response.text("gone", status=404)
        return site.handle_bing(dataclasses.replace(request, path="/bing/images/search"))

    server.register("/flaky/", flaky)
    with caplog.at_level(logging.WARNING, logger="tv100.search"):
        result = fetch(server, "bing", query, base_url=f"{server.base_url}/flaky", page_size=10)
        missing = fetch(server, "duckduckgo", query, base_url=f"{server.base_url}/nowhere")
    assert len(result.hits) == 10
    assert [(p.page, p.status, p.http_status) for p in result.pages] == [
        (1, "ok", 200),
        (2, "http_error", 404),
    ]
    assert missing.hits == []
    assert [(p.kind, p.status, p.http_status) for p in missing.pages] == [
        ("token", "http_error", 404)
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "tv100.search"]
    assert any("results page 2 failed: http_error 404" in m for m in messages)
    assert any("token page 0 failed" in m for m in messages)


class FakeImage:
    def __init__(self, url_path: str, n: int) -> None:
        self.url_path = url_path
        self.title = f"still {n}"
        self.page_path = f"/page/{n}.html"
        self.width = 640 + n
        self.height = 480


class FakeCatalog:
    """Same interface as `ImageCatalog.for_series`; one series lists URL variants."""

    def __init__(self, series_id: str) -> None:
        self.series_id = series_id

    def for_series(self, series_id: str) -> list[FakeImage]:
        if series_id != self.series_id:
            return []
        paths = ["/img/a.jpg", "/img/b", "/img/a.jpg#zoom", "/img/c.png", "/img/b#x", "/img/d"]
        return [FakeImage(p, n) for n, p in enumerate(paths)]


def test_dedup_by_canonical_url_across_pages(world):
    title = world.titles[0]
    with SandboxServer(world) as server:
        register_engines(server, world, FakeCatalog(title.series_id))
        result = fetch(
            server,
            "bing",
            f"{title.title} TV Series",
            base_url=f"{server.base_url}/bing",
            page_size=2,
        )
        base = server.base_url
    assert [(r.rank, r.page, r.hit.image_url) for r in result.hits] == [
        (1, 1, f"{base}/img/a.jpg"),
        (2, 1, f"{base}/img/b"),
        (3, 2, f"{base}/img/c.png"),  # page 2 also listed a.jpg#zoom: a repeat
        (4, 3, f"{base}/img/d"),  # page 3 also listed b#x
    ]
    assert [(p.hits, p.new_hits) for p in result.pages] == [(2, 2), (2, 1), (2, 1), (2, 0)]


# --------------------------------------------------------------------------- search_series


def test_search_series_rows_schema_and_order(world, catalog, engines):
    server, site = engines
    picked = series_with_images(world, catalog, 30)[:3]
    series = [{"series_id": t.series_id, "title": t.title} for t in reversed(picked)]
    series.append({"series_id": "tt0000001", "title": "No Such Show"})
    config = SearchConfig.sandbox(server.base_url, per_series_cap=30, page_size=20)
    engines_ = ["google", "duckduckgo", "bing"]
    tables = search_series_tables(series, engines_, config, http_for(server))
    hits, pages = tables
    assert hits.schema == SEARCH_HITS and pages.schema == SEARCH_PAGES
    rows = hits.to_pylist()
    keys = [(r["series_id"], r["engine"], r["rank"]) for r in rows]
    assert keys == sorted(keys)
    for t in picked:
        for engine in ("bing", "google", "duckduckgo"):
            group = [r for r in rows if r["series_id"] == t.series_id and r["engine"] == engine]
            listed = site.results(engine, t.series_id)
            assert [r["rank"] for r in group] == list(range(1, min(30, len(listed)) + 1))
            assert [r["image_url"] for r in group] == [
                server.base_url + i.url_path for i in listed[:30]
            ]
            assert {r["query"] for r in group} == {f"{t.title} TV Series"}
            assert len({canonical_url(r["image_url"]) for r in group}) == len(group)
    assert not [r for r in rows if r["series_id"] == "tt0000001"]
    assert all(r["fetched_at"].tzinfo is not None for r in rows)
    assert hits.schema.field("fetched_at").type == pa.timestamp("us", tz="UTC")
    unknown = [p for p in pages.to_pylist() if p["series_id"] == "tt0000001"]
    assert {p["engine"] for p in unknown} == {"bing", "google", "duckduckgo"}
    assert all(p["status"] == "ok" for p in unknown)
    assert set(pages.column("status").to_pylist()) == {"ok"}

    # A rerun gives the same table except fetched_at; search_series returns the hits.
    again = search_series(series, engines_, config, http_for(server))
    assert again.drop_columns(["fetched_at"]).equals(hits.drop_columns(["fetched_at"]))
    assert again.column("fetched_at").type.tz == "UTC"
    assert min(again.column("fetched_at").to_pylist()) >= max(hits.column("fetched_at").to_pylist())


def test_search_series_query_template_and_failures(world, catalog, engines):
    server, _ = engines
    t = series_with_images(world, catalog, 10)[0]
    series = [{"series_id": t.series_id, "title": t.title}]
    config = SearchConfig.sandbox(
        server.base_url,
        query_template='"{title}"',
        per_series_cap=5,
        google_url=f"{server.base_url}/gone",
    )
    hits, pages = search_series_tables(
        series, ["bing", "google"], config, http_for(server, retries=0)
    )
    assert set(hits.column("engine").to_pylist()) == {"bing"}
    assert hits.num_rows == 5 and set(hits.column("query").to_pylist()) == {f'"{t.title}"'}
    failed = [p for p in pages.to_pylist() if p["status"] != "ok"]
    assert [(p["engine"], p["page"], p["http_status"]) for p in failed] == [("google", 1, 404)]
    assert failed[0]["error_message"]


def test_search_series_rejects_bad_input():
    config = SearchConfig()
    http = HttpConfig()
    with pytest.raises(ValueError, match="known engines: bing, duckduckgo, google"):
        search_series([{"series_id": "tt1", "title": "x"}], ["bing", "altavista"], config, http)
    with pytest.raises(ValueError, match="listed twice"):
        search_series(
            [{"series_id": "tt1", "title": "x"}, {"series_id": "tt1", "title": "y"}],
            ["bing"],
            config,
            http,
        )
    with pytest.raises(ValueError, match="title"):
        search_series([{"series_id": "tt1"}], ["bing"], config, http)


def test_engine_site_rejects_unknown_engine(world):
    site = EngineSite(world, FakeCatalog("tt0"))
    with pytest.raises(ValueError, match="unknown engine"):
        site.results("yahoo", "tt0")
