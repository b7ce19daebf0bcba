"""Collect: find candidate images of each series with image search engines.

One interface, one adapter per engine (`ENGINES`): Bing Images, Google Images and DuckDuckGo.
Each adapter has

- a **pure parser** from a saved result page (bytes) to `SearchHit`s, which never raises on
  broken markup (missing attributes, non-JSON data, truncated scripts, empty pages, garbage
  bytes, invalid UTF-8) and returns whatever is valid, and
- an **async fetcher** (`SearchEngine.fetch`) that pages through the results with
  `tv100.tasks.web.http.HttpClient` until the per-series cap, `max_pages`, a page with no new hits, the
  end of the results or a failed page.

What each engine's markup looks like (as served in 2023-2024, and by `tv100.sandbox.engines`):

- **Bing** (`/images/search?q=…&first=N&count=K`): result tiles are ``<a class="iusc" m="…">``
  whose `m` attribute is HTML-escaped JSON with ``murl`` (image), ``turl`` (thumbnail),
  ``purl`` (page) and ``t`` (title, query terms wrapped in U+E000/U+E001). The tile's
  ``href`` (``/images/search?view=detailV2&…&mediaurl=…&expw=W&exph=H``) is a second route to
  the image URL and the only one to its size; any other ``mediaurl=`` link counts too.
- **Google** (`/search?q=…&tbm=isch&start=N`): the page's ``AF_initDataCallback({key: …,
  data: […]})`` scripts (a JS object literal, not JSON) hold one entry per result where a
  thumbnail triple ``["https://encrypted-tbn0.gstatic.com/images?q\\u003dtbn:…", H, W]`` is
  followed by the full-size triple ``["https://real/full.jpg", H, W]`` and, later in the same
  entry, ``{"2003": [null, id, page_url, title, …]}``. A truncated data block is scanned
  entry by entry; the older ``/imgres?imgurl=…&imgrefurl=…&w=…&h=…`` links are a fallback.
- **DuckDuckGo**: the HTML page (`/?q=…&iax=images&ia=images`) carries a ``vqd`` token
  (``vqd="4-…"``, ``vqd='4-…'``, ``vqd=4-…&`` or ``"vqd":"4-…"``); then
  ``i.js?q=…&o=json&vqd=…`` (sent with a ``Referer``) answers ``{"results": [{"image",
  "thumbnail", "url", "title", "width", "height"}], "next": "i.js?…&s=N"}``; paging follows
  ``next`` (the token is added when missing) until it is absent.

**Canonical URLs** (`canonical_url`): hits are deduplicated per series and engine by the
canonical form of their image URL: scheme and host lower-cased, the default port (80 for
http, 443 for https) dropped, an empty path written ``/``, the fragment dropped; path and
query are kept byte for byte (their case and parameter order can matter to the server). Only
absolute http(s) URLs are hits (``//host/x`` is read as https). Image URLs without a file
extension are normal (``/th?id=…``, ``/img/ab12``). Rows keep the URL as the engine gave it.

`search_series` runs every (series, engine) pair concurrently over one `HttpClient` and
returns the `search_hits` table (`SEARCH_HITS`); `search_series_tables` also returns the
`search_pages` table (`SEARCH_PAGES`): one row per request made, failed ones included, which
are also logged as warnings on the ``tv100.search`` logger. Rows are sorted (hits by
series_id, engine, rank; pages by series_id, engine, page) so reruns give identical tables
except for ``fetched_at``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from string import Formatter
from typing import Any, ClassVar, NamedTuple
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pyarrow as pa
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.storage.schemas import SEARCH_HITS, SEARCH_PAGES
from tv100.tasks.web.http import Fetched, HttpClient, HttpConfig
from tv100.tasks.web.markup import limit_nesting

log = logging.getLogger("tv100.search")

DEFAULT_QUERY_TEMPLATE = "{title} TV Series"
"""The query of the TV100 paper: the series' English title followed by "TV Series"."""

TEMPLATE_FIELDS = ("title", "original_title", "year", "series_id")
"""Placeholders a query template may use (`year` is the start year, empty when unknown)."""

_HIGHLIGHT = str.maketrans("", "", "\ue000\ue001")
_SPACES = re.compile(r"\s+")


def now_utc() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- hits and URLs


