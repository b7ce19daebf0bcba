"""The build flow: chains every stage with one resolved configuration, logged once."""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tv100.flows.clean import clean_flow
from tv100.flows.collect import collect_flow
from tv100.flows.discover import Source, discover_flow
from tv100.flows.rank import DEFAULT_MODELS, rank_flow
from tv100.flows.runners import check_runner, run_flow
from tv100.flows.train import DEFAULT_RECIPES, train_flow
from tv100.storage.root import remove_temp_files, resolve_root
from tv100.tasks.collect.search import DEFAULT_QUERY_TEMPLATE
from tv100.tasks.report.report import report_task
from tv100.tasks.snapshots.snapshots import record_snapshot_task


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
    rank: bool = True,
    models: list[str] | None = None,
    k: int = 100,
    min_images: int = 100,
    train: bool = True,
    train_model: str | None = None,
    recipes: list[str] | None = None,
    epochs: int = 10,
    lr: float = 1e-5,
    batch_size: int = 64,
    warmup_steps: int = 500,
    sampling: str = "uniform",
    runner: str = "threads",
) -> dict[str, Any]:
    """Build (or refresh) a dataset end to end. Parameters as in the stage flows.

    `models` are the CLIPs the rank stage judges novelty with (default `DEFAULT_MODELS`);
    `train_model` (default the first of them) is fine-tuned by the train stage, which
    `train=False` skips; `rank=False` stops after clean. `runner` is the task runner of
    collect and clean (`tv100.flows.runners`).

    Last, the finished state is recorded as a snapshot (`tv100.tasks.snapshots.snapshots`): a new one when
    any table changed since the latest snapshot, else the latest one's id is reused and
    nothing is written. Its id is the result's ``snapshot``.
    """
    params = {k: v for k, v in locals().items() if k != "params"}
    get_run_logger().info("build parameters: %s", json.dumps(params, sort_keys=True))
    check_runner(runner)
    specs = list(models or DEFAULT_MODELS)
    # Temp files of a run killed between write and rename are swept before anything runs.
    removed = remove_temp_files(resolve_root(data).ensure())
    if removed:
        get_run_logger().info("removed %d temp files left by an interrupted run", removed)
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
    collected = run_flow(
        collect_flow,
        runner,
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
    cleaned = run_flow(
        clean_flow, runner, data=data, phash_threshold=phash_threshold, exclusions=exclusions
    )
    result: dict[str, Any] = {"discover": discovered, "collect": collected, "clean": cleaned}
    if rank:
        result["rank"] = rank_flow(data=data, models=specs, k=k, min_images=min_images)
    if rank and train:
        result["train"] = train_flow(
            data=data,
            model=train_model or specs[0],
            recipes=list(recipes or DEFAULT_RECIPES),
            phash_threshold=phash_threshold,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            warmup_steps=warmup_steps,
            sampling=sampling,
        )
    result["report"] = report_task(data)["files"]
    resolved = {
        **params,
        "models": specs,
        "train_model": train_model or specs[0],
        "recipes": list(recipes or DEFAULT_RECIPES),
    }
    snapshot = record_snapshot_task(data, resolved, flow_run.id)
    get_run_logger().info(
        "snapshot %s (%s)", snapshot["snapshot_id"], "new" if snapshot["created"] else "unchanged"
    )
    result["snapshot"] = snapshot["snapshot_id"]
    return result
