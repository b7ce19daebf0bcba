"""What a fetched search page is: results, no results, a block, or a layout we cannot read.

Every result page an engine answers is one of four page classes (the `search_pages.status`
of a page that was fetched):

- ``results``: the engine's results structure, with at least one item it can read;
- ``no_results``: the engine's explicit answer that nothing matched (a message or an empty
  results structure);
- ``blocked``: a page put between us and the results: a captcha, a JavaScript challenge
  (a bot check that asks to "enable JavaScript"), a consent wall or a web-application
  firewall's challenge;
- ``unknown_layout``: none of these: a page the engine's parser does not understand.

Each class is decided from positive evidence of its own kind, never from "0 hits" alone.
The order is fixed (`page_verdict`): results first (a results page may carry a consent
banner or a ``<noscript>`` bot-check fallback around real results), then the explicit
no-results answer, then the challenge markers, and only then an unknown layout. A block's
reason reads ``"<kind>: <what the page showed>"`` with a kind from `BLOCK_KINDS`
(`tv100.tasks.web.blocks`, re-exported here), so that the collect stage can say what an
engine saw (`block_kind`). Blocks told by headers rather than the page: `header_block`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from tv100.tasks.web.blocks import BLOCK_KINDS, block_from_headers

PageClass = Literal["results", "no_results", "blocked", "unknown_layout"]
"""The class of one fetched result page."""

RESULTS: PageClass = "results"
NO_RESULTS: PageClass = "no_results"
BLOCKED: PageClass = "blocked"
UNKNOWN_LAYOUT: PageClass = "unknown_layout"

PAGE_CLASSES: tuple[PageClass, ...] = (RESULTS, NO_RESULTS, BLOCKED, UNKNOWN_LAYOUT)
"""Every page class, in the order they are decided."""

READ_CLASSES: frozenset[str] = frozenset({RESULTS, NO_RESULTS})
"""Page classes of pages in the engine's format (what the engine answered was read)."""

UNREADABLE_CLASSES: frozenset[str] = frozenset({BLOCKED, UNKNOWN_LAYOUT})
"""Page classes of fetched pages that held no answer to the query."""

READ_STATUSES: frozenset[str] = READ_CLASSES | {"ok"}
"""`search_pages.status` values of requests that succeeded (``ok``: a token page read)."""

@dataclass(frozen=True)
class Marker:
    """One sign of a page that stands between us and the results.

    Attributes:
        kind: one of `BLOCK_KINDS`.
        evidence: what the page shows, for humans (the reason's second part).
        pattern: found anywhere in the page's text (markup included) means the page is one.
    """

    kind: str
    evidence: str
    pattern: re.Pattern[str]

    @property
    def reason(self) -> str:
        """``"<kind>: <evidence>"``: the `error_message` of a page blocked by this marker."""
        return f"{self.kind}: {self.evidence}"


def marker(kind: str, evidence: str, pattern: str) -> Marker:
    """A `Marker` whose `pattern` is a case-insensitive regular expression."""
    if kind not in BLOCK_KINDS:
        raise ValueError(f"marker kind {kind!r}; expected one of {', '.join(BLOCK_KINDS)}")
    return Marker(kind, evidence, re.compile(pattern, re.I))


COMMON_MARKERS: tuple[Marker, ...] = (
    marker("captcha", "AWS WAF captcha", r"\.captcha\.awswaf\.com/"),
    marker("WAF challenge", "AWS WAF challenge script",
           r"AwsWafIntegration|\.token\.awswaf\.com/|awsWafCookieDomainList"),
    marker("JavaScript challenge", "Cloudflare challenge page",
           r"/cdn-cgi/challenge-platform/|cf-chl-|<title>\s*Just a moment\.\.\.\s*</title>"),
    marker("captcha", "reCAPTCHA widget", r"class=[\"'][^\"']*\bg-recaptcha\b|"
           r"www\.google\.com/recaptcha/api"),
    marker("captcha", "hCaptcha widget", r"class=[\"'][^\"']*\bh-captcha\b|hcaptcha\.com/1/api"),
    marker("JavaScript challenge", "a page that asks to enable JavaScript and cookies",
           r"enable JavaScript and cookies to continue"),
)
"""Challenge markers of no engine in particular (CDNs', firewalls' and captcha services')."""


def find_block(text: str, markers: Iterable[Marker]) -> str | None:
    """The reason of the first of `markers` found in `text`, or None.

    Args:
        text: the page as text (markup included).
        markers: engine-specific markers first, then `COMMON_MARKERS`.

    Returns:
        ``"<kind>: <evidence>"``, or None when no marker is in the page.
    """
    for m in markers:
        if m.pattern.search(text):
            return m.reason
    return None


def header_block(headers: Mapping[str, str], http_status: int | None) -> str | None:
    """A block told by the response headers rather than the page, or None.

    AWS WAF's ``x-amzn-waf-action`` and Cloudflare's ``cf-mitigated: challenge``, read by
    `tv100.tasks.web.blocks.block_from_headers`.

    Args:
        headers: the response headers, lower-case names.
        http_status: the HTTP status.

    Returns:
        ``"<kind>: <evidence> (HTTP <status>)"``, or None.
    """
    block = block_from_headers(headers)
    return None if block is None else block.reason(http_status)


def block_kind(reason: str | None) -> str | None:
    """The kind (from `BLOCK_KINDS`) a block reason starts with, or None."""
    if not reason:
        return None
    for kind in BLOCK_KINDS:
        if reason.startswith(kind + ":"):
            return kind
    return None


class Verdict(NamedTuple):
    """A page's class and, for ``blocked`` and ``unknown_layout``, why."""

    page_class: PageClass
    reason: str | None


def page_verdict(
    *,
    has_results: bool,
    no_results: bool,
    text: str,
    markers: Iterable[Marker],
    expected: str,
) -> Verdict:
    """Decide a page's class from the evidence an engine's parser found.

    Args:
        has_results: the engine's results structure is in the page, with a readable item.
        no_results: the engine's explicit no-results answer is in the page.
        text: the page as text, searched for `markers` and then `COMMON_MARKERS`.
        markers: the engine's own challenge markers.
        expected: what the engine's result pages hold, for the ``unknown_layout`` reason.

    Returns:
        The `Verdict`; its reason names the block, or what the page lacked.
    """
    if has_results:
        return Verdict(RESULTS, None)
    if no_results:
        return Verdict(NO_RESULTS, None)
    block = find_block(text, (*markers, *COMMON_MARKERS))
    if block is not None:
        return Verdict(BLOCKED, block)
    if not text.strip():
        return Verdict(UNKNOWN_LAYOUT, "empty page")
    return Verdict(UNKNOWN_LAYOUT, f"no {expected}")
