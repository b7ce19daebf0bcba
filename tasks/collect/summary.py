"""The collect stage's outcome: logged, published as artifacts, returned as `CollectResult`.

An engine none of whose pages could be read, because they were blocked or of a layout its
parser does not know, does not fail the run: the other engines' hits are kept, and the
stage ends with one line per such engine saying what it saw (`engine_warnings`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from prefect import get_run_logger

from tv100.tasks.collect.config import CollectResult, DownloadSummary
from tv100.tasks.collect.engines import ENGINE_NAMES
from tv100.tasks.collect.pages import (
    BLOCKED,
    READ_STATUSES,
    UNKNOWN_LAYOUT,
    UNREADABLE_CLASSES,
    block_kind,
)
from tv100.tasks.collect.search import SearchTables
from tv100.tasks.report.artifacts import publish_collect_artifacts


def _noun(kinds: set[str], n: int) -> str:
    """``result pages``, ``token pages`` or ``pages`` (singular for one)."""
    what = "page"
    if len(kinds) == 1:
        what = {"results": "result page", "token": "token page"}.get(kinds.pop(), what)
    return what if n == 1 else what + "s"


def _what_it_saw(rows: list[dict[str, object]]) -> str:
    """``blocked (captcha, consent wall)``-style summary of an engine's unreadable pages."""
    kinds = Counter(
        block_kind(str(r["error_message"] or "")) or "unrecognised block"
        for r in rows
        if r["status"] == BLOCKED
    )
    return ", ".join(k for k, _ in kinds.most_common())


def _engine_line(engine: str, rows: list[dict[str, object]]) -> str | None:
    """The line for one engine, or None when one of its pages was read (or none was fetched).

    Pages blocked by the HTTP layer itself (no HTTP status) are failed requests, not pages.
    """
    if any(r["status"] in READ_STATUSES for r in rows):
        return None
    fetched = [r for r in rows if r["status"] in UNREADABLE_CLASSES and r["http_status"]]
    if not fetched:
        return None
    n = len(rows)
    noun = _noun({str(r["kind"]) for r in rows}, n)
    statuses = Counter(str(r["status"]) for r in rows)
    every = f"all {n} {noun} were" if n > 1 else f"the only {noun} was"
    if statuses.get(BLOCKED, 0) == n:
        return f"{engine}: {every} blocked ({_what_it_saw(rows)})"
    if statuses.get(UNKNOWN_LAYOUT, 0) == n:
        reasons = [str(r["error_message"]) for r in rows if r["error_message"]]
        first = reasons[0] if reasons else "no reason given"
        return f"{engine}: {every} of a layout tv100 cannot read ({first})"
    parts = []
    for status, count in statuses.most_common():
        if status == BLOCKED:
            parts.append(f"{count} blocked ({_what_it_saw(rows)})")
        elif status == UNKNOWN_LAYOUT:
            parts.append(f"{count} of an unknown layout")
        else:
            parts.append(f"{count} {status}")
    return f"{engine}: none of {n} {noun} had results: {', '.join(parts)}"


def _position(engine: str) -> int:
    return ENGINE_NAMES.index(engine) if engine in ENGINE_NAMES else len(ENGINE_NAMES)


def engine_warnings(found: SearchTables) -> list[str]:
    """One line per engine none of whose pages could be read (all blocked or unreadable).

    Each line names the engine, what its pages were (how many were blocked, by what kind of
    block, or of an unknown layout) and the hits kept from the run's other engines, e.g.
    ``google: all 12 result pages were blocked (consent wall); kept 4,210 hits from bing,
    duckduckgo``.

    Args:
        found: the search's tables (`search_pages` and `search_hits`).

    Returns:
        The lines, engines in the registry's order; [] when every engine read a page.
    """
    rows = found.pages.select(
        ["engine", "kind", "status", "http_status", "error_message"]
    ).to_pylist()
    by_engine: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        by_engine.setdefault(str(r["engine"]), []).append(r)
    order = sorted(by_engine, key=lambda e: (_position(e), e))
    hits = Counter(found.hits.column("engine").to_pylist())
    lines = []
    for engine in order:
        line = _engine_line(engine, by_engine[engine])
        if line is None:
            continue
        others = [e for e in order if e != engine]
        if others:
            kept = sum(hits.get(e, 0) for e in others)
            line += f"; kept {kept:,} hits from {', '.join(others)}"
        else:
            line += "; no other engine was searched"
        lines.append(line)
    return lines


def summarise_collect(
    found: SearchTables,
    downloaded: DownloadSummary,
    tables: Mapping[str, str],
    n_series: int,
) -> CollectResult:
    """Log the outcome, publish the collect artifacts and return the flow's result.

    Call it from the collect flow (it logs on the flow run's logger). The last lines logged
    are the `engine_warnings`, as warnings.

    Args:
        found: the search's tables.
        downloaded: the download's summary.
        tables: sha256 of each table the search wrote.
        n_series: series searched.
    """
    logger = get_run_logger()
    logger.info(
        "collect: %d hits from %d series; images by status %s",
        found.hits.num_rows,
        n_series,
        dict(downloaded.status_counts),
    )
    publish_collect_artifacts(downloaded.status_counts, found.pages)
    warnings = tuple(engine_warnings(found))
    for line in warnings:
        logger.warning("%s", line)
    return CollectResult(
        hits=found.hits.num_rows,
        search_pages=found.pages.num_rows,
        failed_search_pages=found.failed_pages,
        images=downloaded,
        tables=dict(tables),
        engine_warnings=warnings,
    )

