"""Opt-outs of AI use on source pages: ``<meta name="robots">`` and the page's X-Robots-Tag.

A site says "not for AI datasets" in two places. The image's own response carries an
``X-Robots-Tag`` header (``noai``, ``googlebot: noimageai``, ``noindex, noai``), which the
downloader reads with `tv100.tasks.collect.normalise.opted_out`. The page that shows the
image says it in its head, ``<meta name="robots" content="noai, noimageai">`` (or a meta
named for one crawler, ``<meta name="tv100" content="noimageai">``), or in the page's own
X-Robots-Tag. `page_opt_out` reads both of the page's, with the very rules of the image
header (the meta's content goes through `opted_out` too), so an image whose source page the
downloader reads (a thumbnail-only hit's page, for its ``og:image``) is ``opted_out`` when
the page opts out.

Meta tags are matched by name: ``robots`` (every crawler) or the client's product token
(`tv100.tasks.web.robots.product_token`); other names (``description`` …) never count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tv100.tasks.collect.engine import parse_html
from tv100.tasks.collect.normalise import opted_out


def meta_robots(content: bytes | str, token: str) -> list[tuple[str, str]]:
    """The robots meta tags of an HTML page addressed to us, in page order.

    Args:
        content: the page (bytes are read as UTF-8, errors replaced).
        token: our product token (``tv100``); metas named ``robots`` or this count.

    Returns:
        (name, content) of each, the name lower-cased; [] for a page that cannot be parsed.
    """
    tree = parse_html(content)
    if tree is None:
        return []
    names = {"robots", token.lower()}
    values = []
    for node in tree.css("meta[name]"):
        name = (node.attributes.get("name") or "").strip().lower()
        if name in names:
            values.append((name, node.attributes.get("content") or ""))
    return values


def page_opt_out(
    content: bytes | str,
    headers: Mapping[str, str],
    directives: Iterable[str],
    token: str,
) -> str | None:
    """The opt-out a source page declares, in its X-Robots-Tag or a robots meta tag.

    Args:
        content: the page's body.
        headers: the page response's headers (lower-case names).
        directives: the directives that count as opting out (`DownloadConfig.opt_out_directives`).
        token: our product token (``tv100``).

    Returns:
        ``X-Robots-Tag: <directive>`` or ``<meta name="<name>"> <directive>``: the first
        found (the header first), or None when the page does not opt out.
    """
    wanted = tuple(directives)
    directive = opted_out(headers, wanted)
    if directive:
        return f"X-Robots-Tag: {directive}"
    for name, value in meta_robots(content, token):
        directive = opted_out({"x-robots-tag": value}, wanted)
        if directive:
            return f'<meta name="{name}"> {directive}'
    return None
