"""robots.txt in the HTTP layer: RFC 9309 statuses, caching, product-token groups, Crawl-delay,
and the sandbox's robots.txt honoured (disallowed paths are never requested).

HTTP tests run against real `SandboxServer`s on 127.0.0.1, each its own origin with its own
``/robots.txt``; what was requested is read from the server's request log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tv100.sandbox.robots import DISALLOWED_IMDB, PRIVATE_IMAGES, ROBOTS_TXT
from tv100.sandbox.server import Request, Response, SandboxServer
from tv100.tasks.web.client import HttpClient, fetch_all
from tv100.tasks.web.config import Fetched, HttpConfig
from tv100.tasks.web.robots import (
    ROBOTS,
    ROBOTS_DISALLOWED,
    Refusal,
    RobotsCache,
    RobotsPolicy,
    origin_of,
    product_token,
    robots_url,
    rules_from_fetch,
)

pytestmark = pytest.mark.timeout(120)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "robots"
UA = HttpConfig().user_agent


# -- helpers ---------------------------------------------------------------------------------


def requests_for(server: SandboxServer, path: str) -> int:
    """How many GETs of exactly `path` (query included) the server's log holds."""
    return sum(1 for line in server.request_log if line.startswith(f'"GET {path} '))


def requested(server: SandboxServer, path: str) -> bool:
    """Whether `path` was requested at all."""
    return requests_for(server, path) > 0


@contextmanager
def site(world, robots: Response | Callable[[Request], Response]) -> Iterator[SandboxServer]:
    """A fresh origin whose /robots.txt answers `robots`, with pages under /p/."""
    answer = robots if callable(robots) else (lambda _req: robots)
    with SandboxServer(world) as server:
        server.register("/robots.txt", answer)
        server.register("/p/", lambda req: Response.text(f"page {req.path}\n"))
        yield server


def config_for(server: SandboxServer, **kw) -> HttpConfig:
    return HttpConfig(allow_hosts=(f"127.0.0.1:{server.port}",), **{"retries": 0, **kw})


def get_all(
    server: SandboxServer, paths: list[str], robots: RobotsPolicy | None = ROBOTS, **kw
) -> list[Fetched]:
    """GET every path concurrently with one fresh client."""

    async def go() -> list[Fetched]:
        async with HttpClient(config_for(server, **kw), robots=robots) as client:
            return list(await asyncio.gather(*(client.get(server.base_url + p) for p in paths)))

    return asyncio.run(go())


def fetched(status: str, http_status: int | None = None, content: bytes = b"") -> Fetched:
    return Fetched(
        url="https://img.example/robots.txt",
        final_url="https://img.example/robots.txt",
        status=status,  # type: ignore[arg-type]
        http_status=http_status,
        headers={},
        content=content,
        error_message=None if status == "ok" else f"{status} {http_status}",
        attempts=1,
        elapsed_s=0.0,
    )


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "token"),
    [
        (UA, "tv100"),
        ("TV100/1.2", "tv100"),
        ("Mozilla/5.0 (compatible; Foobot/2.1)", "mozilla"),
        ("  mybot  ", "mybot"),
    ],
    ids=["default", "upper", "browser-like", "bare"],
)
def test_product_token(agent, token):
    assert product_token(agent) == token


def test_origin_and_robots_url():
    url = httpx.URL("https://user:pw@Images.Example.org/a/b.jpg?x=1#f")
    assert origin_of(url) == "https://images.example.org:443"
    assert robots_url(url) == "https://images.example.org/robots.txt"
    assert origin_of(httpx.URL("http://127.0.0.1:8080/x")) == "http://127.0.0.1:8080"
    assert robots_url(httpx.URL("http://[::1]:81/x")) == "http://[::1]:81/robots.txt"


