"""The build flow: chains every stage (discover for now) with one resolved configuration."""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger

from flows.discover import Source, discover_flow


@flow(name="build")
def build_flow(
    location: str,
    source: Source = "imdb-datasets",
    since: int = 2021,
    min_votes: int | None = None,
    data: str = "./data",
    max_pages: int = 200,
    locale: str | None = None,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Build (or refresh) a dataset end to end. Parameters as in the stage flows."""
    params = {
        "location": location,
        "source": source,
        "since": since,
        "min_votes": min_votes,
        "data": data,
        "max_pages": max_pages,
        "locale": locale,
        "allow_hosts": allow_hosts or [],
        "refresh": refresh,
    }
    get_run_logger().info("build parameters: %s", json.dumps(params, sort_keys=True))
    discovered = discover_flow(
        location=location,
        source=source,
        since=since,
        min_votes=min_votes,
        data=data,
        max_pages=max_pages,
        locale=locale,
        allow_hosts=allow_hosts,
        refresh=refresh,
    )
    return {"discover": discovered}