@dataclass(frozen=True)
class SearchHit:
    """One image result as an engine lists it.

    Attributes:
        image_url: the full-size image (absolute http(s) URL).
        thumb_url: the engine's thumbnail, if given.
        page_url: the page the image is shown on, if given.
        title: the result's title (plain text), if given.
        width: the full-size width in pixels the engine reports, if any.
        height: the full-size height in pixels the engine reports, if any.
    """

    image_url: str
    thumb_url: str | None = None
    page_url: str | None = None
    title: str | None = None
    width: int | None = None
    height: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The hit as a JSON-ready dict (field order as declared)."""
        return {
            "image_url": self.image_url,
            "thumb_url": self.thumb_url,
            "page_url": self.page_url,
            "title": self.title,
            "width": self.width,
            "height": self.height,
        }


def canonical_url(url: str) -> str | None:
    """The canonical form used to deduplicate hits; None if `url` is not absolute http(s).

    Scheme and host are lower-cased, the default port (80 for http, 443 for https) and the
    fragment are dropped and an empty path becomes ``/``; userinfo, path and query are kept
    as given. A scheme-relative ``//host/path`` is read as https.

    Args:
        url: any string.

    Returns:
        The canonical URL, or None.
    """
    if not isinstance(url, str):
        return None
    url = url.strip().replace(" ", "%20")
    if url.startswith("//"):
        url = "https:" + url
    if any(c in url for c in '\r\n\t\0\\<>"') or any(ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or "%" in host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0] + "@" if netloc[1] else ""
    return urlunsplit((scheme, userinfo + host, parts.path or "/", parts.query, ""))


def _url(value: Any) -> str | None:
    """`value` as an absolute http(s) URL (``//x`` read as https), else None."""
    if not isinstance(value, str):
        return None
    value = value.strip().replace(" ", "%20")
    if value.startswith("//"):
        value = "https:" + value
    return value if canonical_url(value) is not None else None


def _text(value: Any) -> str | None:
    """`value` as clean one-line text (highlight marks dropped), None when empty."""
    if not isinstance(value, str):
        return None
    value = _SPACES.sub(" ", value.translate(_HIGHLIGHT)).strip()
    return value or None


def _dim(value: Any) -> int | None:
    """A positive pixel size from an int or a digit string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    return None


def _make_hit(
    image: Any,
    thumb: Any = None,
    page: Any = None,
    title: Any = None,
    width: Any = None,
    height: Any = None,
) -> SearchHit | None:
    image_url = _url(image)
    if image_url is None:
        return None
    return SearchHit(
        image_url=image_url,
        thumb_url=_url(thumb),
        page_url=_url(page),
        title=_text(title),
        width=_dim(width),
        height=_dim(height),
    )


def _unique(hits: Iterable[SearchHit | None]) -> list[SearchHit]:
    """Valid hits, first occurrence of each canonical image URL, in order."""
    seen: set[str] = set()
    out: list[SearchHit] = []
    for hit in hits:
        if hit is None:
            continue
        key = canonical_url(hit.image_url)
        if key is None or key in seen:
            continue
        seen.add(key)
        out.append(hit)
    return out


def _decode(content: bytes | str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, bytes | bytearray | memoryview):
        return ""
    return bytes(content).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _html(content: bytes | str) -> LexborHTMLParser | None:
    text = _decode(content)
    if not text.strip():
        return None
    try:
        return LexborHTMLParser(limit_nesting(text))
    except Exception:  # selectolax gives up on some inputs; a page we cannot read has no hits
        return None


def _query_params(href: str) -> dict[str, str]:
    """First value of each query parameter of a (relative or absolute) link."""
    try:
        query = urlsplit(href).query
    except ValueError:
        return {}
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


# --------------------------------------------------------------------------- Bing

_JSONISH_FIELD = re.compile(
    r"""(?<![\w$])(?P<kq>["']?)(?P<key>murl|turl|purl|t)(?P=kq)\s*:\s*"""
    r"""(?P<q>["'])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)""",
    re.S,
)
_SIZE_TEXT = re.compile(r"(\d{1,6})\s*[×xX]\s*(\d{1,6})")


def _bing_m(m: str | None) -> dict[str, Any]:
    """The `m` attribute's fields: JSON when it is JSON, else a key-by-key scan."""
    if not m:
        return {}
    try:
        data = json.loads(m)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        return data
    fields: dict[str, Any] = {}
    for match in _JSONISH_FIELD.finditer(m):
        key = match.group("key")
        if key in fields:
            continue
        raw = match.group("value")
        if match.group("q") == "'":
            raw = raw.replace("\\'", "'").replace('"', '\\"')
        fields[key] = _json_string(raw) or raw
    return fields


def _bing_size_text(anchor: LexborNode) -> tuple[int | None, int | None]:
    """The "1920 × 1080 · jpeg" caption of the tile holding `anchor`, if any."""
    node: LexborNode | None = anchor
    for _ in range(6):
        node = node.parent if node is not None else None
        if node is None:
            return None, None
        if node.tag == "li" or "iuscp" in (node.attributes.get("class") or "").split():
            break
    if node is None:
        return None, None
    for info in node.css(".img_info span, .img_info"):
        match = _SIZE_TEXT.search(info.text(deep=True) or "")
        if match:
            return int(match.group(1)), int(match.group(2))
    return None, None


def _img_src(anchor: LexborNode) -> str | None:
    img = anchor.css_first("img")
    if img is None:
        return None
    attrs = img.attributes
    for name in ("src", "data-src", "data-iurl"):
        url = _url(attrs.get(name))
        if url is not None:
            return url
    return None


def _img_alt(anchor: LexborNode) -> str | None:
    img = anchor.css_first("img")
    return _text(img.attributes.get("alt")) if img is not None else None


def parse_bing(content: bytes) -> list[SearchHit]:
    """Hits of a Bing Images result page (``/images/search`` or ``/images/async``).

    Reads every ``a.iusc`` tile's `m` JSON (single-quoted or otherwise broken `m` is scanned
    key by key), falling back to the tile's ``mediaurl=`` link, and every other ``mediaurl=``
    link. Sizes come from the detail link's ``expw``/``exph`` or the tile's size caption.

    Args:
        content: the page as served.

    Returns:
        Valid hits in page order, one per image URL; [] for anything unreadable.
    """
    tree = _html(content)
    if tree is None:
        return []
    hits: list[SearchHit | None] = []
    for anchor in tree.css("a"):
        attrs = anchor.attributes
        classes = (attrs.get("class") or "").split()
        href = attrs.get("href") or ""
        if "iusc" not in classes and "mediaurl=" not in href.lower():
            continue
        params = {k.lower(): v for k, v in _query_params(href).items()}
        width, height = _dim(params.get("expw")), _dim(params.get("exph"))
        if "iusc" in classes:
            m = _bing_m(attrs.get("m"))
            if width is None or height is None:
                width, height = _bing_size_text(anchor)
            hits.append(
                _make_hit(
                    _url(m.get("murl")) or params.get("mediaurl"),
                    _url(m.get("turl")) or _img_src(anchor),
                    m.get("purl"),
                    _text(m.get("t")) or _img_alt(anchor),
                    width,
                    height,
                )
            )
        else:
            hits.append(
                _make_hit(
                    params.get("mediaurl"),
                    _img_src(anchor),
                    None,
                    _img_alt(anchor),
                    width,
                    height,
                )
            )
    return _unique(hits)


# --------------------------------------------------------------------------- Google

_AF_START = "AF_initDataCallback("
_AF_DATA = re.compile(r"[{,]\s*data\s*:\s*")
_JSON_STR = r'"((?:[^"\\]|\\.)*)"'
_TRIPLE_PAIR = re.compile(
    r"\[\s*" + _JSON_STR + r"\s*,\s*(\d+)\s*,\s*(\d+)\s*\]\s*,\s*"
    r"\[\s*" + _JSON_STR + r"\s*,\s*(\d+)\s*,\s*(\d+)\s*\]"
)
_INFO_2003 = re.compile(
    r'"2003"\s*:\s*\[\s*null\s*,\s*(?:'
    + _JSON_STR
    + r"|null)\s*,\s*"
    + _JSON_STR
    + r"\s*,\s*"
    + _JSON_STR
)


def _af_blocks(text: str) -> list[str]:
    """The text of each ``AF_initDataCallback(…)`` call (to its script's end)."""
    blocks: list[str] = []
    start = text.find(_AF_START)
    while start != -1:
        body_start = start + len(_AF_START)
        end = len(text)
        for stop in (text.find(_AF_START, body_start), text.find("</script", body_start)):
            if stop != -1:
                end = min(end, stop)
        blocks.append(text[body_start:end])
        start = text.find(_AF_START, body_start)
    return blocks


def _af_data(block: str) -> Any:
    """The `data:` value of one callback as Python, or None if it cannot be decoded."""
    match = _AF_DATA.search(block)
    if match is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(block, match.end())
    except (ValueError, RecursionError):
        return None
    return value


def _triple(value: Any) -> tuple[str, int, int] | None:
    """``[url, height, width]`` with an http(s) URL, else None."""
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
        and _url(value[0]) is not None
    ):
        return value[0], value[1], value[2]
    return None


def _google_info(items: Sequence[Any], exclude: set[str]) -> tuple[str | None, str | None]:
    """(page_url, title) from the result entry's ``{"2003": [null, id, page, title, …]}``."""
    fallback: tuple[str | None, str | None] = (None, None)
    for item in items:
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if not isinstance(value, list):
                continue
            if key == "2003" and len(value) > 3 and _url(value[2]) is not None:
                return value[2], value[3] if isinstance(value[3], str) else None
            if fallback == (None, None):
                for i, v in enumerate(value[:-1]):
                    if _url(v) is not None and v not in exclude and isinstance(value[i + 1], str):
                        fallback = (v, value[i + 1])
                        break
    return fallback


def _google_walk(data: Any) -> list[SearchHit | None]:
    """Result entries of a decoded data block, in document order."""
    hits: list[SearchHit | None] = []
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
            continue
        if not isinstance(node, list):
            continue
        entry: tuple[int, tuple[str, int, int], tuple[str, int, int]] | None = None
        for i in range(len(node) - 1):
            thumb, full = _triple(node[i]), _triple(node[i + 1])
            if thumb is not None and full is not None:
                entry = (i, thumb, full)
                break
        if entry is None:
            stack.extend(reversed(node))
            continue
        i, thumb, full = entry
        page, title = _google_info(node[i + 2 :], {thumb[0], full[0]})
        hits.append(_make_hit(full[0], thumb[0], page, title, full[2], full[1]))
    return hits


def _json_string(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads('"' + raw + '"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _google_scan(block: str) -> list[SearchHit | None]:
    """Entry-by-entry scan of a data block that is not decodable (e.g. truncated)."""
    hits: list[SearchHit | None] = []
    matches = list(_TRIPLE_PAIR.finditer(block))
    for n, match in enumerate(matches):
        end = matches[n + 1].start() if n + 1 < len(matches) else len(block)
        info = _INFO_2003.search(block, match.end(), end)
        page = _json_string(info.group(2)) if info else None
        title = _json_string(info.group(3)) if info else None
        hits.append(
            _make_hit(
                _json_string(match.group(4)),
                _json_string(match.group(1)),
                page,
                title,
                int(match.group(6)),
                int(match.group(5)),
            )
        )
    return hits


def _google_imgres(tree: LexborHTMLParser) -> list[SearchHit | None]:
    """The older ``/imgres?imgurl=…&imgrefurl=…&w=…&h=…`` result links."""
    hits: list[SearchHit | None] = []
    for anchor in tree.css("a"):
        href = anchor.attributes.get("href") or ""
        if "imgres?" not in href:
            continue
        params = _query_params(href)
        hits.append(
            _make_hit(
                params.get("imgurl"),
                _img_src(anchor),
                params.get("imgrefurl"),
                _img_alt(anchor) or params.get("title"),
                params.get("w"),
                params.get("h"),
            )
        )
    return hits


def parse_google(content: bytes) -> list[SearchHit]:
    """Hits of a Google Images result page.

    Reads the ``AF_initDataCallback`` data blocks (decoded when complete, scanned entry by
    entry when not) and then the older ``imgres?imgurl=`` links.

    Args:
        content: the page as served.

    Returns:
        Valid hits in page order, one per image URL; [] for anything unreadable.
    """
    text = _decode(content)
    hits: list[SearchHit | None] = []
    for block in _af_blocks(text):
        data = _af_data(block)
        hits.extend(_google_walk(data) if data is not None else _google_scan(block))
    if "imgres?" in text:
        tree = _html(text)
        if tree is not None:
            hits.extend(_google_imgres(tree))
    return _unique(hits)


# --------------------------------------------------------------------------- DuckDuckGo

_VQD = re.compile(r"""vqd["']?\s*[=:]\s*["']?(\d+-[0-9A-Za-z_-]{4,})""")


def extract_vqd(content: bytes) -> str | None:
    """The vqd token of a DuckDuckGo HTML page, or None.

    Accepts ``vqd="4-…"``, ``vqd='4-…'``, ``vqd=4-…&`` (in a link) and ``"vqd":"4-…"``.
    """
    match = _VQD.search(_decode(content))
    return match.group(1) if match else None


class ResultPage(NamedTuple):
    """A parsed result page: its hits, the engine's `next` link (DuckDuckGo only; None on
    the last page) and whether the page was in the engine's format at all."""

    hits: list[SearchHit]
    next: str | None
    valid: bool


def read_duckduckgo(content: bytes) -> ResultPage:
    """Decode one DuckDuckGo ``i.js`` JSON answer; `valid` is False when it is not JSON."""
    try:
        data = json.loads(_decode(content))
    except (ValueError, RecursionError):
        return ResultPage([], None, False)
    if not isinstance(data, dict):
        return ResultPage([], None, False)
    results = data.get("results")
    hits: list[SearchHit | None] = []
    if isinstance(results, list):
        for item in results:
            if not isinstance(item, dict):
                continue
            hits.append(
                _make_hit(
                    item.get("image"),
                    item.get("thumbnail"),
                    item.get("url"),
                    item.get("title"),
                    item.get("width"),
                    item.get("height"),
                )
            )
    nxt = data.get("next")
    return ResultPage(_unique(hits), nxt if isinstance(nxt, str) and nxt.strip() else None, True)


def parse_duckduckgo(content: bytes) -> list[SearchHit]:
    """Hits of a DuckDuckGo ``i.js`` JSON answer; [] for anything unreadable."""
    return read_duckduckgo(content).hits


# --------------------------------------------------------------------------- fetchers


@dataclass
class PageRecord:
    """One request made by a fetcher (a `search_pages` row without series and query)."""

    kind: str
    page: int
    url: str
    status: str
    http_status: int | None
    error_message: str | None
    hits: int | None
    new_hits: int | None
    fetched_at: datetime

    @classmethod
    def of(
        cls,
        kind: str,
        page: int,
        fetched: Fetched,
        *,
        status: str | None = None,
        error_message: str | None = None,
        hits: int | None = None,
        new_hits: int | None = None,
    ) -> PageRecord:
        return cls(
            kind=kind,
            page=page,
            url=fetched.url,
            status=status or fetched.status,
            http_status=fetched.http_status,
            error_message=error_message or fetched.error_message,
            hits=hits,
            new_hits=new_hits,
            fetched_at=now_utc(),
        )


@dataclass(frozen=True)
class RankedHit:
    """A hit kept by a fetcher: its 1-based rank after dedup and the page it was on."""

    rank: int
    page: int
    hit: SearchHit
    fetched_at: datetime


@dataclass
class EngineFetch:
    """What one fetch (one query on one engine) produced."""

    engine: str
    query: str
    hits: list[RankedHit] = field(default_factory=list)
    pages: list[PageRecord] = field(default_factory=list)

    @property
    def failed_pages(self) -> list[PageRecord]:
        return [p for p in self.pages if p.status != "ok"]


class SearchEngine(ABC):
    """One image search engine: URL scheme, parser and paging.

    Subclasses define `page_url`, `read_page` and, if needed, `prepare` (a first request
    before the result pages, e.g. DuckDuckGo's token) and `next_url`.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    default_page_size: ClassVar[int]

    def parse(self, content: bytes) -> list[SearchHit]:
        """Hits of one saved result page (pure; never raises on bad content)."""
        return self.read_page(content).hits

    @abstractmethod
    def read_page(self, content: bytes) -> ResultPage:
        """Hits and next link of one result page (`valid` False if not in the format)."""

    @abstractmethod
    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        """The URL of the result page starting at 0-based `offset`."""

    async def prepare(
        self, client: HttpClient, base_url: str, query: str, out: EngineFetch
    ) -> tuple[bool, Any]:
        """Run requests needed before the first result page; (ok, state for page URLs)."""
        return True, None

    def headers(self, base_url: str, state: Any) -> dict[str, str] | None:
        """Extra request headers for result pages."""
        return None

    def next_url(
        self,
        base_url: str,
        query: str,
        current_url: str,
        parsed: ResultPage,
        offset: int,
        page_size: int | None,
        state: Any,
    ) -> str | None:
        """The next result page's URL, or None when the engine says there is none."""
        return self.page_url(base_url, query, offset, page_size, state)

    async def fetch(
        self,
        client: HttpClient,
        query: str,
        *,
        base_url: str | None = None,
        cap: int = 200,
        max_pages: int = 10,
        page_size: int | None = None,
    ) -> EngineFetch:
        """Page through the results of `query` and keep the first `cap` distinct images.

        Stops at `cap` hits, after `max_pages` result pages, at a page that adds no new
        image, when the engine has no next page, or at a failed page (recorded in
        `EngineFetch.pages` and logged; the HTTP layer has already retried it).

        Args:
            client: an open `HttpClient`.
            query: the search query.
            base_url: the engine's origin (default `default_base_url`).
            cap: most hits to keep.
            max_pages: most result pages to request.
            page_size: results asked per page (None: the engine's default, not sent).

        Returns:
            The ranked hits (deduplicated by `canonical_url`) and one record per request.
        """
        base = (base_url or self.default_base_url).rstrip("/")
        out = EngineFetch(self.name, query)
        ok, state = await self.prepare(client, base, query, out)
        if not ok:
            return out
        seen: set[str] = set()
        offset = 0
        url: str | None = self.page_url(base, query, offset, page_size, state)
        page = 0
        while url is not None and page < max_pages and len(out.hits) < cap:
            page += 1
            fetched = await client.get(url, headers=self.headers(base, state))
            if not fetched.ok:
                record = PageRecord.of("results", page, fetched)
                out.pages.append(record)
                _warn(self.name, query, record)
                break
            parsed = self.read_page(fetched.content)
            if not parsed.valid:
                record = PageRecord.of(
                    "results",
                    page,
                    fetched,
                    status="parse_error",
                    error_message=f"{self.name} result page is not in the expected format",
                )
                out.pages.append(record)
                _warn(self.name, query, record)
                break
            when = now_utc()
            new = 0
            for hit in parsed.hits:
                if len(out.hits) >= cap:
                    break
                key = canonical_url(hit.image_url)
                if key is None or key in seen:
                    continue
                seen.add(key)
                new += 1
                out.hits.append(RankedHit(len(out.hits) + 1, page, hit, when))
            out.pages.append(
                PageRecord.of("results", page, fetched, hits=len(parsed.hits), new_hits=new)
            )
            if new == 0:
                break
            offset += len(parsed.hits)
            url = self.next_url(base, query, url, parsed, offset, page_size, state)
        return out


def _warn(engine: str, query: str, record: PageRecord) -> None:
    log.warning(
        "search %s %r: %s page %d failed: %s %s %s",
        engine,
        query,
        record.kind,
        record.page,
        record.status,
        record.http_status if record.http_status is not None else "",
        record.error_message or "",
    )


def _quote_query(params: Mapping[str, Any]) -> str:
    return urlencode({k: str(v) for k, v in params.items()}, safe=",")


class BingEngine(SearchEngine):
    """Bing Images: ``/images/search?q=…&first=N`` (1-based), ``count=`` sets the page size."""

    name = "bing"
    default_base_url = "https://www.bing.com"
    default_page_size = 35

    def read_page(self, content: bytes) -> ResultPage:
        return ResultPage(parse_bing(content), None, True)

    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        params: dict[str, Any] = {"q": query, "form": "HDRSC2", "first": offset + 1}
        if page_size is not None:
            params["count"] = page_size
        return f"{base_url}/images/search?{_quote_query(params)}"


class GoogleEngine(SearchEngine):
    """Google Images: ``/search?q=…&tbm=isch&start=N`` (0-based), ``num=`` sets the size."""

    name = "google"
    default_base_url = "https://www.google.com"
    default_page_size = 100

    def read_page(self, content: bytes) -> ResultPage:
        return ResultPage(parse_google(content), None, True)

    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        params: dict[str, Any] = {"q": query, "tbm": "isch", "hl": "en"}
        if offset:
            params["start"] = offset
        if page_size is not None:
            params["num"] = page_size
        return f"{base_url}/search?{_quote_query(params)}"


class DuckDuckGoEngine(SearchEngine):
    """DuckDuckGo: vqd token from ``/?q=…&iax=images&ia=images``, then ``i.js`` JSON pages.

    ``n=`` (page size) is understood by the sandbox only; the real engine ignores it.
    """

    name = "duckduckgo"
    default_base_url = "https://duckduckgo.com"
    default_page_size = 100

    def read_page(self, content: bytes) -> ResultPage:
        return read_duckduckgo(content)

    def token_url(self, base_url: str, query: str) -> str:
        return f"{base_url}/?{_quote_query({'q': query, 'iax': 'images', 'ia': 'images'})}"

    async def prepare(
        self, client: HttpClient, base_url: str, query: str, out: EngineFetch
    ) -> tuple[bool, Any]:
        fetched = await client.get(self.token_url(base_url, query))
        if not fetched.ok:
            record = PageRecord.of("token", 0, fetched)
        else:
            vqd = extract_vqd(fetched.content)
            if vqd is not None:
                out.pages.append(PageRecord.of("token", 0, fetched))
                return True, vqd
            record = PageRecord.of(
                "token",
                0,
                fetched,
                status="parse_error",
                error_message="no vqd token in the DuckDuckGo page",
            )
        out.pages.append(record)
        _warn(self.name, query, record)
        return False, None

    def headers(self, base_url: str, state: Any) -> dict[str, str] | None:
        return {"Referer": base_url + "/", "Accept": "application/json, text/javascript, */*"}

    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        params: dict[str, Any] = {
            "l": "us-en",
            "o": "json",
            "q": query,
            "vqd": state,
            "f": ",,,,,",
            "p": "1",
        }
        if offset:
            params["s"] = offset
        if page_size is not None:
            params["n"] = page_size
        return f"{base_url}/i.js?{_quote_query(params)}"

    def next_url(
        self,
        base_url: str,
        query: str,
        current_url: str,
        parsed: ResultPage,
        offset: int,
        page_size: int | None,
        state: Any,
    ) -> str | None:
        if parsed.next is None:
            return None
        url = urljoin(current_url, parsed.next.strip())
        here, there = urlsplit(current_url), urlsplit(url)
        if (here.scheme, here.netloc) != (there.scheme, there.netloc):
            log.warning("search duckduckgo %r: next link %r leaves the engine", query, url)
            return None
        params = parse_qs(there.query, keep_blank_values=True)
        if "vqd" not in params:
            url += ("&" if there.query else "?") + urlencode({"vqd": state})
        return url


ENGINES: dict[str, SearchEngine] = {
    "bing": BingEngine(),
    "google": GoogleEngine(),
    "duckduckgo": DuckDuckGoEngine(),
}
"""The adapters by engine name (the `engine` column and the CLI's names)."""


def check_engines(engines: Iterable[str]) -> tuple[str, ...]:
    """Validate engine names; return them in order without repeats.

    Raises:
        ValueError: for an empty list or an unknown name (listing the known ones).
    """
    if isinstance(engines, str):
        engines = [engines]
    names: list[str] = []
    for name in engines:
        if name not in ENGINES:
            raise ValueError(
                f"unknown search engine {name!r}; known engines: {', '.join(sorted(ENGINES))}"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"engines must name at least one of: {', '.join(sorted(ENGINES))}")
    return tuple(names)


def parse_page(engine: str, content: bytes) -> list[SearchHit]:
    """Parse one saved result page of `engine` (for ``tv100 inspect``).

    Args:
        engine: ``bing``, ``google`` or ``duckduckgo``.
        content: the saved page: HTML for Bing and Google, the ``i.js`` JSON for DuckDuckGo.

    Returns:
        The hits in page order.

    Raises:
        ValueError: for an unknown engine (listing the known ones).
    """
    (name,) = check_engines([engine])
    return ENGINES[name].parse(content)


# --------------------------------------------------------------------------- configuration


def _check_base_url(name: str, value: Any) -> str:
    problem = None
    if not isinstance(value, str) or not value.strip():
        problem = "a non-empty string"
    else:
        try:
            parts = urlsplit(value.strip())
            _ = parts.port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
        ):
            problem = "an http(s) URL without query or fragment"
    if problem:
        raise ValueError(f"{name} must be {problem} (e.g. 'https://www.bing.com'), got {value!r}")
    return str(value).strip().rstrip("/")


def _check_count(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search run; validated on construction.

    Attributes:
        query_template: the query, with placeholders from `TEMPLATE_FIELDS` (``{title}`` or
            ``{original_title}`` required); default the paper's ``"{title} TV Series"``.
        per_series_cap: most hits kept per series and engine.
        max_pages: most result pages requested per series and engine.
        page_size: results asked per page (Bing ``count``, Google ``num``, sandbox DuckDuckGo
            ``n``); None sends nothing and lets each engine use its own size.
        bing_url: Bing's origin (the sandbox: ``http://127.0.0.1:PORT/bing``).
        google_url: Google's origin (the sandbox: ``…/google``).
        duckduckgo_url: DuckDuckGo's origin (the sandbox: ``…/ddg``).
    """

    query_template: str = DEFAULT_QUERY_TEMPLATE
    per_series_cap: int = 200
    max_pages: int = 10
    page_size: int | None = None
    bing_url: str = BingEngine.default_base_url
    google_url: str = GoogleEngine.default_base_url
    duckduckgo_url: str = DuckDuckGoEngine.default_base_url

    def __post_init__(self) -> None:
        template = self.query_template
        if not isinstance(template, str) or not template.strip():
            raise ValueError(
                f"query_template must be a non-empty string like {DEFAULT_QUERY_TEMPLATE!r}, "
                f"got {template!r}"
            )
        try:
            used = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
            template.format(**{f: "x" for f in TEMPLATE_FIELDS})
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"query_template {template!r} is not a valid template: {exc!s}; "
                f"placeholders allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            ) from None
        if not used & {"title", "original_title"}:
            raise ValueError(
                f"query_template {template!r} must contain {{title}} or {{original_title}}"
            )
        _check_count("per_series_cap", self.per_series_cap, 1, 100_000)
        _check_count("max_pages", self.max_pages, 1, 1_000)
        if self.page_size is not None:
            _check_count("page_size", self.page_size, 1, 1_000)
        for name in ("bing_url", "google_url", "duckduckgo_url"):
            object.__setattr__(self, name, _check_base_url(name, getattr(self, name)))

    @classmethod
    def sandbox(cls, base_url: str, **overrides: Any) -> SearchConfig:
        """A config pointing every engine at a `tv100.sandbox.server.SandboxServer`."""
        base = base_url.rstrip("/")
        urls = {
            "bing_url": f"{base}/bing",
            "google_url": f"{base}/google",
            "duckduckgo_url": f"{base}/ddg",
        }
        return cls(**{**urls, **overrides})

    def base_url(self, engine: str) -> str:
        """The origin configured for `engine`."""
        (name,) = check_engines([engine])
        return str(getattr(self, f"{name}_url"))

    def query(self, series: Mapping[str, Any]) -> str:
        """The query for one series (whitespace collapsed)."""
        title = series.get("title") or ""
        year = series.get("start_year")
        values = {
            "title": title,
            "original_title": series.get("original_title") or title,
            "year": "" if year is None else str(year),
            "series_id": series.get("series_id") or "",
        }
        return _SPACES.sub(" ", self.query_template.format(**values)).strip()


# --------------------------------------------------------------------------- search_series


class SearchTables(NamedTuple):
    """The tables of one search run: `search_hits` and `search_pages`."""

    hits: pa.Table
    pages: pa.Table


def _check_series(series: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(series):
        if not isinstance(item, Mapping):
            raise ValueError(f"series[{i}] must be a mapping with series_id and title")
        sid, title = item.get("series_id"), item.get("title")
        if not isinstance(sid, str) or not sid:
            raise ValueError(f"series[{i}] needs a non-empty string series_id, got {sid!r}")
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"series[{i}] ({sid}) needs a non-empty string title, got {title!r}")
        if sid in seen:
            raise ValueError(f"series[{i}]: series_id {sid} is listed twice")
        seen.add(sid)
        out.append(item)
    return out


def _tables(results: list[tuple[str, EngineFetch]]) -> SearchTables:
    hit_rows: list[dict[str, Any]] = []
    page_rows: list[dict[str, Any]] = []
    for sid, res in results:
        for r in res.hits:
            hit_rows.append(
                {
                    "series_id": sid,
                    "engine": res.engine,
                    "query": res.query,
                    "page": r.page,
                    "rank": r.rank,
                    **r.hit.to_dict(),
                    "fetched_at": r.fetched_at,
                }
            )
        for p in res.pages:
            page_rows.append(
                {
                    "series_id": sid,
                    "engine": res.engine,
                    "query": res.query,
                    "kind": p.kind,
                    "page": p.page,
                    "url": p.url,
                    "status": p.status,
                    "http_status": p.http_status,
                    "error_message": p.error_message,
                    "hits": p.hits,
                    "new_hits": p.new_hits,
                    "fetched_at": p.fetched_at,
                }
            )
    hit_rows.sort(key=lambda r: (r["series_id"], r["engine"], r["rank"]))
    page_rows.sort(key=lambda r: (r["series_id"], r["engine"], r["page"]))
    return SearchTables(
        pa.Table.from_pylist(hit_rows, schema=SEARCH_HITS),
        pa.Table.from_pylist(page_rows, schema=SEARCH_PAGES),
    )


async def search_series_async(
    series: Iterable[Mapping[str, Any]],
    engines: Iterable[str],
    config: SearchConfig,
    client: HttpClient,
) -> SearchTables:
    """Search every series on every engine over an open client (see `search_series`)."""
    names = check_engines(engines)
    items = _check_series(series)

    async def one(item: Mapping[str, Any], name: str) -> tuple[str, EngineFetch]:
        result = await ENGINES[name].fetch(
            client,
            config.query(item),
            base_url=config.base_url(name),
            cap=config.per_series_cap,
            max_pages=config.max_pages,
            page_size=config.page_size,
        )
        return str(item["series_id"]), result

    results = await asyncio.gather(*(one(item, name) for item in items for name in names))
    tables = _tables(list(results))
    failed = sum(1 for _, r in results for _p in r.failed_pages)
    if failed:
        log.warning("search: %d of %d requests failed", failed, tables.pages.num_rows)
    return tables


def search_series_tables(
    series: Iterable[Mapping[str, Any]],
    engines: Iterable[str],
    config: SearchConfig,
    http: HttpConfig,
) -> SearchTables:
    """Search every series on every engine; return `search_hits` and `search_pages`.

    Args:
        series: mappings with ``series_id`` and ``title`` (and optionally
            ``original_title`` and ``start_year`` for the query template).
        engines: engine names from `ENGINES`.
        config: the search settings.
        http: the HTTP layer's settings (allow-list the sandbox's ``127.0.0.1:PORT``).

    Returns:
        `SearchTables`: hits sorted by (series_id, engine, rank), pages by
        (series_id, engine, page).

    Raises:
        ValueError: for unknown engines or malformed series (nothing is fetched then).
    """
    names = check_engines(engines)
    items = _check_series(series)

    async def run() -> SearchTables:
        async with HttpClient(http) as client:
            return await search_series_async(items, names, config, client)

    return asyncio.run(run())


def search_series(
    series: Iterable[Mapping[str, Any]],
    engines: Iterable[str],
    config: SearchConfig,
    http: HttpConfig,
) -> pa.Table:
    """Search every series on every engine; return the `search_hits` table.

    Failed pages are logged on the ``tv100.search`` logger; use `search_series_tables` to
    get them as the `search_pages` table as well.

    Args:
        series: mappings with ``series_id`` and ``title``.
        engines: engine names from `ENGINES`.
        config: the search settings.
        http: the HTTP layer's settings.

    Returns:
        The `search_hits` table (`SEARCH_HITS`), sorted by (series_id, engine, rank).
    """
    return search_series_tables(series, engines, config, http).hits


# --- Prefect task: a thin wrapper ---------------------------------------------------------


@task(
    name="search-images",
    cache_policy=INPUTS + TASK_SOURCE,
    cache_expiration=timedelta(days=6),
)
def search_task(
    series: list[dict[str, Any]], engines: list[str], config: SearchConfig, http: HttpConfig
) -> SearchTables:
    """Search results change slowly: cached six days, so a weekly run searches again.

    The collect flow maps it over the engines (one task each, each engine one host); their
    parts are put together by `merge_search_tables`.
    """
    return search_series_tables(series, engines, config, http)


def merge_search_tables(parts: Sequence[SearchTables]) -> SearchTables:
    """One run's `SearchTables` from parts searched separately (per engine or per batch).

    Ordered as `search_series_tables` orders a single run over everything: hits by
    (series_id, engine, rank), pages by (series_id, engine, page). The sort is stable and
    each (series, engine) pair comes from one part, so the rows equal a single run's.
    """
    if not parts:
        return SearchTables(SEARCH_HITS.empty_table(), SEARCH_PAGES.empty_table())
    hits = pa.concat_tables([p.hits for p in parts])
    pages = pa.concat_tables([p.pages for p in parts])
    by = [("series_id", "ascending"), ("engine", "ascending")]
    return SearchTables(
        hits.sort_by([*by, ("rank", "ascending")]),
        pages.sort_by([*by, ("page", "ascending")]),
    )