@pytest.mark.parametrize(
    ("outcome", "state", "refused_as"),
    [
        (fetched("ok", 200, b"User-agent: *\nDisallow: /x\n"), "parsed", None),
        (fetched("http_error", 404), "unavailable", None),
        (fetched("http_error", 410), "unavailable", None),
        (fetched("http_error", 401), "unavailable", None),
        (fetched("http_error", 403), "unavailable", None),
        (fetched("http_error", 302), "unavailable", None),  # more redirects than allowed
        (fetched("http_error", 429), "unreachable", ROBOTS_DISALLOWED),
        (fetched("http_error", 500), "unreachable", ROBOTS_DISALLOWED),
        (fetched("http_error", 503), "unreachable", ROBOTS_DISALLOWED),
        (fetched("timeout"), "unreachable", "timeout"),  # no answer: the host is down
        (fetched("error"), "unreachable", "error"),
        (fetched("blocked"), "unreachable", "blocked"),
    ],
    ids=["200", "404", "410", "401", "403", "redirects", "429", "500", "503", "timeout",
         "error", "blocked"],
)  # fmt: skip
def test_rules_from_each_kind_of_answer(outcome, state, refused_as):
    policy = RobotsPolicy(ttl_s=100, unreachable_ttl_s=7)
    rules = rules_from_fetch("https://img.example:443", "tv100", outcome, policy, now=1000.0)
    assert rules.state == state
    assert rules.expires == 1000.0 + (7 if state == "unreachable" else 100)
    refusal = rules.refusal("https://img.example/y", policy)
    assert (refusal and refusal.status) == refused_as
    if refusal is not None:
        assert refusal.message.startswith("robots.txt of https://img.example:443 ")
        assert refusal.message.endswith("(RFC 9309 2.3.1.4)")


def test_site_robots_fixture_groups_wildcards_and_delays():
    """A large site's robots.txt (hand-made in the RFC 9309 format, with the usual mess: a BOM,
    CRLF, comments, several groups, wildcards and ``$``): tv100 falls in the ``*`` group."""
    content = (FIXTURES / "site_robots.txt").read_bytes()
    assert content.startswith(b"\xef\xbb\xbf") and b"\r\n" in content
    rules = rules_from_fetch("https://www.site.example:443", "tv100",
                             fetched("ok", 200, content), ROBOTS, now=0.0)  # fmt: skip
    allowed = {
        "https://www.site.example/title/tt0000001/": True,
        "https://www.site.example/title/tt0000001/mediaviewer/rm1/": False,
        "https://www.site.example/title/tt0000001/reviews?ref_=x": False,
        "https://www.site.example/search/title/?title_type=tv_series": True,
        "https://www.site.example/find?q=x": False,
        "https://www.site.example/find": False,
        "https://www.site.example/findings": True,  # `/find$` is anchored
        "https://www.site.example/images/private/a.jpg": False,
        "https://www.site.example/images/private/press/a.jpg": True,  # the longer Allow wins
        "https://www.site.example/robots.txt": True,
    }
    got = {url: rules.refusal(url, ROBOTS) is None for url in allowed}
    assert got == allowed
    assert rules.crawl_delay == 2.0
    other = rules_from_fetch("https://www.site.example:443", "otherbot",
                             fetched("ok", 200, content), ROBOTS, now=0.0)  # fmt: skip
    assert other.refusal("https://www.site.example/title/tt0000001/", ROBOTS) is not None


def test_cache_reads_each_origin_once_and_again_after_its_ttl():
    now = [0.0]
    answers = [fetched("http_error", 503), fetched("ok", 200, b"User-agent: *\nDisallow: /no\n")]
    asked: list[str] = []
    policy = RobotsPolicy(ttl_s=100, unreachable_ttl_s=10)

    async def fetch(url: str) -> Fetched:
        asked.append(url)
        await asyncio.sleep(0)  # let the other callers pile up on the same read
        return answers[min(len(asked), len(answers)) - 1]

    async def main() -> list[Refusal | None]:
        cache = RobotsCache(policy, UA, fetch, clock=lambda: now[0])
        url = httpx.URL("https://img.example/a.jpg")
        out = []
        results = await asyncio.gather(*(cache.refusal(url) for _ in range(5)))
        out.append(results[0][1])  # 503: everything disallowed
        now[0] = 9.0
        out.append((await cache.refusal(url))[1])  # still within unreachable_ttl_s
        now[0] = 10.5
        out.append((await cache.refusal(url))[1])  # asked again: now parsed, allowed
        out.append((await cache.refusal(httpx.URL("https://img.example/no")))[1])
        now[0] = 110.0
        out.append((await cache.refusal(url))[1])  # cached for ttl_s
        now[0] = 111.0
        await cache.refusal(url)  # expired: asked a third time
        assert cache.fetches == len(asked)
        return out

    out = asyncio.run(main())
    assert asked == ["https://img.example/robots.txt"] * 3
    assert out[0] is not None and out[0].status == ROBOTS_DISALLOWED and out[1] == out[0]
    assert "answered http_error 503: every path is disallowed for now" in out[0].message
    assert out[2] is None and out[4] is None
    assert out[3] == (ROBOTS_DISALLOWED, "robots.txt of https://img.example:443 disallows "
                      "this URL for 'tv100'")  # fmt: skip


