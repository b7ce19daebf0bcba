"""The `tv100` commands: each checks its input, runs one flow or function, prints the result."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from tv100.flows.cli.app import (
    DataOpt,
    DiffFormat,
    InspectKind,
    ModelOpt,
    OutFormat,
    RunnerOpt,
    SourceName,
    app,
    data_root,
    fail,
    model_specs,
    runner_name,
)
from tv100.flows.cli.render import (
    format_rank,
    format_report,
    format_rows,
    format_runs,
    json_line,
    to_json,
)
from tv100.tasks.clean.config import CLEAN
from tv100.tasks.collect.config import DOWNLOAD, SEARCH
from tv100.tasks.collect.engines import ENGINE_NAMES
from tv100.tasks.discover.config import DISCOVER, MAX_SINCE, MIN_SINCE
from tv100.tasks.localfiles import LocalFileError, read_local_file, regular_file_stat
from tv100.tasks.rank.config import AGGREGATES, CONSENSUS, EMBED, MAX_MODELS, RELEVANCE, SELECT
from tv100.tasks.report.config import REPORT
from tv100.tasks.review.decisions import REVIEW_TIMEOUT_S
from tv100.tasks.snapshots.config import DEFAULT_DIFF_THRESHOLD
from tv100.tasks.train.config import EXPORT_SPLITS, SPLIT, TRAIN
from tv100.tasks.web.config import GIB, MAX_FILE_BYTES, MIB, HttpConfig

LocationOpt = Annotated[str, typer.Option(help="IMDb datasets folder/URL or IMDb base URL.")]
SourceOpt = Annotated[SourceName, typer.Option(help="Where to list series from.")]
SinceOpt = Annotated[
    int, typer.Option(min=MIN_SINCE, max=MAX_SINCE, help="Keep start_year > since.")
]
MinVotesOpt = Annotated[int | None, typer.Option(min=0, help="Minimum IMDb votes.")]
AllowHostOpt = Annotated[
    list[str] | None, typer.Option(help="Host[:port] allowed despite a private address.")
]
KOpt = Annotated[int, typer.Option(min=1, help="Series to keep (the K hardest).")]
MinImagesOpt = Annotated[
    int, typer.Option(min=0, help="Fewest cleaned images a kept series needs.")
]
BatchOpt = Annotated[int, typer.Option(min=1, max=4096, help="Images per batch.")]
MaxFileBytesOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help=f"Largest IMDb dataset file downloaded, in bytes (streamed to disk; default "
        f"{MAX_FILE_BYTES // GIB} GiB; imdb-datasets).",
    ),
]
NoWaitOpt = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="If another run holds the data root, refuse at once instead of waiting for it.",
    ),
]
MaxAttemptsOpt = Annotated[
    int,
    typer.Option(
        min=1, max=100,
        help="Runs that may try one image: a transient failure (timeout, 429, 5xx, connection "
        "error) is tried again by a later run, up to this many.",
    ),
]
RetryBackoffOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Seconds before a transiently failed image is tried again (doubled each try).",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda[:N].")]

#: The largest saved page ``tv100 inspect`` reads: the HTTP layer's body cap, so any page
#: tv100 could have fetched can be inspected.
PAGE_MAX_BYTES = HttpConfig.max_bytes
#: The largest exclusion list ``tv100 clean --exclusions`` accepts (~1M URLs).
EXCLUSIONS_MAX_BYTES = 256 * MIB


def _max_file_bytes(value: int) -> int:
    """--max-file-bytes checked against the HTTP layer's own bounds; a bad one is one line."""
    try:
        HttpConfig(max_file_bytes=value)
    except ValueError as err:
        fail(f"--max-file-bytes: {err}")
    return value


def _warn(lines: Sequence[str]) -> None:
    """Each line on stderr as ``tv100: warning: …`` (after the run's result on stdout)."""
    for line in lines:
        typer.echo(f"tv100: warning: {line}", err=True)


def _stage_url(data: str | None, stage: str, since: str | None = None) -> str:
    """The data root's URL for `stage`, its input tables checked first (at once, before a
    flow starts; the flow checks again): a missing one is one line, nothing created."""
    from tv100.tasks.prerequisites import require_inputs

    root = data_root(data)
    require_inputs(root, stage, since)  # MissingInputError: one line, exit 2
    return root.url


