"""The build flow: chains every stage with one resolved configuration, logged once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tv100.flows.clean import clean_flow
from tv100.flows.collect import collect_flow
from tv100.flows.discover import discover_flow
from tv100.flows.rank import rank_flow
from tv100.flows.review import review_pause
from tv100.flows.runners import check_runner, run_flow
from tv100.flows.train import train_flow
from tv100.storage.heal import heal_tables
from tv100.storage.lock import hold_root
from tv100.storage.root import remove_temp_files, resolve_root
from tv100.tasks.buildconfig import (
    ConfigError,
    Option,
    Settings,
    apply,
    defaults,
    options_of,
    report_config,
    stage_config,
)
from tv100.tasks.clean.config import CLEAN, CleanResult
from tv100.tasks.collect.config import DOWNLOAD, SEARCH, CollectResult
from tv100.tasks.discover.config import DISCOVER, DiscoverResult, Source
from tv100.tasks.prerequisites import check_dataset_location, check_root
from tv100.tasks.rank.config import SELECT, RankResult
from tv100.tasks.rank.recorded import default_models
from tv100.tasks.report.config import ReportResult
from tv100.tasks.report.report import report_task
from tv100.tasks.review.decisions import REVIEW_TIMEOUT_S
from tv100.tasks.snapshots.snapshots import record_snapshot_task
from tv100.tasks.tables import write_catalog_task
from tv100.tasks.train.config import TRAIN, TrainResult
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


def build_options(
    data: str | None = None, runner: str = "threads", rank: bool = True, train: bool = True,
    review: bool = False, review_timeout_s: float = REVIEW_TIMEOUT_S,
) -> dict[str, Any]:
    """The ``[build]`` table: the data root (default ``$TV100_DATA``, else ``./data``), the
    task runner of collect and clean (`tv100.flows.runners`), whether the rank and train
    stages run (``rank = false`` stops after clean), and whether the build pauses after the
    rank stage for a human review (`tv100.flows.review`; ``review_timeout_s``: how long it
    waits for "Done" before going on; checked by `tv100.tasks.buildconfig.build_config`)."""
    return {"data": data, "runner": runner, "rank": rank, "train": train, "review": review,
            "review_timeout_s": review_timeout_s}


#: The keys of each table of the build's settings: the stage flows' parameters.
OPTIONS: dict[str, dict[str, Option]] = {
    "build": options_of(build_options, exclude=()),
    "discover": options_of(discover_flow),
    "collect": options_of(collect_flow),
    "clean": options_of(clean_flow),
    "rank": options_of(rank_flow),
    "train": options_of(train_flow),
    "report": options_of(report_config),
}

#: The build flow's own parameters (shortcuts kept for deployments and the demo): the
#: (table, key) each one sets. ``phash_threshold`` sets clean's and the train stage's
#: leakage check's, ``allow_hosts`` and ``refresh`` discover's and collect's.
PARAMETERS: dict[str, tuple[tuple[str, str], ...]] = {
    **{k: (("discover", k),) for k in (
        "location", "source", "since", "min_votes", "max_pages", "locale", "max_file_bytes")},
    **{k: (("collect", k),) for k in (
        "engines", "engine_urls", "query_template", "per_series_cap", "max_side",
        "image_timeout_s", "image_retries", "download_shard_size", "download_max_attempts",
        "download_retry_backoff_s")},
    "phash_threshold": (("clean", "phash_threshold"), ("train", "phash_threshold")),
    "exclusions": (("clean", "exclusions"),),
    "allow_hosts": (("discover", "allow_hosts"), ("collect", "allow_hosts")),
    "refresh": (("discover", "refresh"), ("collect", "refresh")),
    "models": (("rank", "models"),),
    "k": (("rank", "k"),),
    "min_images": (("rank", "min_images"),),
    "train_model": (("train", "model"),),
    **{k: (("train", k),) for k in (
        "recipes", "epochs", "lr", "batch_size", "warmup_steps", "sampling")},
    **{k: (("build", k),) for k in (
        "data", "runner", "rank", "train", "review", "review_timeout_s")},
}


def resolve_settings(
    layers: list[tuple[str, Mapping[str, Any]]] | None = None, require_location: bool = True
) -> Settings:
    """Every table and key of the build's settings: the defaults, then each layer
    ``(origin, {table: {key: value}})`` on top (a file, a deployment's ``config``, the
    command line), each value checked (`tv100.tasks.buildconfig.apply`); with
    `require_location`, ``[discover] location`` must be set.

    Raises:
        ConfigError: one line naming the origin, the key and what was expected.
    """
    settings = defaults(OPTIONS)
    for origin, layer in layers or []:
        settings = apply(settings, layer, origin, OPTIONS)
        runner = layer.get("build", {}).get("runner") if isinstance(layer, Mapping) else None
        if runner is not None:
            try:
                check_runner(settings["build"]["runner"])
            except ValueError as err:
                raise ConfigError(f"{origin}: [build] runner = {runner!r}: {err}") from None
    if require_location and not settings["discover"]["location"]:
        raise ConfigError(
            "no IMDb location: set [discover] location in the settings (or --location)"
        )
    return settings


def parameter_layer(parameters: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings the build flow's own parameters set: those that differ from their
    defaults (`PARAMETERS`)."""
    flow_defaults = {k: o.default for k, o in options_of(build_flow, ("config", "wait")).items()}
    layer: dict[str, dict[str, Any]] = {}
    for name, targets in PARAMETERS.items():
        value = parameters.get(name, flow_defaults.get(name))
        if value != flow_defaults.get(name):
            for section, key in targets:
                layer.setdefault(section, {})[key] = value
    return layer


