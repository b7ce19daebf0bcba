"""URL canonicalisation: the one definition of "the same URL" used to deduplicate.

`canonical_url`: scheme and host lower-cased, the default port (80 for http, 443 for
https) dropped, an empty path written ``/``, the fragment dropped; userinfo, path and query
are kept byte for byte (their case and parameter order can matter to the server). Only
absolute http(s) URLs have a canonical form (``//host/x`` is read as https). URLs without a
file extension are normal (``/th?id=…``, ``/img/ab12``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str | None:
    """The canonical form used to deduplicate URLs; None if `url` is not absolute http(s).

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
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0] + "@" if netloc[1] else ""
    return urlunsplit((scheme, userinfo + host, parts.path or "/", parts.query, ""))


def absolute_url(value: Any) -> str | None:
    """`value` as an absolute http(s) URL (``//x`` read as https, spaces escaped), else None.

    Unlike `canonical_url` the URL is returned as given, not canonicalised.

    Args:
        value: anything (non-strings give None).

    Returns:
        The URL, or None.
    """
    if not isinstance(value, str):
        return None
    value = value.strip().replace(" ", "%20")
    if value.startswith("//"):
        value = "https:" + value
    return value if canonical_url(value) is not None else None


def query_params(href: str) -> dict[str, str]:
    """First value of each query parameter of a (relative or absolute) link.

    Args:
        href: a link as found in a page.

    Returns:
        ``{name: first value}``; {} when the link cannot be split.
    """
    try:
        query = urlsplit(href).query
    except ValueError:
        return {}
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
