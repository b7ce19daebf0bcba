"""Image-search engines of the offline sandbox: Bing, Google and DuckDuckGo look-alikes.

`register_engines(server, world, catalog)` mounts, on a `tv100.sandbox.server.SandboxServer`:

- ``/bing/images/search?q=…&first=N&count=K`` — Bing Images HTML: ``a.iusc`` tiles with the
  HTML-escaped `m` JSON (murl, turl, purl, t with U+E000/U+E001 highlight marks) and the
  ``view=detailV2&mediaurl=…&expw=…&exph=…`` link. `first` is 1-based; 35 per page
  (`count` overrides, at most 150). Like the real Bing, asking past the end repeats the
  last page (a fetcher must stop when a page adds nothing new).
- ``/google/search?q=…&tbm=isch&start=N&num=K`` (or ``udm=2``; ``ijn=P`` pages by index) —
  Google Images HTML whose results live in ``AF_initDataCallback({key: 'ds:1', …, data:
  […]})`` (a thumbnail triple ``[url, h, w]`` followed by the full-size triple, then
  ``{"2003": [null, id, page, title, …]}``); 100 per page (`num` overrides). Without
  ``tbm=isch``/``udm=2`` it answers a web results page without images.
- ``/ddg/?q=…&iax=images&ia=images`` — DuckDuckGo's HTML page carrying the ``vqd`` token
  (in ``nrj('/t.js?…&vqd=4-…&…')``), and ``/ddg/i.js?q=…&o=json&vqd=…&s=N`` — the JSON
  ``{"results": […], "next": "i.js?…&s=N+100"}`` (no `next` on the last page). ``i.js``
  answers 403 without the right vqd for the query or without a ``Referer``. 100 per page
  (``n`` overrides; sandbox only).
- ``/bing/th?id=…`` and ``/google/images?q=tbn:…`` — thumbnails: the image shrunk to
  `tv100.sandbox.imagehost.THUMBNAIL_SIDE` (`ImageCatalog.thumbnail`), as the engines'
  thumbnail servers send them; 404 where the host has no decodable image.

Variants of an engine (`VARIANTS`) are mounted at ``<engine path>-<variant>`` (e.g.
``/google-basic``), so that pointing an engine there (`engine_urls`'s `variants`, the collect
flow's `engine_urls`) selects them:

- ``blocked`` (every engine) — the engine's bot check instead of every page: Bing's "One last
  step" captcha, Google's "enable JavaScript" page, DuckDuckGo's anomaly challenge (HTTP 202,
  on the token page and on ``i.js``);
- ``consent`` (Bing, Google) — a consent wall: Bing's cookie interstitial; for Google a 302
  to ``<prefix>/ml?continue=…``, its "Before you continue to Google" page;
- ``basic`` (Google) — the basic-HTML layout Google serves without JavaScript: 20 thumbnails
  per page behind ``/url?q=<page>`` links, titles in spans, no full-size URLs or sizes; the
  linked source pages name the full image in ``og:image``, except the image host's page
  plants (`tv100.sandbox.imagehost.PAGE_PLANTS`).

A query names a sandbox title by its English (or original) title, case-insensitively, with
an optional " TV Series" suffix, quotes and a second level of URL-encoding tolerated.
Results come from ``catalog.for_series(series_id)``: Bing lists every image in rank order,
Google a seeded ~80% subset, mildly shuffled, DuckDuckGo a seeded ~60% subset in rank order
(`EngineSite.results`), each with absolute URLs on the server that was asked. Unknown
queries get each engine's no-results answer (Bing's and Google's "no results" message,
DuckDuckGo's empty ``results`` list). The markup is in `tv100.sandbox.engine_markup` and
`tv100.sandbox.engine_blocks`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlencode

from tv100.sandbox.engine_blocks import (
    bing_captcha_html,
    bing_consent_html,
    ddg_anomaly_html,
    google_consent_html,
    google_enablejs_html,
)
from tv100.sandbox.engine_markup import (
    Image,
    bing_html,
    ddg_html,
    google_basic_html,
    google_html,
    google_web_html,
    token,
)
from tv100.sandbox.server import Request, Response
from tv100.tasks.collect.engines import ENGINE_NAMES

if TYPE_CHECKING:
    from tv100.sandbox.server import SandboxServer
    from tv100.sandbox.world import World

ENGINE_PATHS = {"bing": "/bing", "google": "/google", "duckduckgo": "/ddg"}
"""Where each engine is mounted on the sandbox server."""
WORLD_PREFIX = "/w/"
"""The engines are also served under ``/w/<listing key>`` (`EngineSite.mount_world`), so their
URLs, and with them the search stage's cache key, name what they list."""
VARIANTS: dict[str, tuple[str, ...]] = {
    "bing": ("blocked", "consent"),
    "google": ("blocked", "consent", "basic"),
    "duckduckgo": ("blocked",),
}
"""The variants each engine serves besides its normal pages (see the module's docstring)."""
PAGE_SIZES = {"bing": 35, "google": 100, "duckduckgo": 100}
BASIC_PAGE_SIZE = 20
"""Results per page of Google's basic-HTML layout (it ignores ``num``)."""
MAX_PAGE_SIZE = {"bing": 150, "google": 100, "duckduckgo": 1000}
KEEP_FRACTION = {"bing": 1.0, "google": 0.8, "duckduckgo": 0.6}
RESULT_PATHS = {
    "bing": ("/bing/images/search",),
    "google": ("/google/search",),
    "duckduckgo": ("/ddg", "/ddg/", "/ddg/i.js"),
}
"""The paths of each engine's pages (a variant answers them; thumbnails stay as they are)."""
_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u300c\u300d\u300e\u300f"
_QUOTE_TABLE = str.maketrans("", "", _QUOTES)
_SUFFIX = re.compile(r"\s*\btv\s+series$")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


