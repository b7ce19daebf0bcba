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
- ``/bing/th?id=…`` and ``/google/images?q=tbn:…`` — thumbnails: 302 to the full image.

A query names a sandbox title by its English (or original) title, case-insensitively, with
an optional " TV Series" suffix, quotes and a second level of URL-encoding tolerated.
Results come from ``catalog.for_series(series_id)``: Bing lists every image in rank order,
Google a seeded ~80% subset, mildly shuffled, DuckDuckGo a seeded ~60% subset in rank order
(`EngineSite.results`), each with absolute URLs on the server that was asked. Unknown
queries get an empty results page.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlencode

from tv100.sandbox.server import Request, Response
from tv100.tasks.collect.engines import ENGINE_NAMES

if TYPE_CHECKING:
    from tv100.sandbox.server import SandboxServer
    from tv100.sandbox.world import World

ENGINE_PATHS = {"bing": "/bing", "google": "/google", "duckduckgo": "/ddg"}
"""Where each engine is mounted on the sandbox server."""
PAGE_SIZES = {"bing": 35, "google": 100, "duckduckgo": 100}
MAX_PAGE_SIZE = {"bing": 150, "google": 100, "duckduckgo": 1000}
KEEP_FRACTION = {"bing": 1.0, "google": 0.8, "duckduckgo": 0.6}
_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u300c\u300d\u300e\u300f"
_QUOTE_TABLE = str.maketrans("", "", _QUOTES)
_SUFFIX = re.compile(r"\s*\btv\s+series$")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


class Image(Protocol):
    """What the engines read of a `tv100.sandbox.imagehost.HostedImage`."""

    @property
    def url_path(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def page_path(self) -> str | None: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


class Catalog(Protocol):
    """What the engines read of a `tv100.sandbox.imagehost.ImageCatalog`."""

    def for_series(self, series_id: str) -> Sequence[Image]: ...


def normalize_query(query: str) -> str:
    """The lookup key of a query or title: decoded, unquoted, case-folded, no suffix."""
    text = query
    for _ in range(2):
        if _PERCENT.search(text):
            text = unquote(text)
    text = " ".join(text.translate(_QUOTE_TABLE).casefold().split())
    return _SUFFIX.sub("", text).strip()


def _token(*parts: object, size: int = 8) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).hexdigest()


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
                self._thumbs.setdefault(_token("thumb", img.url_path, size=10), img.url_path)
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
        return _token("thumb", img.url_path, size=10)

    # ------------------------------------------------------------------ routing
    def register(self, server: SandboxServer) -> None:
        """Mount ``/bing/``, ``/google/`` and ``/ddg/`` on `server`."""
        server.register("/bing/", self.handle_bing)
        server.register("/google/", self.handle_google)
        server.register("/ddg", self.handle_ddg)

    def handle_bing(self, request: Request) -> Response | None:
        if request.path == "/bing/images/search":
            return self._bing(request)
        if request.path == "/bing/th":
            return self._thumb(request, request.query.get("id", "").removeprefix("OIP."))
        return None

    def handle_google(self, request: Request) -> Response | None:
        if request.path == "/google/search":
            return self._google(request)
        if request.path == "/google/images":
            return self._thumb(request, request.query.get("q", "").removeprefix("tbn:"))
        return None

    def handle_ddg(self, request: Request) -> Response | None:
        if request.path in ("/ddg", "/ddg/"):
            return self._ddg_html(request)
        if request.path == "/ddg/i.js":
            return self._ddg_json(request)
        return None

    def _thumb(self, request: Request, thumb_id: str) -> Response | None:
        with self._lock:
            path = self._thumbs.get(thumb_id.split("&")[0])
        if path is None:
            return None
        return Response(
            status=302,
            headers={"Location": request.base_url + path, "Content-Type": "text/plain"},
        )

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
            _bing_html(request.base_url, query, page, start, series_title, self._thumb_id)
        )

    # ------------------------------------------------------------------ Google
    def _google(self, request: Request) -> Response:
        query = request.query.get("q", "")
        images_mode = request.query.get("tbm") == "isch" or request.query.get("udm") == "2"
        if not images_mode:
            return _html_response(_google_web_html(query))
        size = _int(request, "num", PAGE_SIZES["google"], 1, MAX_PAGE_SIZE["google"])
        if "ijn" in request.query:
            start = _int(request, "ijn", 0, 0, 10_000) * size
        else:
            start = _int(request, "start", 0, 0)
        page, _ = self._page("google", query, start, size)
        seed = self.world.seed
        return _html_response(
            _google_html(request.base_url, query, page, start, seed, self._thumb_id)
        )

    # ------------------------------------------------------------------ DuckDuckGo
    def _ddg_html(self, request: Request) -> Response:
        query = request.query.get("q", "")
        return _html_response(_ddg_html(query, self.vqd(query)))

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
                "image_token": _token("ddg-image", img.url_path, size=32),
                "source": "Bing",
                "thumbnail": f"{base}/bing/th?id=OIP.{self._thumb_id(img)}&pid=Api",
                "thumbnail_token": _token("ddg-thumb", img.url_path, size=32),
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


