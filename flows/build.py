"""The build flow: chains every stage with one resolved configuration, logged once."""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger

from flows.clean import clean_flow
from flows.collect import collect_flow
from flows.discover import Source, discover_flow
from tasks.search import DEFAULT_QUERY_TEMPLATE


@flow(name="build")
def build_flow(
    location: str,
    source: Source = "imdb-datasets",
    since: int = 2021,
    min_votes: int | None = None,
    data: str = "./data",
    max_pages: int = 200,
    locale: str | None = None,
    engines: list[str] | None = None,
    engine_urls: dict[str, str] | None = None,
    query_template: str = DEFAULT_QUERY_TEMPLATE,
    per_series_cap: int = 200,
    max_side: int = 512,
    image_timeout_s: float = 15.0,
    image_retries: int = 2,
    phash_threshold: int = 10,
    exclusions: str | None = None,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Build (or refresh) a dataset end to end. Parameters as in the stage flows."""
    params = {k: v for k, v in locals().items() if k != "params"}
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
    collected = collect_flow(
        data=data,
        engines=engines,
        query_template=query_template,
        per_series_cap=per_series_cap,
        engine_urls=engine_urls,
        max_side=max_side,
        image_timeout_s=image_timeout_s,
        image_retries=image_retries,
        allow_hosts=allow_hosts,
        refresh=refresh,
    )
    cleaned = clean_flow(data=data, phash_threshold=phash_threshold, exclusions=exclusions)
    return {"discover": discovered, "collect": collected, "clean": cleaned}