def check_recipes(recipes: Sequence[str] | None, allowed: Sequence[str] | None = None) -> None:
    """Fail in one line on a ``--recipe`` outside `allowed` (default: every recipe)."""
    if allowed is None:
        from tv100.tasks.train.config import RECIPES

        allowed = RECIPES
    for r in recipes or []:
        if r not in allowed:
            fail(f"--recipe {r!r}; expected one of {', '.join(allowed)}")


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of settings: a table per stage ([build], [discover], [collect], "
        "[clean], [rank], [train], [report]) whose keys are the stage's options; options "
        "given here override it (see README, 'Build settings in a file').",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="TABLE.KEY=VALUE",
        help="Any stage option, as in the settings file (VALUE is read as TOML, else as "
        "text): --set collect.engines='[\"bing\"]' --set train.epochs=3; repeatable.",
    ),
]

#: `tv100 build` options and the (table, key) of the build settings each one sets.
BUILD_OPTION_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "location": (("discover", "location"),),
    "source": (("discover", "source"),),
    "since": (("discover", "since"),),
    "min_votes": (("discover", "min_votes"),),
    "max_file_bytes": (("discover", "max_file_bytes"),),
    "data": (("build", "data"),),
    "allow_host": (("discover", "allow_hosts"), ("collect", "allow_hosts")),
    "refresh": (("discover", "refresh"), ("collect", "refresh")),
    "model": (("rank", "models"),),
    "k": (("rank", "k"),),
    "min_images": (("rank", "min_images"),),
    "train": (("build", "train"),),
    "review": (("build", "review"),),
    "review_timeout": (("build", "review_timeout_s"),),
    "recipe": (("train", "recipes"),),
    "runner": (("build", "runner"),),
    "download_max_attempts": (("collect", "download_max_attempts"),),
    "download_retry_backoff": (("collect", "download_retry_backoff_s"),),
}


