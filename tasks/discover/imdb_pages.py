"""IMDb pages: their URLs, what a saved page is (results, a title, a bot challenge), the parsers.

The parsers are pure functions on bytes, one module per kind of page
(`tv100.tasks.discover.imdb_list_page`, `tv100.tasks.discover.imdb_title_page`), re-exported
here so callers have one place to import from. This module adds what sits around them:

- `list_page_url`, `title_page_url`: where the imdb-web source asks;
- `waf_action`, `is_challenge_page`: IMDb's web-application firewall (AWS WAF) answers a
  crawler with an HTTP 202 (challenge) or 405 (captcha) carrying an ``x-amzn-waf-action``
  header (read by `tv100.tasks.web.blocks`) and a small page running its challenge script
  (``window.gokuProps``, a script from ``*.awswaf.com``, ``AwsWafIntegration``/
  ``AwsWafCaptcha``); IMDb's older bot page is Amazon's captcha form posting to
  ``/errors/validateCaptcha``;
- `classify_imdb_page`: a saved page is ``list``, ``title``, ``blocked`` or ``unknown_layout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from tv100.tasks.discover.imdb_list_page import ListedTitle, is_list_page, parse_list_page
from tv100.tasks.discover.imdb_markup import parse_html, parse_rating, parse_votes, parse_years
from tv100.tasks.discover.imdb_title_page import TitlePage, parse_title_page
from tv100.tasks.web.blocks import AWS_WAF_HEADER, block_from_headers

__all__ = [
    "ListedTitle",
    "PageClass",
    "TitlePage",
    "WAF_HEADER",
    "classify_imdb_page",
    "is_challenge_page",
    "list_page_url",
    "parse_list_page",
    "parse_rating",
    "parse_title_page",
    "parse_votes",
    "parse_years",
    "title_page_url",
    "waf_action",
]

PageClass = Literal["list", "title", "blocked", "unknown_layout"]
"""What a saved IMDb page is (`classify_imdb_page`)."""

WAF_HEADER = AWS_WAF_HEADER
"""The header AWS WAF sets on a challenge (``challenge``) or captcha (``captcha``) answer."""

#: Markers of a bot-check page: AWS WAF's challenge and captcha scripts, Amazon's captcha form.
_CHALLENGE_MARKERS = (
    b"window.gokuProps",
    b".awswaf.com/",
    b"AwsWafIntegration",
    b"AwsWafCaptcha",
    b"/errors/validateCaptcha",
)
#: Bot-check pages are small: only their start is searched.
_CHALLENGE_SCAN = 256 * 1024


def list_page_url(
    base_url: str, since: int, start: int, locale: str | None = None, count: int | None = None
) -> str:
    """URL of an advanced-search page of TV series and miniseries released after `since`.

    Args:
        base_url: site root, e.g. ``https://www.imdb.com`` (no trailing slash needed).
        since: keep titles released after this year (``release_date=<since+1>-01-01,``).
        start: 1-based index of the first result on the page.
        locale: None/"en" for the English site, else a locale prefix such as "de".
        count: page size (the sandbox honours it; imdb.com uses 50).
    """
    prefix = "" if locale in (None, "", "en") else f"/{locale}"
    url = (
        f"{base_url.rstrip('/')}{prefix}/search/title/?title_type=tv_series,tv_miniseries"
        f"&release_date={since + 1}-01-01,&start={int(start)}"
    )
    if count is not None:
        url += f"&count={int(count)}"
    return url


def title_page_url(base_url: str, series_id: str, locale: str | None = None) -> str:
    """URL of a title page, e.g. ``https://www.imdb.com/de/title/tt0903747/``.

    Args:
        base_url: site root, e.g. ``https://www.imdb.com``.
        series_id: the IMDb id.
        locale: None for the English site, else a locale prefix such as "de".
    """
    prefix = f"/{locale}" if locale else ""
    return f"{base_url.rstrip('/')}{prefix}/title/{series_id}/"


def waf_action(headers: Mapping[str, str]) -> str | None:
    """The AWS WAF action of a response (``challenge``, ``captcha``); None when it has none.

    Args:
        headers: response headers with lower-case names (as `Fetched.headers` holds them).

    Returns:
        The header's value, trimmed and lower case (``challenge`` when it is empty).
    """
    block = block_from_headers(headers)
    return block.value if block is not None and block.header == WAF_HEADER else None


def is_challenge_page(content: bytes) -> bool:
    """Whether a body is a bot-check page (AWS WAF challenge or captcha, Amazon's captcha).

    A page that parses as results or a title is not one, whatever scripts it loads: callers
    ask this only of pages the parsers could not read.
    """
    head = bytes(content[:_CHALLENGE_SCAN]) if isinstance(content, bytes | bytearray) else b""
    return any(marker in head for marker in _CHALLENGE_MARKERS)


def classify_imdb_page(content: bytes, kind: str) -> PageClass:
    """What a saved IMDb page is, read as a page of `kind`.

    Args:
        content: the page's bytes.
        kind: ``list`` (advanced search or find) or ``title``; ``imdb-list``/``imdb-title``
            (the `tv100 inspect` kinds) are accepted too.

    Returns:
        ``list`` (a list page, with results or none), ``title`` (a parsable title page),
        ``blocked`` (a bot-check page instead of the page) or ``unknown_layout`` (anything
        else: another kind of page, a layout the parsers cannot read, not HTML).

    Raises:
        ValueError: `kind` is not one of the above.
    """
    wanted = kind.removeprefix("imdb-")
    if wanted not in ("list", "title"):
        raise ValueError(f"kind={kind!r}; expected 'list' or 'title'")
    if wanted == "list":
        if parse_list_page(content):
            return "list"
        tree = parse_html(content)
        try:
            if tree is not None and is_list_page(tree):
                return "list"
        except Exception:  # never raise on hostile markup
            pass
    elif parse_title_page(content) is not None:
        return "title"
    return "blocked" if is_challenge_page(content) else "unknown_layout"
