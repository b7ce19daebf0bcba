"""The registry of search engines: the one list of engine names and their adapters.

The names are the `engine` column of `search_hits`/`search_pages`, the CLI's ``--engine``
choices and the collect flow's default engines.
"""

from __future__ import annotations

from collections.abc import Iterable

from tv100.tasks.collect.bing import BingEngine
from tv100.tasks.collect.duckduckgo import DuckDuckGoEngine
from tv100.tasks.collect.engine import ResultPage, SearchEngine, SearchHit
from tv100.tasks.collect.google import GoogleEngine

ENGINES: dict[str, SearchEngine] = {
    engine.name: engine for engine in (BingEngine(), GoogleEngine(), DuckDuckGoEngine())
}
"""The adapters by engine name, in the default search order."""

ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)
"""Every engine's name: ``("bing", "google", "duckduckgo")`` (the default engines)."""


def check_engines(engines: Iterable[str]) -> tuple[str, ...]:
    """Validate engine names; return them in order without repeats.

    Args:
        engines: names from `ENGINE_NAMES` (a single string counts as one name).

    Returns:
        The names, first occurrences in order.

    Raises:
        ValueError: for an empty list or an unknown name (listing the known ones).
    """
    if isinstance(engines, str):
        engines = [engines]
    names: list[str] = []
    for name in engines:
        if name not in ENGINES:
            raise ValueError(
                f"unknown search engine {name!r}; known engines: {', '.join(sorted(ENGINES))}"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"engines must name at least one of: {', '.join(sorted(ENGINES))}")
    return tuple(names)


def read_page(engine: str, content: bytes) -> ResultPage:
    """Read one saved result page of `engine`: its hits and its page class (``tv100 inspect``).

    Args:
        engine: ``bing``, ``google`` or ``duckduckgo``.
        content: the saved page: HTML for Bing and Google, the ``i.js`` JSON for DuckDuckGo.

    Returns:
        The `ResultPage`: hits in page order, ``results``/``no_results``/``blocked``/
        ``unknown_layout`` and, for the last two, the reason.

    Raises:
        ValueError: for an unknown engine (listing the known ones).
    """
    (name,) = check_engines([engine])
    return ENGINES[name].read_page(content)


def parse_page(engine: str, content: bytes) -> list[SearchHit]:
    """The hits of one saved result page of `engine`, in page order (see `read_page`).

    Raises:
        ValueError: for an unknown engine (listing the known ones).
    """
    return read_page(engine, content).hits