def test_policy_is_validated():
    for bad in ({"ttl_s": -1}, {"unreachable_ttl_s": "10"}, {"max_bytes": 10},
                {"max_crawl_delay_s": float("nan")}):  # fmt: skip
        with pytest.raises(ValueError, match="RobotsPolicy"):
            RobotsPolicy(**bad)


# -- over HTTP -------------------------------------------------------------------------------


def test_disallowed_urls_are_never_requested(world):
    rules = "User-agent: *\nDisallow: /p/private/\nAllow: /p/private/ok\n"
    with site(world, Response.text(rules)) as server:
        paths = ["/p/public", "/p/private/a", "/p/private/ok-1", "/p/private/b?x=1"]
        out = dict(zip(paths, get_all(server, paths), strict=True))
        for path, expect in [("/p/public", "ok"), ("/p/private/a", ROBOTS_DISALLOWED),
                             ("/p/private/ok-1", "ok"), ("/p/private/b?x=1", ROBOTS_DISALLOWED)]:
            assert out[path].status == expect, path
            assert requests_for(server, path) == (1 if expect == "ok" else 0), path
        refused = out["/p/private/a"]
        assert refused.attempts == 0 and refused.http_status is None
        assert refused.error_message == (
            f"robots.txt of http://127.0.0.1:{server.port} disallows this URL for 'tv100'"
        )
        assert requests_for(server, "/robots.txt") == 1  # four concurrent requests, one read


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Response.text("missing\n", status=404), "ok"),
        (Response.text("gone\n", status=410), "ok"),
        (Response.text("log in\n", status=401), "ok"),
        (Response.text("forbidden\n", status=403), "ok"),
        (Response(status=302, headers={"Location": "/robots.txt"}), "ok"),  # a loop
        (Response.text("<html><body>Welcome</body></html>", content_type="text/html"), "ok"),
        (Response.text("slow down\n", status=429), ROBOTS_DISALLOWED),
        (Response.text("oops\n", status=500), ROBOTS_DISALLOWED),
        (Response.text("later\n", status=503), ROBOTS_DISALLOWED),
        (Response(body=b"User-agent: *\n", content_length=4096, close=True), "error"),  # cut
        (Response(body=b"User-agent: *\nAllow: /\n", delay=5.0), "timeout"),
    ],
    ids=["404", "410", "401", "403", "redirect-loop", "html-200", "429", "500", "503",
         "cut-short", "timeout"],
)  # fmt: skip
def test_robots_answer_decides_the_whole_origin(world, answer, status):
    """RFC 9309 2.3.1: 4xx allow everything; 5xx, 429 and no answer disallow everything (a
    robots.txt that got no answer at all refuses with its own status: the host is down)."""
    with site(world, answer) as server:
        (page,) = get_all(server, ["/p/page"], timeout_s=1.0, connect_timeout_s=1.0)
        if not answer.delay:  # a delayed answer is logged only once sent, after the test
            assert requested(server, "/robots.txt")
        assert page.status == status, page.error_message
        if status == "ok":
            assert requests_for(server, "/p/page") == 1
        else:
            assert not requested(server, "/p/page") and page.attempts == 0
            assert (page.error_message or "").startswith(
                f"robots.txt of http://127.0.0.1:{server.port} "
            )


def test_robots_redirect_is_followed(world):
    def routes(req: Request) -> Response:
        return Response(status=301, headers={"Location": "/p/moved-robots"})

    with site(world, routes) as server:
        server.register("/p/moved-robots",
                        lambda req: Response.text("User-agent: *\nDisallow: /p/x\n"))  # fmt: skip
        out = get_all(server, ["/p/x", "/p/y"])
        assert [f.status for f in out] == [ROBOTS_DISALLOWED, "ok"]


def test_groups_are_matched_on_the_product_token(world):
    """``tv100``'s own group applies (case-insensitively), ``*`` does not then, and a group for
    a word that merely appears in our User-Agent header ("crawler") is not ours."""
    rules = (
        "User-agent: crawler\nDisallow: /\n\n"
        "User-agent: TV100\nDisallow: /p/private\n\n"
        "User-agent: *\nDisallow: /\n"
    )
    with site(world, Response.text(rules)) as server:
        out = get_all(server, ["/p/public", "/p/private"])
        assert [f.status for f in out] == ["ok", ROBOTS_DISALLOWED]