def register_engines(server: SandboxServer, world: World, catalog: Catalog) -> EngineSite:
    """Mount the three engines on `server`; return the `EngineSite` (for ground truth)."""
    site = EngineSite(world, catalog)
    site.register(server)
    return site


def engine_urls(base_url: str) -> dict[str, str]:
    """The origin of each engine mounted on the server at `base_url`, by engine name.

    What the search stage takes to point its engines here (the collect flow's
    `engine_urls`, `tv100.tasks.collect.config.SearchConfig.from_engine_urls`).
    """
    base = base_url.rstrip("/")
    return {name: base + ENGINE_PATHS[name] for name in ENGINE_NAMES}


# --------------------------------------------------------------------------- markup


def _highlight(caption: str, series_title: str) -> str:
    """Bing's way of marking the query terms: U+E000 … U+E001 around the match."""
    if not series_title:
        return caption
    at = caption.casefold().find(series_title.casefold())
    if at < 0:
        return caption
    end = at + len(series_title)
    return caption[:at] + "\ue000" + caption[at:end] + "\ue001" + caption[end:]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _bing_html(
    base: str,
    query: str,
    page: list[Image],
    start: int,
    series_title: str,
    thumb_id: Callable[[Image], str],
) -> str:
    q = _e(query)
    qp = quote(query, safe="").replace("%20", "+")
    tiles: list[str] = []
    for n, img in enumerate(page):
        image = base + img.url_path
        page_url = base + img.page_path if img.page_path else base + "/"
        tid = thumb_id(img)
        turl = f"{base}/bing/th?id=OIP.{tid}&pid=15.1"
        m = {
            "sid": "",
            "cturl": "",
            "cid": tid[:8],
            "purl": page_url,
            "murl": image,
            "turl": turl,
            "md5": _token("md5", img.url_path, size=16),
            "shkey": "",
            "t": _highlight(img.title, series_title),
            "mid": _token("mid", img.url_path, size=16).upper(),
            "desc": "",
        }
        tw = 270 if img.width >= img.height else 160
        th = max(1, round(tw * img.height / max(img.width, 1)))
        detail = "/bing/images/search?" + urlencode(
            {
                "view": "detailV2",
                "ccid": tid[:8],
                "id": m["mid"],
                "thid": f"OIP.{tid}",
                "mediaurl": image,
                "exph": img.height,
                "expw": img.width,
                "q": query,
                "FORM": "IRPRST",
                "selectedIndex": start + n,
            }
        )
        fmt = img.url_path.rsplit(".", 1)[-1] if "." in img.url_path.rsplit("/", 1)[-1] else "jpeg"
        lazy = n >= 10
        src = (
            f'data-src="{_e(turl)}&amp;w={tw}&amp;h={th}" '
            'src="data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E"'
            if lazy
            else f'src="{_e(turl)}&amp;w={tw}&amp;h={th}&amp;c=7"'
        )
        tiles.append(
            f'<li data-idx="{start + n + 1}" data-hoq=""><div class="iuscp isv" data-evt="1" '
            f'style="width:{tw}px;height:{th + 43}px"><div class="imgpt" '
            f'style="width:{tw}px;height:{th}px"><a class="iusc" style="height:{th}px;'
            f'width:{tw}px" m="{_e(json.dumps(m, ensure_ascii=False, separators=(",", ":")))}" '
            f'href="{_e(detail)}" h="ID=images.5297_1,5006.{start + n + 1}">'
            f'<div class="img_cont hoff"><img class="mimg{" vimgld" if lazy else ""}" '
            f'height="{th}" width="{tw}" {src} alt="{_e(img.title)}" /></div></a>'
            f'<div class="img_info hon"><span class="nowrap">{img.width} × {img.height} · '
            f'{_e(fmt)}</span><div class="lnkw"><a target="_blank" aria-hidden="true" '
            f'tabindex="-1" href="{_e(page_url)}">{_e(base.split("//", 1)[-1])}</a></div>'
            f'</div></div><div class="infopt"><a class="inflnk" aria-label="Image result for '
            f'{q}" href="{_e(page_url)}"><ul class="b_dataList"><li>{_e(img.title)}</li></ul>'
            f"</a></div></div></li>"
        )
    if tiles:
        listing = f'<ul class="dgControl_list " data-row="0">{"".join(tiles)}</ul>'
    else:
        listing = (
            f'<div id="b_no_results" class="b_no"><h1>There are no results for <strong>{q}'
            "</strong></h1><ul><li>Check your spelling or try different keywords</li></ul></div>"
        )
    return (
        '<!DOCTYPE html><html dir="ltr" lang="en" xml:lang="en" '
        'xmlns="http://www.w3.org/1999/xhtml" xmlns:Web="http://schemas.live.com/Web/">'
        '<script type="text/javascript" nonce="c2FuZGJveA">//<![CDATA[\nsi_ST=new Date\n//]]>'
        f"</script><head><!--pc--><title>{q} - Search Images</title>"
        '<meta content="text/html; charset=utf-8" http-equiv="content-type" />'
        '<meta name="referrer" content="origin-when-cross-origin" />'
        '<link rel="icon" href="/sa/simg/favicon-trans-bg-blue-mg.ico" />'
        '<script type="text/javascript" nonce="c2FuZGJveA">//<![CDATA[\n'
        '_G={Region:"US",Lang:"en-US",Mkt:"en-US",RTL:false,Ver:"12",V:"images",P:"images",'
        f'IG:"{_token("ig", query, size=16).upper()}"}};\n'
        'var imgcfg={"murl":"https://r.bing.com/rp/placeholder.jpg","turl":""};\n//]]></script>'
        '<style type="text/css">.dgControl_list li{display:inline-block}.iusc{display:block}'
        '</style></head><body class="b_respl"><header id="b_header">'
        '<form action="/bing/images/search" id="sb_form" class="sb_form hassbi" role="search">'
        '<a class="b_logoArea" href="/bing/?FORM=Z9FD1"><h1 class="b_logo" title="Back to Bing '
        'search"></h1></a><input class="b_searchbox" id="sb_form_q" name="q" type="search" '
        f'value="{q}" maxlength="1000" /><input type="hidden" value="IRSBIQ" name="form" /></form>'
        '<nav class="b_scopebar"><ul><li><a href="/bing/search?q='
        f'{qp}&amp;FORM=HDRSC1">All</a></li><li class="b_active"><a href="/bing/images/search?q='
        f'{qp}&amp;FORM=HDRSC2">Images</a></li><li><a href="/bing/videos/search?q={qp}'
        '&amp;FORM=HDRSC3">Videos</a></li></ul></nav></header><div id="b_content"><div id="vm_c">'
        '<div class="dg_b isvctrl" id="mmComponent_images_2" data-evt="1">'
        f'{listing}</div><div id="relatedSearches" class="b_rs"><h2>Related searches</h2>'
        f'<ul><li><a href="/bing/images/search?q={qp}+cast&amp;FORM=IRPATC">{q} cast</a></li>'
        f'<li><a href="/bing/images/search?q={qp}+poster&amp;FORM=IRPATC">{q} poster</a></li>'
        '</ul></div></div></div><footer id="b_footer" class="b_footer"><ul>'
        '<li><a href="http://go.microsoft.com/fwlink/?LinkId=521839">Privacy and Cookies</a>'
        '</li><li><a href="http://go.microsoft.com/fwlink/?LinkID=246338">Legal</a></li></ul>'
        "</footer></body></html>"
    )


