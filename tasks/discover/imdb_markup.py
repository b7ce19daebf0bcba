"""What the IMDb page parsers share: tolerant HTML and JSON access, and IMDb's number formats.

Everything here is a pure function that never raises on hostile input: a value that is not
what was expected comes back as None. The page parsers (`tv100.tasks.discover.imdb_list_page`,
`tv100.tasks.discover.imdb_title_page`) and the page classifier
(`tv100.tasks.discover.imdb_pages`) build on it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.tasks.web.markup import limit_nesting

ID_RE = re.compile(r"/title/(tt\d{7,9})\b")
"""An IMDb title id inside a URL path (``/title/tt0903747/``)."""
TCONST_RE = re.compile(r"^tt\d{7,9}$")
"""A whole IMDb title id."""

_DASHES = "\u2013\u2014\u2012\u2212-"
_YEARS_RE = re.compile(rf"^\s*(\d{{4}})\s*(?:([{_DASHES}])\s*(\d{{4}})?)?\s*$")
_RATING_RE = re.compile(r"(?<![\d.,])(\d{1,2})(?:[.,](\d+))?(?![\d])")
_SPACES = "\u00a0\u202f\u2009\u2007 '\u2019"
_VOTES_RE = re.compile(rf"(\d[\d.,{_SPACES}]*)\s*([^\W\d_]*)\.?")


def parse_years(text: str | None) -> tuple[int | None, int | None] | None:
    """Parse a years label: ``2023– `` (ongoing), ``2021–2023``, ``2025`` (single year).

    Returns:
        (start_year, end_year) with end_year None when ongoing and equal to start_year for a
        single year; None when `text` is not a years label.
    """
    if not text:
        return None
    m = _YEARS_RE.match(text.replace("\u00a0", " "))
    if m is None:
        return None
    start = int(m.group(1))
    if m.group(2) is None:
        return start, start
    return start, int(m.group(3)) if m.group(3) else None


def parse_rating(text: str | None) -> float | None:
    """Parse ``8.7`` or ``8,7`` (0-10); None when absent or out of range."""
    if not text:
        return None
    m = _RATING_RE.search(text)
    if m is None:
        return None
    value = float(f"{m.group(1)}.{m.group(2) or 0}")
    return value if 0.0 <= value <= 10.0 else None


def _multiplier(suffix: str) -> float | None:
    s = suffix.lower()
    if not s:
        return 1.0
    if s.startswith(("mrd", "bn", "b")):
        return 1e9
    if s.startswith("m"):  # M, Mio, Mn, Mil
        return 1e6
    if s.startswith(("k", "t")):  # K, k, Tsd, Tausend
        return 1e3
    return None


def parse_votes(text: str | None) -> int | None:
    """Parse a vote count: ``(646.623)``, ``(646,623)``, ``(646K)``, ``(1.2M)``, ``(1,2 Mio.)``.

    Without a magnitude suffix every ``.``/``,``/space is a thousands separator; with one the
    last separator followed by 1-2 digits is the decimal mark. Abbreviated counts are rounded
    by the page itself ("4.9K" → 4900): exact counts come from ``__NEXT_DATA__``.
    """
    if not text:
        return None
    m = _VOTES_RE.search(text)
    if m is None:
        return None
    number, suffix = m.group(1), m.group(2)
    mult = _multiplier(suffix)
    if mult is None:
        return None
    for ch in _SPACES:
        number = number.replace(ch, "")
    number = number.rstrip(".,")
    if not number:
        return None
    seps = [i for i, ch in enumerate(number) if ch in ".,"]
    if not seps:
        return int(round(int(number) * mult))
    last = seps[-1]
    tail = number[last + 1 :]
    if (mult > 1 and 1 <= len(tail) <= 2) or (mult == 1 and len(tail) != 3):
        whole = re.sub(r"[.,]", "", number[:last])
        value = float(f"{whole or 0}.{tail}")
    else:
        value = float(re.sub(r"[.,]", "", number))
    return int(round(value * mult))


def dedupe(values: list[str | None]) -> tuple[str, ...]:
    """The non-empty values, first occurrence kept, in order."""
    return tuple(dict.fromkeys(v for v in values if v))


def to_text(data: bytes | str) -> str:
    """Page bytes as text (UTF-8, bad bytes replaced); "" for anything that is not bytes."""
    if isinstance(data, str):
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        return ""
    return bytes(data).decode("utf-8", errors="replace")


def parse_html(data: bytes | str) -> LexborHTMLParser | None:
    """The page's DOM (nesting capped by `limit_nesting`); None for an empty or unparsable page."""
    try:
        text = to_text(data)
        if not text.strip():
            return None
        return LexborHTMLParser(limit_nesting(text))
    except Exception:  # selectolax raises on pathological input; the contract is "never raise"
        return None


def node_text(node: LexborNode | None) -> str:
    """A node's text, descendants included; "" for None or a node selectolax cannot read."""
    if node is None:
        return ""
    try:
        return node.text(deep=True) or ""
    except Exception:
        return ""


def loads(text: str) -> Any:
    """JSON, or None when `text` is not valid JSON (or nests too deep)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def next_data(tree: LexborHTMLParser) -> Any:
    """The page's ``<script id="__NEXT_DATA__">`` JSON; None when absent or broken."""
    node = tree.css_first("script#__NEXT_DATA__")
    return loads(node_text(node)) if node is not None else None


def get(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``; None as soon as a step is not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def as_int(value: Any) -> int | None:
    """An int from a JSON int, finite float or digit string; None otherwise (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def as_float(value: Any) -> float | None:
    """A float from a JSON number or a rating string (``8,7``); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        return parse_rating(value)
    return None


def as_str(value: Any) -> str | None:
    """A non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def text_of(value: Any) -> str | None:
    """A GraphQL text value as IMDb writes it either way: ``"Squid Game"`` or ``{"text": ...}``."""
    if isinstance(value, Mapping):
        value = value.get("text")
    return as_str(value)


def votes_of(rating: float | None, count: Any) -> int | None:
    """A ``voteCount`` as the record's `num_votes`: None for an unrated title's 0 votes."""
    votes = as_int(count)
    return None if rating is None and not votes else votes