class Catalog(Protocol):
    """What the engines read of a `tv100.sandbox.imagehost.ImageCatalog`."""

    def for_series(self, series_id: str) -> Sequence[Image]: ...

    def thumbnail(self, url_path: str) -> bytes | None: ...


def normalize_query(query: str) -> str:
    """The lookup key of a query or title: decoded, unquoted, case-folded, no suffix."""
    text = query
    for _ in range(2):
        if _PERCENT.search(text):
            text = unquote(text)
    text = " ".join(text.translate(_QUOTE_TABLE).casefold().split())
    return _SUFFIX.sub("", text).strip()


def _int(request: Request, name: str, default: int, low: int = 0, high: int = 10**9) -> int:
    try:
        value = int(request.query.get(name, ""))
    except ValueError:
        return default
    return max(low, min(high, value))


def _html_response(body: str, status: int = 200) -> Response:
    return Response(
        status=status,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "private, max-age=0",
            "Vary": "Accept-Encoding",
        },
        body=body.encode("utf-8"),
    )


class EngineSite:
    """The three engines over one world and image catalog (thread-safe, deterministic).

    Args:
        world: the sandbox ground truth (titles to resolve queries, seed for subsets).
        catalog: anything with ``for_series(series_id)`` returning images in rank order.
    """

    def __init__(self, world: World, catalog: Catalog) -> None:
        self.world = world
        self.catalog = catalog
        self._lock = threading.Lock()
        self._results: dict[tuple[str, str], list[Image]] = {}
        self._thumbs: dict[str, str] = {}
        self._index: dict[str, str] = {}
        for title in world.titles:  # sorted by series_id: the first title wins a collision
            for name in (title.title, title.original_title):
                key = normalize_query(name or "")
                if key:
                    self._index.setdefault(key, title.series_id)

    # ------------------------------------------------------------------ ground truth
    def resolve(self, query: str) -> str | None:
        """The series a query names, or None."""
        return self._index.get(normalize_query(query))

    def results(self, engine: str, series_id: str) -> list[Image]:
        """What `engine` lists for `series_id`, in its order (all pages together)."""
        if engine not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_NAMES)}")
        key = (engine, series_id)
        with self._lock:
            cached = self._results.get(key)
        if cached is not None:
            return list(cached)
        images = list(self.catalog.for_series(series_id))
        if engine != "bing" and images:
            rng = self.world.rng(series_id, f"engines/{engine}")
            keep = rng.random(len(images)) < KEEP_FRACTION[engine]
            if not keep.any():
                keep[0] = True
            order = list(range(len(images)))
            if engine == "google":
                noise = rng.normal(0.0, 1.5, len(images))
                order.sort(key=lambda i: (i + float(noise[i]), i))
            images = [images[i] for i in order if keep[i]]
        with self._lock:
            self._results[key] = images
            for img in images:
                self._thumbs.setdefault(token("thumb", img.url_path, size=10), img.url_path)
        return list(images)

    def vqd(self, query: str) -> str:
        """DuckDuckGo's token for an exact query string."""
        digest = hashlib.blake2b(f"{self.world.seed}\x1fvqd\x1f{query}".encode(), digest_size=16)
        return "4-" + str(int.from_bytes(digest.digest(), "big")).rjust(39, "0")[:39]

    def _page(self, engine: str, query: str, start: int, size: int) -> tuple[list[Image], int]:
        sid = self.resolve(query)
        images = self.results(engine, sid) if sid else []
        return images[start : start + size], len(images)

    def _thumb_id(self, img: Image) -> str:
        return token("thumb", img.url_path, size=10)

    # ------------------------------------------------------------------ routing
    def register(self, server: SandboxServer) -> None:
        """Mount ``/bing/``, ``/google/``, ``/ddg/`` and their `VARIANTS` on `server`."""
        server.register("/bing/", self.handle_bing)
        server.register("/google/", self.handle_google)
        server.register("/ddg", self.handle_ddg)
        for engine, variants in VARIANTS.items():
            for variant in variants:
                server.register(f"{ENGINE_PATHS[engine]}-{variant}/", self.variant(engine, variant))

    def mount_world(self, server: SandboxServer, key: str) -> str:
        """Serve `server`'s engines under ``/w/<key>`` too (the path after it routed as
        usual); return that prefix. `key` names what the engines list
        (`tv100.sandbox.imagehost.ImageCatalog.listing_key`): a search cached against one
        sandbox is never replayed against another."""
        prefix = f"{WORLD_PREFIX}{key}"

        def handle(request: Request) -> Response | None:
            inner = dataclasses.replace(request, path=request.path[len(prefix):] or "/")
            return server.route(inner)

        server.register(prefix + "/", handle)
        return prefix

    def variant(self, engine: str, variant: str) -> Callable[[Request], Response | None]:
        """The handler of `engine`'s `variant`, mounted at ``<engine path>-<variant>/``."""
        if variant not in VARIANTS.get(engine, ()):
            raise ValueError(f"{engine} has no variant {variant!r}; it has {VARIANTS.get(engine)}")
        prefix = f"{ENGINE_PATHS[engine]}-{variant}"
        normal = {"bing": self.handle_bing, "google": self.handle_google}.get(
            engine, self.handle_ddg
        )

        def handle(request: Request) -> Response | None:
            inner = dataclasses.replace(
                request, path=ENGINE_PATHS[engine] + request.path[len(prefix) :]
            )
            consent_page = variant == "consent" and inner.path == "/google/ml"
            if inner.path not in RESULT_PATHS[engine] and not consent_page:
                return normal(inner)  # thumbnails
            if variant == "blocked":
                return _blocked(engine, request)
            if variant == "consent":
                return _consent(engine, prefix, request, inner)
            return self._google_basic(inner)

        return handle

    def handle_bing(self, request: Request) -> Response | None:
        if request.path == "/bing/images/search":
            return self._bing(request)
        if request.path == "/bing/th":
            return self._thumb(request.query.get("id", "").removeprefix("OIP."))
        return None

    def handle_google(self, request: Request) -> Response | None:
        if request.path == "/google/search":
            return self._google(request)
        if request.path == "/google/images":
            return self._thumb(request.query.get("q", "").removeprefix("tbn:"))
        return None

    def handle_ddg(self, request: Request) -> Response | None:
        if request.path in ("/ddg", "/ddg/"):
            return self._ddg_html(request)
        if request.path == "/ddg/i.js":
            return self._ddg_json(request)
        return None

    def _thumb(self, thumb_id: str) -> Response | None:
        with self._lock:
            path = self._thumbs.get(thumb_id.split("&")[0])
        data = self.catalog.thumbnail(path) if path is not None else None
        if data is None:
            return None
        headers = {"Content-Type": "image/jpeg", "Cache-Control": "public, max-age=86400"}
        return Response(headers=headers, body=data)

    # ------------------------------------------------------------------ Bing
    def _bing(self, request: Request) -> Response:
        query = request.query.get("q", "")
        size = _int(request, "count", PAGE_SIZES["bing"], 1, MAX_PAGE_SIZE["bing"])
        start = _int(request, "first", 1, 1) - 1
        sid = self.resolve(query)
        images = self.results("bing", sid) if sid else []
        if images and start >= len(images):  # the real Bing repeats its last page
            start = max(0, len(images) - size)
        page = images[start : start + size]
        series_title = self.world.by_id[sid].title if sid else ""
        return _html_response(
            bing_html(request.base_url, query, page, start, series_title, self._thumb_id)
        )

    # ------------------------------------------------------------------ Google
    def _google(self, request: Request) -> Response:
        query = request.query.get("q", "")
        images_mode = request.query.get("tbm") == "isch" or request.query.get("udm") == "2"
        if not images_mode:
            return _html_response(google_web_html(query))
        size = _int(request, "num", PAGE_SIZES["google"], 1, MAX_PAGE_SIZE["google"])
        if "ijn" in request.query:
            start = _int(request, "ijn", 0, 0, 10_000) * size
        else:
            start = _int(request, "start", 0, 0)
        page, _ = self._page("google", query, start, size)
        seed = self.world.seed
        return _html_response(
            google_html(request.base_url, query, page, start, seed, self._thumb_id)
        )

    def _google_basic(self, request: Request) -> Response:
        query = request.query.get("q", "")
        if request.query.get("tbm") != "isch" and request.query.get("udm") != "2":
            return _html_response(google_web_html(query))
        start = _int(request, "start", 0, 0)
        page, total = self._page("google", query, start, BASIC_PAGE_SIZE)
        more = bool(page) and start + BASIC_PAGE_SIZE < total
        return _html_response(
            google_basic_html(
                request.base_url, query, page, start, BASIC_PAGE_SIZE, more, self._thumb_id
            )
        )

    # ------------------------------------------------------------------ DuckDuckGo
    def _ddg_html(self, request: Request) -> Response:
        query = request.query.get("q", "")
        return _html_response(ddg_html(query, self.vqd(query)))

    def _ddg_json(self, request: Request) -> Response:
        query = request.query.get("q", "")
        if request.query.get("vqd") != self.vqd(query) or not request.headers.get("referer"):
            return Response(
                status=403, headers={"Content-Type": "text/html"}, body=b"<h1>403 Forbidden</h1>"
            )
        size = _int(request, "n", PAGE_SIZES["duckduckgo"], 1, MAX_PAGE_SIZE["duckduckgo"])
        start = _int(request, "s", 0, 0)
        page, total = self._page("duckduckgo", query, start, size)
        base = request.base_url
        results = [
            {
                "height": img.height,
                "image": base + img.url_path,
                "image_token": token("ddg-image", img.url_path, size=32),
                "source": "Bing",
                "thumbnail": f"{base}/bing/th?id=OIP.{self._thumb_id(img)}&pid=Api",
                "thumbnail_token": token("ddg-thumb", img.url_path, size=32),
                "title": img.title,
                "url": base + img.page_path if img.page_path else base + "/",
                "width": img.width,
            }
            for img in page
        ]
        body: dict[str, Any] = {
            "ads": None,
            "query": query,
            "queryEncoded": quote(query),
            "response_type": "places",
            "results": results,
            "vqd": {quote(query): self.vqd(query)},
        }
        if page and start + size < total:
            params = {"q": query, "o": "json", "p": "1", "s": start + size, "u": "bing"}
            params.update({"f": ",,,,,", "l": "us-en"})
            if "n" in request.query:
                params["n"] = size
            body["next"] = "i.js?" + urlencode(params, quote_via=quote, safe=",")
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(headers={"Content-Type": "application/json; charset=utf-8"}, body=data)


