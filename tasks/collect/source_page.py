"""A thumbnail's source page: whether it opts out of AI use, and the full image it names.

Google's basic-HTML results give only a thumbnail and the page the image was found on
(`tv100.tasks.collect.google_basic`). Pages name their main image for link previews, in
Open Graph and Twitter-card meta tags::

    <meta property="og:image:secure_url" content="https://cdn.example.org/poster.jpg">
    <meta property="og:image" content="https://example.org/poster.jpg">
    <meta name="twitter:image" content="/poster.jpg">

`page_image` reads them in the order of `IMAGE_KEYS` and returns the first usable value of
the first key that has one (a page lists its preferred image first). Keys are matched in
``property`` or ``name`` (sites use both), case-insensitively. A value is resolved against
the page's final URL (after redirects) and must then be an http(s) URL: ``data:`` and
``javascript:`` URLs, empty values and unrendered template values (``null``, ``{{ image }}``)
are skipped.

`read_source_page` is the downloader's verdict on a fetched page
(`tv100.tasks.collect.shards`): its opt-out first (`tv100.tasks.collect.optout.page_opt_out`),
else the image it names, else why there is none; the downloader then stores that image
instead of the thumbnail when it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urljoin

from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.engine import parse_html
from tv100.tasks.collect.optout import page_opt_out
from tv100.tasks.web.config import Fetched
from tv100.tasks.web.robots import product_token
from tv100.tasks.web.urls import absolute_url

IMAGE_KEYS: tuple[str, ...] = (
    "og:image:secure_url",
    "og:image",
    "og:image:url",
    "twitter:image",
    "twitter:image:src",
)
"""Meta keys naming a page's image, most preferred first (``og:image:url`` is Open Graph's
alias of ``og:image``; ``twitter:image:src`` the Twitter card's older name)."""

MAX_URL_LENGTH = 4096
"""Longer values are not image URLs (inlined data, a broken template)."""

_JUNK_VALUES = frozenset({"null", "none", "undefined", "false", "true", "#"})
_TEMPLATE_MARKS = ("{{", "}}", "${", "<%", "%>")


class PageImage(NamedTuple):
    """The image a page names: its absolute URL and the meta key it was read from."""

    url: str
    meta: str


def _usable(value: str | None, base_url: str) -> str | None:
    """`value` resolved against `base_url` if it is an http(s) image URL, else None."""
    if not value:
        return None
    value = value.strip()
    if (
        not value
        or len(value) > MAX_URL_LENGTH
        or value.lower() in _JUNK_VALUES
        or any(mark in value for mark in _TEMPLATE_MARKS)
    ):
        return None
    try:
        resolved = urljoin(base_url, value)
    except ValueError:  # an invalid IPv6 host and the like
        return None
    return absolute_url(resolved)


def page_image(content: bytes | str, base_url: str) -> PageImage | None:
    """The image a source page names for link previews, or None.

    Args:
        content: the page's body (bytes are read as UTF-8, errors replaced).
        base_url: the page's final URL (after redirects): relative values resolve against it.

    Returns:
        The first usable value of the first of `IMAGE_KEYS` the page has one for (page order
        within a key); None for a page without one, or one that cannot be parsed.
    """
    tree = parse_html(content)
    if tree is None:
        return None
    found: dict[str, str] = {}
    for node in tree.css("meta[content]"):
        attrs = node.attributes
        for attr in ("property", "name"):
            key = (attrs.get(attr) or "").strip().lower()
            if key in IMAGE_KEYS and key not in found:
                url = _usable(attrs.get("content"), base_url)
                if url is not None:
                    found[key] = url
                break
    for key in IMAGE_KEYS:
        if key in found:
            return PageImage(found[key], key)
    return None


@dataclass(frozen=True)
class SourcePage:
    """What a thumbnail's source page says: whether it opts out, else the image it names.

    Attributes:
        fetched: the page's response, without its body.
        opt_out: the page's opt-out (``X-Robots-Tag: noai``, ``<meta name="robots"> noai``).
        image: the image the page names (when it does not opt out).
        reason: why the page gives no image (a failed request, no such meta); None when
            `opt_out` or `image` is set.
    """

    fetched: Fetched
    opt_out: str | None = None
    image: PageImage | None = None
    reason: str | None = None


def read_source_page(fetched: Fetched, config: DownloadConfig) -> SourcePage:
    """The downloader's verdict on a fetched source page.

    Args:
        fetched: the page's response (any status).
        config: `honour_opt_out`, `opt_out_directives` and `http.user_agent` (whose product
            token names the crawler-specific robots meta) are used.

    Returns:
        The page's opt-out (when honoured), else the image it names, else the reason there
        is none; the body is not kept.
    """
    head = fetched.head()
    if not fetched.ok:
        return SourcePage(head, reason=f"{fetched.status}: {fetched.error_message}")
    if config.honour_opt_out:
        token = product_token(config.http.user_agent)
        directive = page_opt_out(fetched.content, fetched.headers, config.opt_out_directives, token)
        if directive:
            return SourcePage(head, opt_out=directive)
    image = page_image(fetched.content, fetched.final_url)
    if image is None:
        return SourcePage(head, reason="no og:image or twitter:image")
    return SourcePage(head, image=image)