@flow(name="build")
def build_flow(
    location: str | None = None,
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
    review: bool = False,
    review_timeout_s: float = REVIEW_TIMEOUT_S,
    train_model: str | None = None,
    recipes: list[str] | None = None,
    epochs: int = TRAIN.epochs,
    lr: float = TRAIN.lr,
    batch_size: int = TRAIN.batch_size,
    warmup_steps: int = TRAIN.warmup_steps,
    sampling: str = TRAIN.sampling,
    runner: str = "threads",
    config: dict[str, Any] | None = None,
    wait: bool = True,
) -> BuildResult:
    """Build (or refresh) a dataset end to end.

    Every option of every stage is set through `config`: ``{table: {key: value}}``, the
    tables ``build``, ``discover``, ``collect``, ``clean``, ``rank``, ``train`` and
    ``report`` whose keys are the stage flows' parameters (``tv100 build --config FILE``
    reads the same from TOML; see `tv100.tasks.buildconfig`), each checked by the stage's
    own config. The other parameters are shortcuts for the most used ones (`PARAMETERS`:
    `location`, `models`, `recipes`, ...); one that differs from its default overrides
    `config`. A bad setting fails the run at once, before anything is written, with one
    line (`tv100.tasks.buildconfig.ConfigError`).

    `data` is the data root (default ``$TV100_DATA``, else ``./data``). `models` are the
    CLIPs the rank stage judges novelty with (default: the ones the data root was last
    ranked with, else `tv100.tasks.rank.config.DEFAULT_MODELS`); `train_model` (default
    the first of them) is fine-tuned by the train stage, which `train=False` skips;
    `rank=False` stops after clean. `runner` is the task runner of collect and clean
    (`tv100.flows.runners`). With `review`, the build pauses after the rank stage for a
    human review of the kept classes (`tv100.flows.review`: the page's URL is the run's
    ``review`` artifact; "Done" or `review_timeout_s` resumes it), then ranks again so that
    the selection honours the decisions, and trains.

    The build holds the data root's lock (`tv100.storage.lock`) from start to end: a second
    build, refresh or stage run on the same root waits for it, or with ``wait=False`` this
    build refuses at once with a one-line `tv100.storage.lock.RootBusyError` naming the run
    that holds it.

    First, temp files of an interrupted run are removed and corrupt tables healed: a derived
    one is removed (its stage rebuilds it), any other moved aside to
    ``<name>.parquet.corrupt-<UTC time>`` with a warning (its stage fetches it again).

    Last, the finished state is recorded as a snapshot (`tv100.tasks.snapshots.snapshots`):
    a new one when any table changed since the latest snapshot, else the latest one's id is
    reused and nothing is written. Its id is the result's ``snapshot``. Then
    ``catalog.duckdb`` is (re)written when a table appeared (`tv100.storage.catalog`).
    """
    params = dict(locals())
    logger = get_run_logger()
    settings = resolve_settings(
        [("config", config or {}), ("parameters", parameter_layer(params))]
    )
    b, disc, coll, cln, rnk, trn = (settings[s] for s in (
        "build", "discover", "collect", "clean", "rank", "train"))
    root = check_root(resolve_root(b["data"]))
    check_dataset_location(disc["source"], disc["location"], root)  # before the root is made
    # One build per data root: a second one waits here (or, with wait=False, refuses).
    with hold_root(root, wait=wait, what="build"):
        root.ensure()
        rnk["models"] = list(default_models(root, rnk["models"]))
        trn["model"] = trn["model"] or rnk["models"][0]
        settings["build"]["data"] = root.url
        # The resolved configuration, once: every stage's options.
        logger.info("build settings: %s", json.dumps(settings, sort_keys=True))
        # Temp files of a run killed between write and rename are swept before anything
        # runs: only those older than this hold (a later run's temps are not ours to sweep).
        removed = remove_temp_files(root)
        if removed:
            logger.info("removed %d temp files left by an interrupted run", removed)
        # Then corrupt tables: stages read a table before they rewrite it.
        healed = tuple(h.message for h in heal_tables(root))
        for line in healed:
            logger.warning(line)
        discovered = discover_flow(data=root.url, **disc)
        collected = run_flow(collect_flow, b["runner"], data=root.url, **coll)
        cleaned = run_flow(clean_flow, b["runner"], data=root.url, **cln)
        ranked = rank_flow(data=root.url, **rnk) if b["rank"] else None
        if ranked is not None and b["review"]:
            review_pause(root, b["review_timeout_s"])
            ranked = rank_flow(data=root.url, **rnk)  # the selection honours the reviews
        trained = train_flow(data=root.url, **trn) if b["rank"] and b["train"] else None
        report = report_task(root, stage_config("report", settings["report"]))
        snapshot = record_snapshot_task(root, settings, flow_run.id)
        logger.info(
            "snapshot %s (%s)", snapshot.snapshot_id, "new" if snapshot.created else "unchanged"
        )
        # For DuckDB outside tv100: `duckdb DATA/catalog.duckdb`, a view per table.
        write_catalog_task(root)
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
