"""DuckDuckGo Images: the token and JSON parsers and the engine.

The HTML page (``/?q=…&iax=images&ia=images``) carries a ``vqd`` token (``vqd="4-…"``,
``vqd='4-…'``, ``vqd=4-…&`` or ``"vqd":"4-…"``); then ``i.js?q=…&o=json&vqd=…`` (sent with
a ``Referer``) answers ``{"results": [{"image", "thumbnail", "url", "title", "width",
"height"}], "next": "i.js?…&s=N"}``; paging follows ``next`` (the token is added when
missing) until it is absent.

Page classes (`tv100.tasks.collect.pages`): an ``i.js`` answer is ``results`` when its
``results`` list has an item with an image URL and ``no_results`` when that list is empty;
``blocked`` when DuckDuckGo answers its bot challenge (the ``anomaly-modal`` page:
"Unfortunately, bots use DuckDuckGo too") instead of JSON; ``unknown_layout`` otherwise.
The token page is ``ok`` when it carries a token, else ``blocked`` or ``unknown_layout`` the
same way.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from tv100.tasks.collect.engine import (
    EngineFetch,
    PageRecord,
    ResultPage,
    SearchEngine,
    SearchHit,
    decode_page,
    make_hit,
    quote_query,
    unique_hits,
    warn_failed,
)
from tv100.tasks.collect.pages import (
    BLOCKED,
    COMMON_MARKERS,
    NO_RESULTS,
    RESULTS,
    UNKNOWN_LAYOUT,
    Verdict,
    find_block,
    header_block,
    marker,
)

if TYPE_CHECKING:  # the HTTP client (httpx) loads only where a fetch runs
    from tv100.tasks.web.client import HttpClient

log = logging.getLogger("tv100.search")

_VQD = re.compile(r"""vqd["']?\s*[=:]\s*["']?(\d+-[0-9A-Za-z_-]{4,})""")
MARKERS = (
    marker("captcha", "DuckDuckGo's bot challenge (anomaly-modal)",
           r"anomaly-modal|bots use DuckDuckGo too|/anomaly\.js"),
)
"""DuckDuckGo's own challenge pages."""


def _unreadable(text: str, missing: str) -> Verdict:
    """The class of a DuckDuckGo answer without what was asked for (`missing` says what)."""
    block = find_block(text, (*MARKERS, *COMMON_MARKERS))
    if block is not None:
        return Verdict(BLOCKED, block)
    return Verdict(UNKNOWN_LAYOUT, "empty answer" if not text.strip() else missing)


def extract_vqd(content: bytes) -> str | None:
    """The vqd token of a DuckDuckGo HTML page, or None.

    Accepts ``vqd="4-…"``, ``vqd='4-…'``, ``vqd=4-…&`` (in a link) and ``"vqd":"4-…"``.
    """
    match = _VQD.search(decode_page(content))
    return match.group(1) if match else None


def read_duckduckgo(content: bytes) -> ResultPage:
    """Hits, next link and page class of one DuckDuckGo ``i.js`` answer (pure; never raises).

    Args:
        content: the answer as served.

    Returns:
        The `ResultPage`; ``next`` is None on the last page.
    """
    text = decode_page(content)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return ResultPage([], None, *_unreadable(text, "not DuckDuckGo i.js JSON"))
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return ResultPage([], None, UNKNOWN_LAYOUT, "no results list in the DuckDuckGo JSON")
    hits: list[SearchHit | None] = []
    for item in results:
        if not isinstance(item, dict):
            continue
        hits.append(
            make_hit(
                item.get("image"),
                item.get("thumbnail"),
                item.get("url"),
                item.get("title"),
                item.get("width"),
                item.get("height"),
            )
        )
    if results and not any(hits):
        return ResultPage([], None, UNKNOWN_LAYOUT, "no result with an image URL in the JSON")
    nxt = data.get("next")
    return ResultPage(
        unique_hits(hits),
        nxt if isinstance(nxt, str) and nxt.strip() else None,
        RESULTS if results else NO_RESULTS,
    )


def parse_duckduckgo(content: bytes) -> list[SearchHit]:
    """Hits of a DuckDuckGo ``i.js`` JSON answer; [] for anything unreadable."""
    return read_duckduckgo(content).hits


class DuckDuckGoEngine(SearchEngine):
    """DuckDuckGo: vqd token from ``/?q=…&iax=images&ia=images``, then ``i.js`` JSON pages.

    ``n=`` (page size) is understood by the offline stand-in only; the real engine ignores it.
    """

    name = "duckduckgo"
    default_base_url = "https://duckduckgo.com"
    default_page_size = 100

    def read_page(self, content: bytes) -> ResultPage:
        return read_duckduckgo(content)

    def token_url(self, base_url: str, query: str) -> str:
        """The HTML page that carries the query's vqd token."""
        return f"{base_url}/?{quote_query({'q': query, 'iax': 'images', 'ia': 'images'})}"

    async def prepare(
        self, client: HttpClient, base_url: str, query: str, out: EngineFetch
    ) -> tuple[bool, Any]:
        fetched = await client.get(self.token_url(base_url, query))
        if not fetched.ok:
            record = PageRecord.of("token", 0, fetched)
        else:
            vqd = extract_vqd(fetched.content)
            block = header_block(fetched.headers, fetched.http_status)
            if vqd is not None and block is None:
                out.pages.append(PageRecord.of("token", 0, fetched))
                return True, vqd
            status, reason = (
                Verdict(BLOCKED, block)
                if block is not None
                else _unreadable(decode_page(fetched.content), "no vqd token in the page")
            )
            record = PageRecord.of("token", 0, fetched, status=status, error_message=reason)
        out.pages.append(record)
        warn_failed(self.name, query, record)
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
        return f"{base_url}/i.js?{quote_query(params)}"

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
