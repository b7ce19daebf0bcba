"""Blocks told by response headers: a firewall's or CDN's challenge instead of the page.

Some services put a bot check between a crawler and the page and say so in a header, whatever
the body holds (a short script page, or nothing at all):

- **AWS WAF** (IMDb, many sites behind CloudFront): ``x-amzn-waf-action: challenge`` on a
  JavaScript challenge, usually answered with HTTP 202 and a small page running the
  challenge script (sometimes an empty body); ``x-amzn-waf-action: captcha`` on a captcha,
  usually HTTP 405. The header's presence is the sign, not the status: a value left empty
  is read as ``challenge``.
- **Cloudflare**: ``cf-mitigated: challenge`` on its challenge pages (HTTP 403); the header is
  only sent on those.

An HTTP status alone is not a block here: a bare 202, 403 or 429 without these headers is
whatever the caller makes of it (429 is a rate limit the HTTP layer retries). Blocks shown
only in the page's markup are read by the page classifiers
(`tv100.tasks.collect.pages.find_block`, `tv100.tasks.discover.imdb_pages.is_challenge_page`).

The search engines' page classes (`tv100.tasks.collect.pages.header_block`) and IMDb's crawl
(`tv100.tasks.discover.imdb_pages.waf_action`) both read headers through `block_from_headers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

AWS_WAF_HEADER: Final = "x-amzn-waf-action"
"""The header AWS WAF sets on a challenge (``challenge``) or captcha (``captcha``) answer."""

CLOUDFLARE_HEADER: Final = "cf-mitigated"
"""The header Cloudflare sets (to ``challenge``) on its challenge pages."""

BLOCK_KINDS: Final = ("captcha", "JavaScript challenge", "consent wall", "WAF challenge")
"""What a page put between us and the answer can be (headers tell all but a consent wall)."""


@dataclass(frozen=True)
class HeaderBlock:
    """A block a response's headers announce.

    Attributes:
        kind: one of `BLOCK_KINDS`: ``captcha``, ``WAF challenge`` or ``JavaScript challenge``.
        service: who blocks (``AWS WAF``, ``Cloudflare``).
        header: the header that says so (lower case).
        value: its value, trimmed and lower case (``challenge``, ``captcha``).
    """

    kind: str
    service: str
    header: str
    value: str

    @property
    def evidence(self) -> str:
        """What the answer showed, e.g. ``AWS WAF x-amzn-waf-action: challenge``."""
        return f"{self.service} {self.header}: {self.value}"

    def reason(self, http_status: int | None) -> str:
        """``"<kind>: <evidence> (HTTP <status>)"``: the `error_message` of a blocked page."""
        return f"{self.kind}: {self.evidence} (HTTP {http_status})"


def _value(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip().lower() if isinstance(value, str) else None


def block_from_headers(headers: Mapping[str, str]) -> HeaderBlock | None:
    """The block a response's headers announce (see the module docstring), or None.

    Args:
        headers: the response headers with lower-case names (as `Fetched.headers` holds them).

    Returns:
        The `HeaderBlock`, AWS WAF's first when both services' headers are present; None for
        an answer whose headers announce no block.
    """
    action = _value(headers, AWS_WAF_HEADER)
    if action is not None:
        action = action or "challenge"
        kind = "captcha" if action == "captcha" else "WAF challenge"
        return HeaderBlock(kind, "AWS WAF", AWS_WAF_HEADER, action)
    if _value(headers, CLOUDFLARE_HEADER) == "challenge":
        return HeaderBlock("JavaScript challenge", "Cloudflare", CLOUDFLARE_HEADER, "challenge")
    return None
