"""The `discover_fetches` table: one row per request the discover stage made."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from tv100.storage.schemas import DISCOVER_FETCHES
from tv100.tasks.web.config import Fetched


def now_utc() -> datetime:
    """The current time, UTC (the `fetched_at` and `discovered_at` clock)."""
    return datetime.now(UTC)


def is_url(location: str) -> bool:
    """Whether a discover location is an http(s) URL (else a local folder)."""
    return location.startswith(("http://", "https://"))


@dataclass
class FetchLog:
    """Rows of the `discover_fetches` table, one per request made, in request order."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        source: str,
        kind: str,
        f: Fetched,
        records: int | None,
        *,
        status: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Record one request: its source, kind (dataset, list, title), outcome and records.

        Args:
            source: ``imdb-datasets`` or ``imdb-web``.
            kind: ``dataset``, ``list`` or ``title``.
            f: the request's outcome.
            records: records parsed from it (None where that means nothing).
            status: the row's status when the page itself says more than the HTTP layer
                (``blocked`` for a bot check answered as a 2xx, ``unknown_layout``); default
                `f.status`.
            error_message: what went wrong then; default `f.error_message`.
        """
        self.rows.append(
            {
                "source": source,
                "kind": kind,
                "url": f.url,
                "status": status or f.status,
                "http_status": f.http_status,
                "error_message": error_message if status else f.error_message,
                "records": records,
                "fetched_at": now_utc(),
            }
        )

    def table(self) -> pa.Table:
        """The rows as a `discover_fetches` table."""
        return pa.Table.from_pylist(self.rows, schema=DISCOVER_FETCHES)
