"""IMDb's vocabularies: which title types are series, and its country and language codes.

Shared by the page parsers (`tv100.tasks.discover.imdb_pages`), the dataset reader
(`tv100.tasks.discover.imdb_datasets`) and the crawl's filter, so each is defined once.
"""

from __future__ import annotations

import re

SERIES_KINDS: tuple[str, ...] = ("tvSeries", "tvMiniSeries")
"""IMDb titleType ids the `series` table keeps."""

#: ISO 639-2/3 codes IMDb uses → ISO 639-1 (Mandarin and Cantonese count as Chinese).
LANGUAGE_ALIASES: dict[str, str] = {
    "cmn": "zh", "yue": "zh", "zho": "zh", "chi": "zh", "nan": "zh", "wuu": "zh", "hak": "zh",
    "jpn": "ja", "kor": "ko", "tha": "th", "eng": "en", "fil": "tl", "qbn": "nl",
}  # fmt: skip

_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")


def normalize_country(code: object) -> str | None:
    """ISO 3166 alpha-2 code upper-cased, or None (IMDb's XWW, SUHH ... are dropped)."""
    if not isinstance(code, str):
        return None
    c = code.strip().upper()
    return c if _COUNTRY_RE.match(c) else None


def normalize_language(code: object) -> str | None:
    """ISO 639-1 code (``cmn`` → ``zh``); other 3-letter codes are kept lower-cased."""
    if not isinstance(code, str):
        return None
    c = code.strip().lower()
    c = LANGUAGE_ALIASES.get(c, c)
    return c if _LANGUAGE_RE.match(c) else None