def test_crawl_delay_becomes_the_hosts_interval_and_a_huge_one_disallows(world):
    async def interval(server: SandboxServer, path: str) -> tuple[Fetched, float]:
        async with HttpClient(config_for(server)) as client:
            got = await client.get(server.base_url + path)
            assert client.limiter is not None
            return got, client.limiter.interval("127.0.0.1")

    with site(world, Response.text("User-agent: *\nCrawl-delay: 0.25\n")) as server:
        page, seconds = asyncio.run(interval(server, "/p/a"))
        assert page.status == "ok" and seconds == 0.25
    with site(world, Response.text("User-agent: *\nCrawl-delay: 3600\n")) as server:
        page, _ = asyncio.run(interval(server, "/p/a"))
        assert page.status == ROBOTS_DISALLOWED and not requested(server, "/p/a")
        assert "Crawl-delay" in (page.error_message or "")


def test_robots_off_asks_nothing(world):
    with site(world, Response.text("User-agent: *\nDisallow: /\n")) as server:
        (page,) = get_all(server, ["/p/a"], robots=None)
        assert page.status == "ok" and not requested(server, "/robots.txt")
        urls = [f"{server.base_url}/p/b", f"{server.base_url}/p/c"]
        assert [f.status for f in fetch_all(urls, config_for(server))] == [ROBOTS_DISALLOWED] * 2
        assert [f.status for f in fetch_all(urls, config_for(server), robots=None)] == ["ok"] * 2


# -- the sandbox's robots.txt ----------------------------------------------------------------


def test_sandbox_serves_its_robots_txt(sandbox):
    got = httpx.get(f"{sandbox.base_url}/robots.txt", timeout=10)
    assert got.status_code == 200 and got.text == ROBOTS_TXT
    assert f"Disallow: {PRIVATE_IMAGES}\n" in ROBOTS_TXT
    assert all(f"Disallow: {p}\n" in ROBOTS_TXT for p in DISALLOWED_IMDB)


def test_sandbox_imdb_pages_honour_robots_txt(sandbox, world):
    """Title pages (what discover reads) are fetched; the media viewer, reviews and
    registration pages are not, and end as `robots_disallowed`."""
    series_id = world.titles[0].series_id
    allowed = [f"/title/{series_id}/", f"/de/title/{series_id}/"]
    refused = [
        f"/title/{series_id}/mediaviewer/rm1234567/",
        f"/title/{series_id}/reviews?ref_=tt_urv",
        "/registration/signin",
        "/ap/signin",
    ]
    before = requests_for(sandbox, "/robots.txt")
    out = get_all(sandbox, allowed + refused)
    assert requests_for(sandbox, "/robots.txt") == before + 1
    assert [f.status for f in out] == ["ok"] * len(allowed) + [ROBOTS_DISALLOWED] * len(refused)
    for path in refused:
        assert not requested(sandbox, path), path


def test_a_redirect_into_a_disallowed_path_stops_there(sandbox):
    target = f"{sandbox.base_url}{PRIVATE_IMAGES}abc123.jpg"
    (out,) = get_all(sandbox, [f"/_fault/redirect?to={target}"])
    assert out.status == ROBOTS_DISALLOWED and out.final_url == target
    assert out.attempts == 1  # the first hop was requested
    assert not requested(sandbox, f"{PRIVATE_IMAGES}abc123.jpg")


def test_search_engines_result_pages_do_not_consult_robots_txt(world):
    """The issue scopes robots.txt to IMDb pages and image hosts: real engines disallow their
    result pages to every crawler, so the collect search must not ask (``robots=None``)."""
    from tv100.sandbox.engines import engine_urls, register_engines
    from tv100.sandbox.imagehost import build_catalog
    from tv100.tasks.collect.config import SearchConfig
    from tv100.tasks.collect.search import search_series_tables

    catalog = build_catalog(world, scale=0.1)
    title = next(t for t in world.titles if catalog.for_series(t.series_id))
    with site(world, Response.text("User-agent: *\nDisallow: /\n")) as server:
        catalog.register(server)
        register_engines(server, world, catalog)
        config = SearchConfig.from_engine_urls(engine_urls(server.base_url), per_series_cap=5)
        hits, _pages = search_series_tables(
            [{"series_id": title.series_id, "title": title.title}], ["bing"], config,
            config_for(server),
        )
        assert hits.num_rows > 0
        assert not requested(server, "/robots.txt")