def _js_data(value: Any) -> str:
    """JSON written the way Google's pages do (``=``, ``&``, ``<``, ``>`` as \\u escapes)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for ch in "=&<>":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def _google_html(
    base: str,
    query: str,
    page: list[Image],
    start: int,
    seed: int,
    thumb_id: Callable[[Image], str],
) -> str:
    q = _e(query)
    entries: list[Any] = []
    tiles: list[str] = []
    for n, img in enumerate(page):
        tbnid = _token("tbnid", seed, img.url_path, size=7)
        docid = _token("docid", seed, img.url_path, size=7)
        host = base.split("//", 1)[-1]
        page_url = base + img.page_path if img.page_path else base + "/"
        scale = 300 / max(img.width, img.height, 1)
        tw, th = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        thumb = f"{base}/google/images?q=tbn:{thumb_id(img)}&usqp=CAU"
        entries.append(
            [
                1,
                [
                    0,
                    tbnid,
                    [thumb, th, tw],
                    [base + img.url_path, img.height, img.width],
                    None,
                    0,
                    "rgb({},{},{})".format(*(int(docid[i : i + 2], 16) for i in (0, 2, 4))),
                    None,
                    0,
                    {
                        "2000": [None, host, f"{(img.width * img.height) // 9000}KB"],
                        "2001": [None, None, None, 0, 0, 0, 0, 0, 0, None, 0],
                        "2003": [None, docid, page_url, img.title] + [None] * 10 + [host],
                        "2008": [None, img.title.split(" ")[0]],
                    },
                ],
                None,
                0,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                tbnid,
            ]
        )
        if n == 2:  # a "related searches" chip among the results, as on the real page
            entries.append(
                [7] + [None] * 9 + [[[f"{query} cast", [thumb, 100, 100], "/search?q=cast"]]]
            )
        if n < 20:
            tiles.append(
                f'<div jsaction="IE7JUb:e5gl8b" class="isv-r PNCib MSM1fd BUooTd" '
                f'data-id="dimg_{n + 1}" data-tbnid="{tbnid}" data-ri="{start + n}">'
                '<a class="wXeWr islib nfEiy" jsname="sTFXNd" tabindex="0" role="button">'
                '<div class="bRMDJf islir"><img class="rg_i Q4LuWd" src="data:image/gif;base64,'
                'R0lGODlhAQABAIAAAP///////yH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==" '
                f'alt="{_e(img.title)}"></div></a><a class="VFACy kGQAp sMi44c lNHeqe WGvvNb" '
                f'rel="noopener" target="_blank" href="{_e(page_url)}" title="{_e(img.title)}">'
                f'<div class="fxgdke">{_e(host)}</div></a></div>'
            )
    grid = [
        [
            "GRID_STATE0",
            None,
            entries,
            "",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            query,
            None,
            [None, None, None, "CAE="],
        ]
    ]
    data = [None, [None, None, None, [[grid]]], None, None, None, None, None, []]
    ds0 = [[[f"/search?q={quote(query)}&tbm=isch", None, query]], "en"]
    nonce = _token("nonce", query, size=9)
    return (
        '<!doctype html><html itemscope="" itemtype="http://schema.org/SearchResultsPage" '
        'lang="en"><head><meta charset="UTF-8"><meta content="/images/branding/googleg/1x/'
        'googleg_standard_color_128dp.png" itemprop="image">'
        f'<title>{q} - Google Search</title><script nonce="{nonce}">(function(){{var _g='
        f"{{kEI:'{_token('kei', query, size=8)}',kEXPI:'31',kBL:'Xb4G'}};window.google=_g;"
        "})();</script><style>.rg_i{display:block}.isv-r{display:inline-block}</style></head>"
        '<body jsmodel="hspDDf" class="srp"><div class="L3eUgb"><div id="searchform">'
        '<form class="tsf" action="/google/search" id="tsf" method="GET" name="f" '
        f'role="search"><input name="q" value="{q}" type="text" class="gLFyf" maxlength="2048" '
        'aria-label="Search"><input value="isch" name="tbm" type="hidden"></form></div>'
        f'<div id="hdtb-msb"><a class="hdtb-mitem" href="/google/search?q={quote(query)}">All'
        '</a><span class="hdtb-mitem hdtb-msel">Images</span></div>'
        f'<div id="islrg" class="islrg"><div class="islrc">{"".join(tiles)}</div></div>'
        f"<script nonce=\"{nonce}\">AF_initDataCallback({{key: 'ds:0', hash: '1', data:"
        f"{_js_data(ds0)}, sideChannel: {{}}}});</script>"
        f"<script nonce=\"{nonce}\">AF_initDataCallback({{key: 'ds:1', hash: '2', data:"
        f"{_js_data(data)}, sideChannel: {{}}}});</script>"
        '<footer id="fbar"><a href="https://policies.google.com/privacy?hl=en">Privacy</a>'
        '<a href="https://policies.google.com/terms?hl=en">Terms</a></footer></div></body>'
        "</html>"
    )


def _google_web_html(query: str) -> str:
    q = _e(query)
    return (
        '<!doctype html><html lang="en"><head><meta charset="UTF-8">'
        f'<title>{q} - Google Search</title></head><body><div id="search"><div id="rso">'
        f'<div class="g"><a href="https://en.wikipedia.org/wiki/Special:Search?search='
        f'{quote(query)}"><h3>{q} - Wikipedia</h3></a></div></div></div></body></html>'
    )


def _ddg_html(query: str, vqd: str) -> str:
    q = _e(query)
    qs = quote(query)
    return (
        '<!DOCTYPE html><html lang="en-US" class="no-js has-zcm  no-theme"><head>'
        '<meta name="description" content="DuckDuckGo. Privacy, Simplified.">'
        '<meta http-equiv="content-type" content="text/html; charset=utf-8">'
        f"<title>{q} at DuckDuckGo</title>"
        '<link rel="stylesheet" href="/dist/s.b49dcfb5899df4f917ee.css" type="text/css">'
        '<meta name="robots" content="noindex,nofollow"><meta name="referrer" content="origin">'
        '</head><body class="body--serp"><div class="site-wrapper js-site-wrapper">'
        '<div class="header-wrap js-header-wrap" id="header_wrapper"><form id="search_form" '
        'class="search--adv search--header js-search-form" name="x" action="/ddg/">'
        f'<input type="text" name="q" id="search_form_input" value="{q}">'
        '<input type="hidden" name="iax" value="images"><input type="hidden" name="ia" '
        'value="images"></form></div><div id="links_wrapper" class="serp__results">'
        '<div id="links" class="results js-results"></div></div></div>'
        '<script type="text/javascript">DDG.page = new DDG.Pages.SERP({ showSafeSearch: 0, '
        'instantAnswerAds: false, hostRegion: "use" });</script>'
        f'<script type="text/JavaScript">function nrji() {{nrj(\'/t.js?q={qs}&l=us-en&s=0&dl=en'
        f"&ct=US&ss_mkt=us&sp=0&vqd={vqd}&p_ent=&ex=-1&dfrsp=1');DDG.deep.initialize('/d.js?q="
        f"{qs}&l=us-en&s=0&dl=en&ct=US&vqd={vqd}&p_ent=&ex=-1&sp=0', false);}};"
        'DDG.ready(nrji, 1);</script><script type="text/javascript">DDG.ready(function () {'
        f"DDG.duckbar.load('images', {_js_data({'q': query})});}});</script></body></html>"
    )
