"""The build flow: chains every stage with one resolved configuration, logged once."""

from __future__ import annotations

import json
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tv100.flows.clean import clean_flow
from tv100.flows.collect import collect_flow
from tv100.flows.discover import discover_flow
from tv100.flows.rank import rank_flow
from tv100.flows.runners import check_runner, run_flow
from tv100.flows.train import train_flow
from tv100.storage.heal import heal_tables
from tv100.storage.lock import hold_root
from tv100.storage.root import remove_temp_files, resolve_root
from tv100.tasks.clean.config import CLEAN, CleanResult
from tv100.tasks.collect.config import DOWNLOAD, SEARCH, CollectResult
from tv100.tasks.discover.config import DISCOVER, DiscoverResult, Source
from tv100.tasks.rank.config import DEFAULT_MODELS, SELECT, RankResult
from tv100.tasks.report.config import REPORT, ReportResult
from tv100.tasks.report.report import report_task
from tv100.tasks.snapshots.snapshots import record_snapshot_task
from tv100.tasks.train.config import DEFAULT_RECIPES, TRAIN, TrainResult
from tv100.tasks.web.config import MAX_FILE_BYTES


@dataclass(frozen=True)
class BuildResult:
    """What a build did: each stage's result, the report and the snapshot recorded.

    Attributes:
        discover: the discover stage's result.
        collect: the collect stage's result.
        clean: the clean stage's result.
        rank: the rank stage's result (None with ``rank=False``).
        train: the train stage's result (None with ``rank=False`` or ``train=False``).
        report: the files the report wrote.
        snapshot: the id of the snapshot recording the finished state.
        healed: one line per corrupt table file the build found at its start and removed
            (a derived table, rebuilt) or moved aside (fetched again); see
            `tv100.storage.heal`.
    """

    discover: DiscoverResult
    collect: CollectResult
    clean: CleanResult
    rank: RankResult | None
    train: TrainResult | None
    report: ReportResult
    snapshot: str
    healed: tuple[str, ...] = ()


@flow(name="build")
def build_flow(
    location: str,
    source: Source = DISCOVER.source,
    since: int = DISCOVER.since,
    min_votes: int | None = DISCOVER.min_votes,
    data: str | None = None,
    max_pages: int = DISCOVER.max_pages,
    locale: str | None = DISCOVER.locale,
    max_file_bytes: int = MAX_FILE_BYTES,
    engines: list[str] | None = None,
    engine_urls: dict[str, str] | None = None,
    query_template: str = SEARCH.query_template,
    per_series_cap: int = SEARCH.per_series_cap,
    max_side: int = DOWNLOAD.max_side,
    image_timeout_s: float = DOWNLOAD.http.timeout_s,
    image_retries: int = DOWNLOAD.http.retries,
    download_shard_size: int = DOWNLOAD.shard_size,
    download_max_attempts: int = DOWNLOAD.max_attempts,
    download_retry_backoff_s: float = DOWNLOAD.retry_backoff_s,
    phash_threshold: int = CLEAN.phash_threshold,
    exclusions: str | None = CLEAN.exclusions,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
    rank: bool = True,
    models: list[str] | None = None,
    k: int = SELECT.k,
    min_images: int = SELECT.min_images,
    train: bool = True,
    train_model: str | None = None,
    recipes: list[str] | None = None,
    epochs: int = TRAIN.epochs,
    lr: float = TRAIN.lr,
    batch_size: int = TRAIN.batch_size,
    warmup_steps: int = TRAIN.warmup_steps,
    sampling: str = TRAIN.sampling,
    runner: str = "threads",
    wait: bool = True,
) -> BuildResult:
    """Build (or refresh) a dataset end to end. Parameters as in the stage flows.

    `data` is the data root (default ``$TV100_DATA``, else ``./data``). `models` are the
    CLIPs the rank stage judges novelty with (default `DEFAULT_MODELS`); `train_model`
    (default the first of them) is fine-tuned by the train stage, which `train=False`
    skips; `rank=False` stops after clean. `runner` is the task runner of collect and
    clean (`tv100.flows.runners`).

    The build holds the data root's lock (`tv100.storage.lock`) from start to end: a second
    build, refresh or stage run on the same root waits for it, or with ``wait=False`` this
    build refuses at once with a one-line `tv100.storage.lock.RootBusyError` naming the run
    that holds it.

    First, temp files of an interrupted run are removed and corrupt tables healed: a derived
    one is removed (its stage rebuilds it), any other moved aside to
    ``<name>.parquet.corrupt-<UTC time>`` with a warning (its stage fetches it again).

    Last, the finished state is recorded as a snapshot (`tv100.tasks.snapshots.snapshots`):
    a new one when any table changed since the latest snapshot, else the latest one's id is
    reused and nothing is written. Its id is the result's ``snapshot``.
    """
    params = dict(locals())
    params.pop("wait")  # how to start, not what to build: not part of the snapshot
    logger = get_run_logger()
    logger.info("build parameters: %s", json.dumps(params, sort_keys=True))
    check_runner(runner)
    root = resolve_root(data)
    # One build per data root: a second one waits here (or, with wait=False, refuses).
    with hold_root(root, wait=wait, what="build"):
        root.ensure()
        specs = list(models or DEFAULT_MODELS)
        train_model = train_model or specs[0]
        recipes = list(recipes or DEFAULT_RECIPES)
        # Temp files of a run killed between write and rename are swept before anything
        # runs: only those older than this hold (a later run's temps are not ours to sweep).
        removed = remove_temp_files(root)
        if removed:
            logger.info("removed %d temp files left by an interrupted run", removed)
        # Then corrupt tables: stages read a table before they rewrite it.
        healed = tuple(h.message for h in heal_tables(root))
        for line in healed:
            logger.warning(line)
        discovered = discover_flow(
            location=location,
            source=source,
            since=since,
            min_votes=min_votes,
            data=root.url,
            max_pages=max_pages,
            locale=locale,
            allow_hosts=allow_hosts,
            refresh=refresh,
            max_file_bytes=max_file_bytes,
        )
        collected = run_flow(
            collect_flow,
            runner,
            data=root.url,
            engines=engines,
            query_template=query_template,
            per_series_cap=per_series_cap,
            engine_urls=engine_urls,
            max_side=max_side,
            image_timeout_s=image_timeout_s,
            image_retries=image_retries,
            allow_hosts=allow_hosts,
            refresh=refresh,
            download_shard_size=download_shard_size,
            download_max_attempts=download_max_attempts,
            download_retry_backoff_s=download_retry_backoff_s,
        )
        cleaned = run_flow(
            clean_flow, runner, data=root.url, phash_threshold=phash_threshold,
            exclusions=exclusions,
        )
        ranked = (
            rank_flow(data=root.url, models=specs, k=k, min_images=min_images) if rank else None
        )
        trained = (
            train_flow(
                data=root.url,
                model=train_model,
                recipes=recipes,
                phash_threshold=phash_threshold,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                warmup_steps=warmup_steps,
                sampling=sampling,
            )
            if rank and train
            else None
        )
        report = report_task(root, REPORT)
        resolved = {**params, "data": root.url, "models": specs, "train_model": train_model,
                    "recipes": recipes}
        snapshot = record_snapshot_task(root, resolved, flow_run.id)
        logger.info(
            "snapshot %s (%s)", snapshot.snapshot_id, "new" if snapshot.created else "unchanged"
        )
        return BuildResult(
            discover=discovered,
            collect=collected,
            clean=cleaned,
            rank=ranked,
            train=trained,
            report=report,
            snapshot=snapshot.snapshot_id,
            healed=healed,
        )