def _set_layer(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """Each --set TABLE.KEY=VALUE as settings; VALUE is read as TOML, else taken as text."""
    import tomllib

    layer: dict[str, dict[str, Any]] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            fail(f"--set {item!r}; expected TABLE.KEY=VALUE, e.g. train.epochs=3")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        layer.setdefault(section, {})[key] = value
    return layer


def _command_line_layer(ctx: typer.Context, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings the options given on the command line set (not their defaults)."""
    layer: dict[str, dict[str, Any]] = {}
    for name, targets in BUILD_OPTION_KEYS.items():
        source = ctx.get_parameter_source(name)  # typer's own click: compared by name
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = values[name]
        if isinstance(value, SourceName):
            value = value.value
        for section, key in targets:
            layer.setdefault(section, {})[key] = value
    return layer


@app.command()
def build(
    ctx: typer.Context,
    location: Annotated[
        str | None,
        typer.Option(help="IMDb datasets folder/URL or IMDb base URL ([discover] location)."),
    ] = None,
    source: SourceOpt = SourceName.imdb_datasets,
    since: SinceOpt = DISCOVER.since,
    min_votes: MinVotesOpt = None,
    data: DataOpt = None,
    allow_host: AllowHostOpt = None,
    refresh: Annotated[bool, typer.Option(help="Fetch sources again, ignoring today's cache.")] = (
        False
    ),
    model: ModelOpt = None,
    k: KOpt = SELECT.k,
    min_images: MinImagesOpt = SELECT.min_images,
    train: Annotated[bool, typer.Option(help="Run the train stage.")] = True,
    review: Annotated[bool, typer.Option(
        help="Pause after rank for a human review (the run's `review` artifact links the "
             "page); go on at Done or after --review-timeout.")] = False,
    review_timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds a paused build waits for the review ([build] review_timeout_s).",
    )] = REVIEW_TIMEOUT_S,
    recipe: Annotated[
        list[str] | None,
        typer.Option(help="Train recipes: zeroshot, linear, finetune, wiseft; repeatable.")
    ] = None,
    runner: RunnerOpt = "threads",
    max_file_bytes: MaxFileBytesOpt = MAX_FILE_BYTES,
    download_max_attempts: MaxAttemptsOpt = DOWNLOAD.max_attempts,
    download_retry_backoff: RetryBackoffOpt = DOWNLOAD.retry_backoff_s,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    print_config: Annotated[
        bool,
        typer.Option("--print-config", help="Print the resolved settings as TOML and exit."),
    ] = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Run the whole pipeline: discover, collect, clean, rank, train, report.

    Every stage's options can be set in a TOML file (--config) or one by one (--set); the
    options of this command override both. --print-config shows the result.
    """
    from tv100.flows.build import build_flow, resolve_settings
    from tv100.tasks.buildconfig import ConfigError, read_file, to_toml

    values = dict(locals())
    check_recipes(recipe)
    max_file_bytes = _max_file_bytes(max_file_bytes)
    runner = runner_name(runner)
    model_specs(model)  # a bad --model is refused before the data root is touched
    layers: list[tuple[str, Any]] = []
    try:
        if config is not None:
            layers.append((str(config), read_file(config)))
        layers.append(("--set", _set_layer(set_)))
        layers.append(("command line", _command_line_layer(ctx, values)))
        settings = resolve_settings(layers, require_location=not print_config)
    except ConfigError as err:
        fail(str(err))
    root = data_root(settings["build"]["data"])  # checked, not created
    if not print_config:
        from tv100.tasks.prerequisites import check_dataset_location

        disc = settings["discover"]
        check_dataset_location(disc["source"], disc["location"], root)
    else:
        from tv100.tasks.rank.recorded import default_models

        settings["build"]["data"] = root.url
        settings["rank"]["models"] = list(default_models(root, settings["rank"]["models"]))
        settings["train"]["model"] = settings["train"]["model"] or settings["rank"]["models"][0]
        sys.stdout.write(to_toml(settings))
        return
    result = build_flow(config=settings, wait=not no_wait)
    typer.echo(to_json(result))
    _warn(result.collect.engine_warnings)


@app.command()
def discover(
    location: LocationOpt,
    source: SourceOpt = SourceName.imdb_datasets,
    since: SinceOpt = DISCOVER.since,
    min_votes: MinVotesOpt = None,
    data: DataOpt = None,
    max_pages: Annotated[
        int, typer.Option(min=1, help="Cap on list pages (imdb-web).")
    ] = DISCOVER.max_pages,
    locale: Annotated[str | None, typer.Option(help="IMDb locale prefix, e.g. de.")] = None,
    allow_host: AllowHostOpt = None,
    refresh: Annotated[bool, typer.Option(help="Fetch sources again, ignoring today's cache.")] = (
        False
    ),
    max_file_bytes: MaxFileBytesOpt = MAX_FILE_BYTES,
    no_wait: NoWaitOpt = False,
) -> None:
    """Run the discover stage alone: IMDb → the `series` table."""
    from tv100.flows.discover import discover_flow
    from tv100.tasks.prerequisites import check_dataset_location

    max_file_bytes = _max_file_bytes(max_file_bytes)
    root = data_root(data)
    check_dataset_location(source.value, location, root)  # at once; nothing created
    result = discover_flow(
        wait=not no_wait,
        location=location,
        source=source.value,
        since=since,
        min_votes=min_votes,
        data=root.url,
        max_pages=max_pages,
        locale=locale,
        allow_hosts=allow_host or [],
        refresh=refresh,
        max_file_bytes=max_file_bytes,
    )
    typer.echo(to_json(result))


def _engine_urls(items: list[str] | None) -> dict[str, str]:
    """Each --engine-url NAME=ORIGIN checked, as {name: origin}."""
    urls: dict[str, str] = {}
    for item in items or []:
        name, sep, origin = item.partition("=")
        if not sep or name not in ENGINE_NAMES or not origin.startswith(("http://", "https://")):
            fail(f"--engine-url {item!r} is invalid; expected NAME=http(s)://ORIGIN with NAME in "
                 f"{', '.join(sorted(ENGINE_NAMES))}")
        urls[name] = origin
    return urls


def _check_engines(engines: list[str] | None) -> None:
    for name in engines or []:
        if name not in ENGINE_NAMES:
            fail(f"--engine {name!r} is unknown; expected one of {', '.join(sorted(ENGINE_NAMES))}")


@app.command()
def collect(
    data: DataOpt = None,
    engine: Annotated[
        list[str] | None,
        typer.Option(
            help=f"{', '.join(ENGINE_NAMES[:-1])} or {ENGINE_NAMES[-1]} (repeat); all by default."
        ),
    ] = None,
    engine_url: Annotated[
        list[str] | None, typer.Option(help="NAME=ORIGIN to point an engine elsewhere.")
    ] = None,
    query_template: Annotated[str, typer.Option(help="Query per series.")] = (
        SEARCH.query_template
    ),
    per_series_cap: Annotated[int, typer.Option(min=1, help="Hits per series and engine.")] = (
        SEARCH.per_series_cap
    ),
    max_side: Annotated[int, typer.Option(min=16, help="Stored images' longer side.")] = (
        DOWNLOAD.max_side
    ),
    image_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per image.")] = (
        DOWNLOAD.http.timeout_s
    ),
    allow_host: AllowHostOpt = None,
    refresh: Annotated[bool, typer.Option(help="Search again, ignoring this week's cache.")] = (
        False
    ),
    runner: RunnerOpt = "threads",
    download_max_attempts: MaxAttemptsOpt = DOWNLOAD.max_attempts,
    download_retry_backoff: RetryBackoffOpt = DOWNLOAD.retry_backoff_s,
    no_wait: NoWaitOpt = False,
) -> None:
    """Run the collect stage alone: search each series' images and download them."""
    from tv100.flows.collect import collect_flow
    from tv100.flows.runners import run_flow

    runner = runner_name(runner)
    urls = _engine_urls(engine_url)
    _check_engines(engine)
    result = run_flow(
        collect_flow,
        runner,
        wait=not no_wait,
        download_max_attempts=download_max_attempts,
        download_retry_backoff_s=download_retry_backoff,
        data=_stage_url(data, "collect"),
        engines=engine or None,
        engine_urls=urls or None,
        query_template=query_template,
        per_series_cap=per_series_cap,
        max_side=max_side,
        image_timeout_s=image_timeout,
        allow_hosts=allow_host or [],
        refresh=refresh,
    )
    typer.echo(to_json(result))
    _warn(result.engine_warnings)


@app.command()
def clean(
    data: DataOpt = None,
    phash_threshold: Annotated[
        int, typer.Option(min=0, max=32, help="pHash Hamming distance for near duplicates.")
    ] = CLEAN.phash_threshold,
    keep_cross_series: Annotated[
        bool, typer.Option(help="Keep one copy of images found under several series.")
    ] = False,
    min_side: Annotated[
        int, typer.Option(min=1, help="Shorter side below this is junk.")
    ] = CLEAN.min_side,
    exclusions: Annotated[
        Path | None, typer.Option(help="CSV/Parquet of image_id_or_url,reason to exclude.")
    ] = None,
    runner: RunnerOpt = "threads",
    no_wait: NoWaitOpt = False,
) -> None:
    """Run the clean stage alone: junk flags, exact and near-duplicate removal."""
    from tv100.flows.clean import clean_flow
    from tv100.flows.runners import run_flow

    runner = runner_name(runner)
    if exclusions is not None:
        try:
            regular_file_stat(exclusions, EXCLUSIONS_MAX_BYTES)
        except LocalFileError as err:
            fail(f"--exclusions: {err} (a CSV or Parquet exclusion list)")
        except OSError as err:
            fail(f"--exclusions {str(exclusions)!r} is not a readable file: {err.strerror or err}")
    result = run_flow(
        clean_flow,
        runner,
        wait=not no_wait,
        data=_stage_url(data, "clean"),
        phash_threshold=phash_threshold,
        drop_cross_series=not keep_cross_series,
        min_side=min_side,
        exclusions=str(exclusions) if exclusions else None,
    )
    typer.echo(to_json(result))


@app.command()
def dedupe(
    directory: Annotated[Path, typer.Argument(help="A folder of images (searched recursively).")],
    threshold: Annotated[
        int, typer.Option(min=0, max=32, help="pHash Hamming threshold.")
    ] = CLEAN.phash_threshold,
    out: Annotated[
        Path | None, typer.Option(help="Write hashes and groups to this .parquet file.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Hashing processes.")] = CLEAN.workers,
) -> None:
    """Find duplicate images in any folder: one JSON object per group (or unreadable file)."""
    from tv100.tasks.clean.folder import dedupe_folder

    if not directory.is_dir():
        fail(f"{str(directory)!r} is not a folder; expected a folder of images")
    try:
        for record in dedupe_folder(directory, threshold=threshold, out=out, workers=workers):
            typer.echo(json_line(record))
    except ValueError as err:
        fail(str(err))


@app.command()
def sql(
    query_text: Annotated[str, typer.Argument(metavar="QUERY", help="SQL over the tables.")],
    data: DataOpt = None,
    format: Annotated[OutFormat, typer.Option("--format", help="Output format.")] = (
        OutFormat.table
    ),
    unsafe: Annotated[
        bool,
        typer.Option(
            "--unsafe",
            help="Local only, for a data root you trust on your own machine: allow any "
            "statement (COPY, ATTACH, CREATE, SET, INSTALL, ...) and any file DuckDB can reach.",
        ),
    ] = False,
) -> None:
    """Query every table with DuckDB (one view per table), read-only.

    Only SELECT (with DESCRIBE, SHOW, SUMMARIZE) and EXPLAIN of a SELECT run, reading files
    under the data root only, with DuckDB's configuration locked; anything else is refused
    (exit 2) unless --unsafe is given.
    """
    import duckdb

    from tv100.flows.cli.sqlguard import SqlRefused, error_text, read_only_query
    from tv100.storage.catalog import query

    root = data_root(data)  # checked, never created: a query only reads
    try:
        table = query(root, query_text) if unsafe else read_only_query(root, query_text)
    except SqlRefused as err:
        fail(f"sql: {err}")
    except duckdb.Error as err:  # DuckDB's whole message: its hints and the position too
        fail(error_text(root, err))
    sys.stdout.write(format_rows(table.column_names, table.to_pylist(), format))


@app.command()
def inspect(
    kind: Annotated[InspectKind, typer.Argument(help="Which parser to run.")],
    file: Annotated[Path, typer.Argument(help="A saved page.")],
) -> None:
    """Parse a saved page and print one JSON object per record (series or image hit).

    For duckduckgo, FILE is the JSON answer of its ``i.js`` endpoint. A page that is not a
    page of KIND (a bot check, a consent wall, another layout) exits 2 saying what it is; a
    result page that found nothing prints nothing. FILE must be a regular file of at most
    20 MiB (the largest page tv100 fetches).
    """
    from tv100.tasks.collect.engines import read_page
    from tv100.tasks.discover.imdb_pages import (
        classify_imdb_page,
        parse_list_page,
        parse_title_page,
    )

    try:
        content = read_local_file(file, PAGE_MAX_BYTES)
    except LocalFileError as err:
        fail(f"inspect: {err} (a saved page)")
    except OSError as err:
        fail(f"cannot read {str(file)!r}: {err.strerror or err}")
    records: list[Any]
    if kind in (InspectKind.imdb_list, InspectKind.imdb_title):
        page_class = classify_imdb_page(content, kind.value)
        if page_class in ("blocked", "unknown_layout"):
            what = {"blocked": "a bot-check page", "unknown_layout": "a layout tv100 cannot read"}
            fail(
                f"{str(file)!r} is not an IMDb {kind.value.removeprefix('imdb-')} page: "
                f"{page_class} ({what[page_class]})"
            )
        if kind is InspectKind.imdb_list:
            records = [item.to_dict() for item in parse_list_page(content)]
        else:
            title = parse_title_page(content)
            records = [title.to_dict()] if title else []
    else:
        page = read_page(kind.value, content)
        if not page.valid:
            fail(
                f"{str(file)!r} is not a {kind.value} result page: {page.page_class} "
                f"({page.reason})"
            )
        records = [hit.to_dict() for hit in page.hits]
    for r in records:
        typer.echo(json_line(r, sort_keys=True))


@app.command()
def rank(
    data: DataOpt = None,
    model: ModelOpt = None,
    k: KOpt = SELECT.k,
    min_images: MinImagesOpt = SELECT.min_images,
    aggregate: Annotated[
        str, typer.Option(help="Over several models: max (ranked on the best top-1: unseen by "
                          "all), mean, all (kept only if every model finds it unseen) or vote "
                          "(if at least --min-unseen models do).")
    ] = SELECT.aggregate,
    min_unseen: Annotated[
        int | None, typer.Option(min=1, max=MAX_MODELS, help="With --aggregate vote: the "
                                 "fewest models that must find a kept series unseen "
                                 "(default: a majority).")
    ] = SELECT.min_unseen,
    seen_threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="With --aggregate all|vote: the "
                                   "top-1 above which a model has seen a series (default: "
                                   "max(2 / candidates, 0.1)).")
    ] = SELECT.seen_threshold,
    template: Annotated[
        list[str] | None, typer.Option(help="Prompt template with one {}; repeatable.")
    ] = None,
    batch_size: BatchOpt = EMBED.batch_size,
    device: DeviceOpt = EMBED.device,
    relevance: Annotated[
        bool, typer.Option(help="Leave out images irrelevant to their series before ranking "
                           "(table `relevance`).")
    ] = RELEVANCE.enabled,
    no_wait: NoWaitOpt = False,
) -> None:
    """Rank candidate series by CLIP zero-shot accuracy; keep the K hardest (`classes`)."""
    from tv100.flows.rank import rank_flow

    if aggregate not in AGGREGATES:
        fail(f"--aggregate {aggregate!r}; expected one of {', '.join(AGGREGATES)}")
    if min_unseen is not None and aggregate != "vote":
        fail(f"--min-unseen {min_unseen} applies only with --aggregate vote, not {aggregate}")
    if seen_threshold is not None and aggregate not in CONSENSUS:
        fail(f"--seen-threshold {seen_threshold} applies only with --aggregate all or vote, "
             f"not {aggregate}")
    models = model_specs(model)
    url = _stage_url(data, "rank")
    try:
        result = rank_flow(
            wait=not no_wait,
            data=url, models=models, k=k, min_images=min_images,
            aggregate=aggregate, templates=template, batch_size=batch_size, device=device,
            relevance=relevance, min_unseen=min_unseen, seen_threshold=seen_threshold,
        )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo("\n".join(["tv100 rank finished", *format_rank(result)]))


