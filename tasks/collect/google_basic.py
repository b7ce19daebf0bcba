"""Google's basic-HTML image results: what Google serves to a client without JavaScript.

Layout: a table of result cells. In each cell the thumbnail is an ``<img>`` whose ``src``
is Google's thumbnail server (``https://encrypted-tbn0.gstatic.com/images?q=tbn:…``) inside
a redirect link to the source page (``/url?q=<page>&sa=U&ved=…&usg=…``); a second redirect
link to the same page holds the title and the page's domain, each in nested ``<span>``s::

    <td><a href="/url?q=https://example.org/page&amp;sa=U&amp;…"><div><img class="DS1iW"
      alt="" src="https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9Gc…&amp;s"></div></a>
      <a href="/url?q=https://example.org/page&amp;sa=U&amp;…"><div><span><span>Title</span>
      </span><span><span>example.org</span></span></div></a></td>

The page names neither the full-size image nor its size. Each hit is therefore the thumbnail
(`image_url` = `thumb_url`) with its source page, flagged ``thumbnail_only``: the downloader
can fetch the source page and prefer its ``og:image``.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.tasks.collect.engine import SearchHit, clean_text, make_hit
from tv100.tasks.web.urls import absolute_url, query_params

_THUMBNAIL = re.compile(r"^https?://encrypted-tbn\d*\.gstatic\.com/images\?|[?&]q=tbn:", re.I)
_REDIRECT = re.compile(r"^(?:https?://[^/?#]*)?/url\?", re.I)


def is_thumbnail(url: str | None) -> bool:
    """Whether `url` is one of Google's thumbnails (``encrypted-tbn*.gstatic.com``, ``q=tbn:``)."""
    return bool(url) and bool(_THUMBNAIL.search(url or ""))


def redirect_target(href: str | None) -> str | None:
    """The page a Google redirect link (``/url?q=…`` or ``/url?url=…``) leads to, or None."""
    if not href or not _REDIRECT.match(href.strip()):
        return None
    params = query_params(href.strip())
    return absolute_url(params.get("q") or params.get("url"))


def _thumbnail(link: LexborNode) -> str | None:
    """The ``src`` of the first thumbnail ``<img>`` inside `link`."""
    for img in link.css("img"):
        attrs = img.attributes
        src = attrs.get("src") or attrs.get("data-src")
        if is_thumbnail(src):
            return src
    return None


def _span_title(link: LexborNode) -> str | None:
    """The text of the first innermost ``<span>`` in `link`: the title.

    Only when the domain's span follows it: a page cut inside the title would otherwise
    give a title cut short.
    """
    texts = []
    for span in link.css("span"):
        if all(inner.mem_id == span.mem_id for inner in span.css("span")):  # css() has self
            text = clean_text(span.text(deep=True))
            if text:
                texts.append(text)
                if len(texts) == 2:
                    return texts[0]
    return None


def basic_hits(tree: LexborHTMLParser) -> list[SearchHit | None]:
    """One entry per thumbnail link to a source page (None where the thumbnail is invalid).

    The links are read once, in page order (linear in the page): a redirect link holding a
    thumbnail is a result, and the redirect link next to it to the same page (after it, else
    before it) holds its title. Thumbnails outside a ``/url?q=`` link (related-search chips,
    the logo) are not results.

    Args:
        tree: the parsed page.

    Returns:
        Entries in page order, each flagged ``thumbnail_only``.
    """
    links: list[tuple[LexborNode, str]] = []
    for anchor in tree.css("a"):
        page = redirect_target(anchor.attributes.get("href"))
        if page is not None:
            links.append((anchor, page))
    thumbs = [_thumbnail(anchor) for anchor, _ in links]
    hits: list[SearchHit | None] = []
    for i, (anchor, page) in enumerate(links):
        src = thumbs[i]
        if src is None:
            continue
        title = None
        for j in (i + 1, i - 1):
            if 0 <= j < len(links) and links[j][1] == page and thumbs[j] is None:
                title = _span_title(links[j][0])
                break
        if title is None:
            img = anchor.css_first("img")
            title = clean_text(img.attributes.get("alt")) if img is not None else None
        hits.append(make_hit(src, src, page, title, thumbnail_only=True))
    return hits