def _blocked(engine: str, request: Request) -> Response:
    """The engine's bot check, whatever was asked."""
    query = request.query.get("q", "")
    if engine == "bing":
        return _html_response(bing_captcha_html(query, request.raw_target))
    if engine == "google":
        return _html_response(google_enablejs_html(query))
    return _html_response(ddg_anomaly_html(query), status=202)


def _consent(engine: str, prefix: str, request: Request, inner: Request) -> Response:
    """The engine's consent wall: Bing's interstitial; Google's redirect to its consent page."""
    if engine == "bing":
        return _html_response(bing_consent_html(request.query.get("q", "")))
    if inner.path == "/google/ml":
        return _html_response(google_consent_html(request.query.get("continue", "")))
    target = quote(request.base_url + request.raw_target, safe="")
    location = f"{request.base_url}{prefix}/ml?continue={target}&gl=DE&m=0&pc=srp&hl=en&src=1"
    return Response(status=302, headers={"Location": location, "Content-Type": "text/html"})


def register_engines(server: SandboxServer, world: World, catalog: Catalog) -> EngineSite:
    """Mount the three engines on `server`; return the `EngineSite` (for ground truth)."""
    site = EngineSite(world, catalog)
    site.register(server)
    return site


def engine_urls(
    base_url: str, variants: Mapping[str, str] | None = None, world: str | None = None
) -> dict[str, str]:
    """The origin of each engine mounted on the server at `base_url`, by engine name.

    What the search stage takes to point its engines here (the collect flow's
    `engine_urls`, `tv100.tasks.collect.config.SearchConfig.from_engine_urls`).

    Args:
        base_url: the sandbox server's ``http://host:port``.
        variants: engine name → one of its `VARIANTS` (e.g. ``{"google": "blocked"}``).
        world: the prefix of `EngineSite.mount_world` (``/w/<key>``), if mounted.

    Raises:
        ValueError: for an engine without that variant.
    """
    base = base_url.rstrip("/") + (world or "")
    chosen = dict(variants or {})
    for name, variant in chosen.items():
        if variant not in VARIANTS.get(name, ()):
            known = ", ".join(f"{e}: {'/'.join(v)}" for e, v in VARIANTS.items())
            raise ValueError(f"no sandbox variant {variant!r} of {name!r}; known: {known}")
    return {
        name: base + ENGINE_PATHS[name] + (f"-{chosen[name]}" if name in chosen else "")
        for name in ENGINE_NAMES
    }