@app.command()
def train(
    data: DataOpt = None,
    recipe: Annotated[
        list[str] | None,
        typer.Option(help="zeroshot, linear, finetune or wiseft; repeatable.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="CLIP as ARCH@WEIGHTS or local-dir:FOLDER; default: the (first) "
                     "model the data root was last ranked with."),
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, max=10000, help="Fine-tuning epochs.")
    ] = TRAIN.epochs,
    lr: Annotated[float, typer.Option(min=0, max=1, help="Peak AdamW learning rate.")] = TRAIN.lr,
    batch_size: Annotated[
        int, typer.Option(min=1, max=65536, help="Images per step.")
    ] = TRAIN.batch_size,
    warmup_steps: Annotated[
        int, typer.Option(min=0, help="Linear warm-up steps.")
    ] = TRAIN.warmup_steps,
    weight_decay: Annotated[
        float, typer.Option(min=0, max=10, help="AdamW decay.")
    ] = TRAIN.weight_decay,
    sampling: Annotated[
        str, typer.Option(help="uniform, balanced or sqrt (long-tail sampling).")
    ] = TRAIN.sampling,
    logit_adjust_tau: Annotated[
        float, typer.Option(min=0, max=10, help="Logit adjustment τ (0: off).")
    ] = TRAIN.logit_adjust_tau,
    test_ratio: Annotated[
        float, typer.Option(min=0, max=0.99, help="Test share.")
    ] = SPLIT.test_ratio,
    val_ratio: Annotated[
        float, typer.Option(min=0, max=0.99, help="Validation share.")
    ] = SPLIT.val_ratio,
    split_seed: Annotated[int, typer.Option(min=0, help="Seed of the split.")] = SPLIT.seed,
    seed: Annotated[int, typer.Option(min=0, help="Seed of training.")] = TRAIN.seed,
    export: Annotated[
        bool, typer.Option(help="Write export/{train,val,test}/ folders.")
    ] = EXPORT_SPLITS,
    clip_threshold: Annotated[
        float | None,
        typer.Option(min=0.01, max=0.9999,
                     help="Also count held-out images this CLIP-similar to a train image "
                     "as leaking (rank stage's embeddings; e.g. 0.95 for real CLIPs)."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N]; default auto.")] = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Split the kept series and score recipes on them; rows appended to `metrics`."""
    from tv100.flows.train import train_flow
    from tv100.tasks.train.config import SAMPLINGS

    check_recipes(recipe)
    if sampling not in SAMPLINGS:
        fail(f"--sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}")
    model_specs([model] if model else None)
    url = _stage_url(data, "train")
    try:
        result = train_flow(
            wait=not no_wait,
            data=url, model=model, recipes=recipe, test_ratio=test_ratio, val_ratio=val_ratio,
            split_seed=split_seed, export=export, clip_threshold=clip_threshold, epochs=epochs,
            batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, warmup_steps=warmup_steps, sampling=sampling,
            logit_adjust_tau=logit_adjust_tau, seed=seed, device=device,
        )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo("\n".join(["tv100 train finished", *format_runs(result)]))


@app.command()
def report(
    data: DataOpt = None,
    many: Annotated[
        int, typer.Option(min=0, help="Many-shot: more train images.")
    ] = REPORT.tiers.many,
    few: Annotated[
        int, typer.Option(min=0, help="Few-shot: fewer train images.")
    ] = REPORT.tiers.few,
    metric: Annotated[str, typer.Option(help="Metric of figure (d).")] = REPORT.metric,
    split: Annotated[str, typer.Option(help="Split of figure (d).")] = REPORT.split,
) -> None:
    """Write report/: figures (b) (c) (d), metrics.csv and DATASET_CARD.md."""
    from tv100.storage.lock import hold_root
    from tv100.tasks.buildconfig import report_config
    from tv100.tasks.prerequisites import require_any_table
    from tv100.tasks.report.report import write_report

    root = data_root(data)
    try:
        config = report_config(many=many, few=few, metric=metric, split=split)
    except ValueError as err:
        fail(str(err))
    require_any_table(root)  # nothing built: one line, and no report/ folder made
    with hold_root(root, what="report"):  # it writes report/ under the root
        written = write_report(root, config)
    typer.echo("\n".join(format_report(written)))


@app.command()
def diff(
    snapshot_a: Annotated[
        str | None, typer.Argument(metavar="SNAPSHOT_A", help="Default: the one before B.")
    ] = None,
    snapshot_b: Annotated[
        str | None, typer.Argument(metavar="SNAPSHOT_B", help="Default: the latest snapshot.")
    ] = None,
    data: DataOpt = None,
    threshold: Annotated[
        float, typer.Option(min=0, max=1, help="Report top-1 changes larger than this.")
    ] = DEFAULT_DIFF_THRESHOLD,
    format: Annotated[DiffFormat, typer.Option("--format", help="Output format.")] = (
        DiffFormat.table
    ),
) -> None:
    """Compare two build snapshots: series added, removed, zero-shot moved, kept changed.

    Ids may be abbreviated to a unique prefix; list them with
    ``tv100 sql "select snapshot_id, created_at, n_series, n_kept from snapshots"``.
    """
    from tv100.tasks.prerequisites import require_any_table
    from tv100.tasks.snapshots.diff import diff_snapshots, format_diff
    from tv100.tasks.snapshots.snapshots import SnapshotError

    root = data_root(data)
    require_any_table(root)  # nothing built: one line saying so
    try:
        result = diff_snapshots(root, snapshot_a, snapshot_b, threshold)
    except SnapshotError as err:
        fail(f"{err} (data root {root.url!r})")
    if format is DiffFormat.json:
        typer.echo(to_json(result))
    else:
        sys.stdout.write(format_diff(result))


@app.command()
def rerank(
    model: ModelOpt = None,
    data: DataOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Re-rank this snapshot's kept classes (default: current).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Top-1 above this: no longer unseen (default: twice "
                     "chance, at least 0.1)."),
    ] = None,
    batch_size: BatchOpt = EMBED.batch_size,
    device: DeviceOpt = EMBED.device,
    no_wait: NoWaitOpt = False,
) -> None:
    """Classify the kept classes again with a newer CLIP; list those no longer unseen.

    Without --model, the model(s) the data root was last ranked with (e.g. for the classes
    of an older snapshot, --since).
    """
    from tv100.flows.refresh import rerank_flow
    from tv100.tasks.snapshots.rerank import format_rerank

    models = model_specs(model)
    url = _stage_url(data, "rerank", since)
    try:
        result = rerank_flow(
            wait=not no_wait,
            data=url, models=models, since=since, threshold=threshold,
            batch_size=batch_size, device=device,
        )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err).splitlines()[0])
    sys.stdout.write(format_rerank(result))
