"""The `tv100` command line: one subcommand per stage, each running the matching flow."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from typer.core import TyperGroup

INTERRUPTED = "interrupted; finished rows are kept, rerun to resume"

# click's ClickException as typer raises it (typer >= 0.29 vendors its own click):
# BadParameter -> UsageError -> ClickException.
_ClickException = cast("type[Exception]", typer.BadParameter.__mro__[2])


def _exit_with(message: str, code: int) -> None:
    typer.echo(f"tv100: {message}", err=True)
    sys.exit(code)


def _expected(reason: str) -> str:
    """typer's (pydantic's) reason for refusing a value, as what was expected."""
    reason = " ".join(reason.split()).rstrip(".").removeprefix("Value error, ")
    for prefix, expected in (
        ("Input should be a valid integer", "expected a whole number"),
        ("Input should be a valid number", "expected a number"),
        ("Input should be greater than or equal to ", "expected a value >= "),
        ("Input should be less than or equal to ", "expected a value <= "),
        ("Input should be greater than ", "expected a value > "),
        ("Input should be less than ", "expected a value < "),
        ("Input should be ", "expected "),
    ):
        if reason.startswith(prefix):
            rest = reason[len(prefix):]
            return expected + (rest if expected.endswith(" ") else "")
    return reason


def usage_error_line(err: Any) -> str:
    """One line for a click/typer usage error; a bad value names option, value, expectation."""
    message = " ".join(str(err.format_message()).split())
    param = getattr(err, "param", None)
    cause = err.__cause__
    if param is not None and cause is not None and hasattr(cause, "errors"):
        try:  # pydantic's ValidationError keeps the value given
            value = cause.errors()[0]["input"]
        except (IndexError, KeyError, TypeError):
            return message
        name = "/".join(getattr(param, "opts", None) or [str(param.name)])
        return f"invalid value {str(value)!r} for {name}: {_expected(str(err.message))}"
    return message


class _Tv100Group(TyperGroup):
    """The `tv100` command group: usage errors as one line on stderr, Ctrl-C as exit 130.

    Any error in the command line (a bad option value, a missing or unknown option) is one
    line ``tv100: error: ...`` naming the option, the value and what was expected, exit code
    2; so is a data root that cannot be used (`DataRootError`, wherever a command meets
    it). Commands need nothing special for it: plain ``typer.Option(min=..., max=...)``.
    """

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _ClickException as exc:
            err: Any = exc
            if type(err).__name__ == "NoArgsIsHelpError":  # the help (rich printed it already)
                if str(err.format_message()).strip():
                    err.show()
                sys.exit(err.exit_code)
            _exit_with(f"error: {usage_error_line(err)}", err.exit_code)
        except typer.Abort as err:  # older click: Ctrl-C
            if isinstance(err.__context__, KeyboardInterrupt):
                _exit_with(INTERRUPTED, 130)
            _exit_with("aborted", 1)
        except ValueError as err:
            from tv100.storage.root import DataRootError

            if not isinstance(err, DataRootError):
                raise
            _exit_with(f"error: {' '.join(str(err).split())}", 2)
        if code == 130:  # typer turns Ctrl-C into exit code 130
            _exit_with(INTERRUPTED, 130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="tv100",
    help="Build, refresh and benchmark image datasets of classes a pre-trained CLIP has not "
    "seen (TV100, arXiv 2404.12407).",
    no_args_is_help=True,
    add_completion=False,
    cls=_Tv100Group,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="The offline stand-in for the web.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="Data root (path or fsspec URL); default $TV100_DATA or ./data."),
]


class SourceName(StrEnum):
    imdb_datasets = "imdb-datasets"
    imdb_web = "imdb-web"


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class InspectKind(StrEnum):
    imdb_list = "imdb-list"
    imdb_title = "imdb-title"
    bing = "bing"
    google = "google"
    duckduckgo = "duckduckgo"


def fail(message: str) -> None:
    """One-line error on stderr, exit code 2 (bad input; nothing written)."""
    typer.echo(f"tv100: error: {message}", err=True)
    raise typer.Exit(code=2)


def _data(data: str | None) -> str:
    from tv100.storage.root import DataRootError, resolve_root

    root = resolve_root(data)
    try:
        root.ensure()
    except DataRootError as err:
        fail(str(err))
    return root.url


RunnerOpt = Annotated[
    str,
    typer.Option(
        "--runner",
        help="Where tasks run: threads, dask (a local Dask cluster, a worker process per "
        "core) or tcp://HOST:PORT (an existing Dask scheduler).",
    ),
]


def _runner(runner: str) -> str:
    from tv100.flows.runners import check_runner

    try:
        return check_runner(runner)
    except ValueError as err:
        fail(f"--runner: {err}")
        raise  # unreachable: fail() exits


@app.command()
def demo(
    data: DataOpt = None,
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series in the sandbox.")] = 48,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Sandbox port.")] = 47100,
    scale: Annotated[float, typer.Option(min=0.01, max=10, help="Images per series ×.")] = 1.0,
    rank: Annotated[
        bool, typer.Option(help="Pre-train the sandbox CLIP and rank (False: stop after clean).")
    ] = True,
    train: Annotated[bool, typer.Option(help="Run the train stage too.")] = True,
    runner: RunnerOpt = "threads",
) -> None:
    """Serve the sandbox web, build a dataset from it end to end, print a summary."""
    from tv100.flows.demo import demo_flow
    from tv100.storage.catalog import query
    from tv100.storage.root import resolve_root

    url = _data(data)
    runner = _runner(runner)
    result = demo_flow(
        data=url, seed=seed, n_series=n_series, port=port, scale=scale, rank=rank,
        train=train, runner=runner,
    )
    root = resolve_root(url)
    kinds = query(root, "select kind, count(*) as n from series group by 1 order by 1")
    statuses = query(root, "select status, count(*) as n from images group by 1 order by 2 desc")
    truth = query(
        root,
        "select count(*) filter (where i.status = m.expected_status) as agree, count(*) as n "
        "from sandbox_images m join images i on i.url = m.url and i.series_id = m.series_id",
    ).to_pylist()[0]
    lines = [
        "",
        "tv100 demo finished",
        f"  sandbox web   {result['base_url']} (stopped)",
        f"  data root     {url}",
        f"  tables        {root.path('tables')}",
        "  series        "
        + ", ".join(f"{r['n']} {r['kind']}" for r in kinds.to_pylist()),
        f"  search hits   {result['build']['collect']['hits']}",
        "  images        " + ", ".join(f"{r['n']} {r['status']}" for r in statuses.to_pylist()),
        f"  ground truth  {truth['agree']}/{truth['n']} image statuses as planted",
        f"  cleaned       {result['build']['clean']['cleaned']} images kept; removed: "
        + ", ".join(
            f"{n} {k}"
            for k, n in sorted(
                {
                    **result["build"]["clean"]["junk_by_reason"],
                    **result["build"]["clean"]["duplicates_by_kind"],
                }.items()
            )
        ),
        *(
            [f"  sandbox CLIP  {result['model']['spec']} (knows the other half of the series)",
             *format_rank(result["build"]["rank"])]
            if result["model"] else []
        ),
        *(format_runs(result["build"]["train"]) if "train" in result["build"] else []),
        f"  report        {root.path('report')}",
        "Try:",
        f'  tv100 sql --data {url} "select kind, count(*) from series group by 1"',
        f'  tv100 sql --data {url} "select status, count(*) from images group by 1"',
        f'  tv100 sql --data {url} "select c.title, c.accuracy, s.known from classes c '
        'join sandbox_series s using (series_id) where c.kept order by c.accuracy"',
        f'  tv100 sql --data {url} "select recipe, metric, value from metrics '
        "where split = 'test' order by all\"",
    ]
    typer.echo("\n".join(lines))


@app.command()
def build(
    location: Annotated[str, typer.Option(help="IMDb datasets folder/URL or IMDb base URL.")],
    source: Annotated[SourceName, typer.Option(help="Where to list series from.")] = (
        SourceName.imdb_datasets
    ),
    since: Annotated[int, typer.Option(min=1900, max=2100, help="Keep start_year > since.")] = 2021,
    min_votes: Annotated[int | None, typer.Option(min=0, help="Minimum IMDb votes.")] = None,
    data: DataOpt = None,
    allow_host: Annotated[
        list[str] | None, typer.Option(help="Host[:port] allowed despite a private address.")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Fetch sources again, ignoring today's cache.")] = (
        False
    ),
    model: ModelOpt = None,
    k: Annotated[int, typer.Option(min=1, help="Series to keep (the K hardest).")] = 100,
    min_images: Annotated[
        int, typer.Option(min=0, help="Fewest cleaned images a kept series needs.")
    ] = 100,
    train: Annotated[bool, typer.Option(help="Run the train stage.")] = True,
    recipe: Annotated[
        list[str] | None,
        typer.Option(help="Train recipes: zeroshot, linear, finetune, wiseft; repeatable.")
    ] = None,
    runner: RunnerOpt = "threads",
) -> None:
    """Run the whole pipeline: discover, collect, clean, rank, train, report."""
    from tv100.flows.build import build_flow
    from tv100.tasks.train.finetune import RECIPES

    for r in recipe or []:
        if r not in RECIPES:
            fail(f"--recipe {r!r}; expected one of {', '.join(RECIPES)}")
    runner = _runner(runner)
    models = _models(model)  # a bad --model is refused before the data root is touched
    result = build_flow(
        location=location,
        source=source.value,
        since=since,
        min_votes=min_votes,
        data=_data(data),
        allow_hosts=allow_host or [],
        refresh=refresh,
        models=models,
        k=k,
        min_images=min_images,
        train=train,
        recipes=recipe,
        runner=runner,
    )
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@app.command()
def discover(
    location: Annotated[str, typer.Option(help="IMDb datasets folder/URL or IMDb base URL.")],
    source: Annotated[SourceName, typer.Option(help="Where to list series from.")] = (
        SourceName.imdb_datasets
    ),
    since: Annotated[int, typer.Option(min=1900, max=2100, help="Keep start_year > since.")] = 2021,
    min_votes: Annotated[int | None, typer.Option(min=0, help="Minimum IMDb votes.")] = None,
    data: DataOpt = None,
    max_pages: Annotated[int, typer.Option(min=1, help="Cap on list pages (imdb-web).")] = 200,
    locale: Annotated[str | None, typer.Option(help="IMDb locale prefix, e.g. de.")] = None,
    allow_host: Annotated[
        list[str] | None, typer.Option(help="Host[:port] allowed despite a private address.")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Fetch sources again, ignoring today's cache.")] = (
        False
    ),
) -> None:
    """Run the discover stage alone: IMDb → the `series` table."""
    from tv100.flows.discover import discover_flow

    result = discover_flow(
        location=location,
        source=source.value,
        since=since,
        min_votes=min_votes,
        data=_data(data),
        max_pages=max_pages,
        locale=locale,
        allow_hosts=allow_host or [],
        refresh=refresh,
    )
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@app.command()
def collect(
    data: DataOpt = None,
    engine: Annotated[
        list[str] | None, typer.Option(help="bing, google or duckduckgo (repeat); all by default.")
    ] = None,
    engine_url: Annotated[
        list[str] | None, typer.Option(help="NAME=ORIGIN to point an engine elsewhere.")
    ] = None,
    query_template: Annotated[str, typer.Option(help="Query per series.")] = "{title} TV Series",
    per_series_cap: Annotated[int, typer.Option(min=1, help="Hits per series and engine.")] = 200,
    max_side: Annotated[int, typer.Option(min=16, help="Stored images' longer side.")] = 512,
    image_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per image.")] = 15.0,
    allow_host: Annotated[
        list[str] | None, typer.Option(help="Host[:port] allowed despite a private address.")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Search again, ignoring this week's cache.")] = (
        False
    ),
    runner: RunnerOpt = "threads",
) -> None:
    """Run the collect stage alone: search each series' images and download them."""
    from tv100.flows.collect import collect_flow
    from tv100.flows.runners import run_flow
    from tv100.tasks.collect.search import ENGINES

    runner = _runner(runner)

    urls: dict[str, str] = {}
    for item in engine_url or []:
        name, sep, origin = item.partition("=")
        if not sep or name not in ENGINES or not origin.startswith(("http://", "https://")):
            fail(f"--engine-url {item!r} is invalid; expected NAME=http(s)://ORIGIN with NAME in "
                 f"{', '.join(sorted(ENGINES))}")
        urls[name] = origin
    for name in engine or []:
        if name not in ENGINES:
            fail(f"--engine {name!r} is unknown; expected one of {', '.join(sorted(ENGINES))}")
    result = run_flow(
        collect_flow,
        runner,
        data=_data(data),
        engines=engine or None,
        engine_urls=urls or None,
        query_template=query_template,
        per_series_cap=per_series_cap,
        max_side=max_side,
        image_timeout_s=image_timeout,
        allow_hosts=allow_host or [],
        refresh=refresh,
    )
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@app.command()
def clean(
    data: DataOpt = None,
    phash_threshold: Annotated[
        int, typer.Option(min=0, max=32, help="pHash Hamming distance for near duplicates.")
    ] = 10,
    keep_cross_series: Annotated[
        bool, typer.Option(help="Keep one copy of images found under several series.")
    ] = False,
    min_side: Annotated[int, typer.Option(min=1, help="Shorter side below this is junk.")] = 100,
    exclusions: Annotated[
        Path | None, typer.Option(help="CSV/Parquet of image_id_or_url,reason to exclude.")
    ] = None,
    runner: RunnerOpt = "threads",
) -> None:
    """Run the clean stage alone: junk flags, exact and near-duplicate removal."""
    from tv100.flows.clean import clean_flow
    from tv100.flows.runners import run_flow

    runner = _runner(runner)
    if exclusions is not None and not exclusions.is_file():
        fail(f"--exclusions {str(exclusions)!r} is not a readable file")
    result = run_flow(
        clean_flow,
        runner,
        data=_data(data),
        phash_threshold=phash_threshold,
        drop_cross_series=not keep_cross_series,
        min_side=min_side,
        exclusions=str(exclusions) if exclusions else None,
    )
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@app.command()
def dedupe(
    directory: Annotated[Path, typer.Argument(help="A folder of images (searched recursively).")],
    threshold: Annotated[int, typer.Option(min=0, max=32, help="pHash Hamming threshold.")] = 10,
    out: Annotated[
        Path | None, typer.Option(help="Write hashes and groups to this .parquet file.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Hashing processes.")] = 2,
) -> None:
    """Find duplicate images in any folder: one JSON object per group (or unreadable file)."""
    from tv100.tasks.clean.neardup import dedupe_folder

    if not directory.is_dir():
        fail(f"{str(directory)!r} is not a folder; expected a folder of images")
    try:
        for record in dedupe_folder(directory, threshold=threshold, out=out, workers=workers):
            typer.echo(json.dumps(record, ensure_ascii=False, default=str))
    except ValueError as err:
        fail(str(err))


def format_rows(columns: list[str], rows: list[dict[str, Any]], fmt: OutFormat) -> str:
    """Render query results as an aligned text table, CSV or JSON lines."""
    if fmt is OutFormat.json:
        return "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in rows)
    if fmt is OutFormat.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in columns])
        return buf.getvalue()
    cells = [[("NULL" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


@app.command()
def sql(
    query_text: Annotated[str, typer.Argument(metavar="QUERY", help="SQL over the tables.")],
    data: DataOpt = None,
    format: Annotated[OutFormat, typer.Option("--format", help="Output format.")] = (
        OutFormat.table
    ),
) -> None:
    """Query every table with DuckDB (one view per table)."""
    import duckdb

    from tv100.storage.catalog import query
    from tv100.storage.root import DataRootError, resolve_root

    root = resolve_root(data)
    try:
        table = query(root, query_text)
    except duckdb.Error as err:
        fail(f"query failed: {str(err).splitlines()[0]}")
    except DataRootError as err:
        fail(str(err))
    sys.stdout.write(format_rows(table.column_names, table.to_pylist(), format))


@app.command()
def inspect(
    kind: Annotated[InspectKind, typer.Argument(help="Which parser to run.")],
    file: Annotated[Path, typer.Argument(help="A saved page.")],
) -> None:
    """Parse a saved page and print one JSON object per record (series or image hit).

    For duckduckgo, FILE is the JSON answer of its ``i.js`` endpoint.
    """
    from tv100.tasks.discover import imdb

    try:
        content = file.read_bytes()
    except OSError as err:
        fail(f"cannot read {str(file)!r}: {err.strerror or err}")
    records: list[dict[str, Any]]
    if kind is InspectKind.imdb_list:
        records = imdb.parse_list_page(content)
    elif kind is InspectKind.imdb_title:
        rec = imdb.parse_title_page(content)
        records = [rec] if rec else []
    else:
        from tv100.tasks.collect.search import parse_page

        records = [hit.to_dict() for hit in parse_page(kind.value, content)]
    for r in records:
        typer.echo(json.dumps(r, ensure_ascii=False, default=str, sort_keys=True))


ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="CLIP as ARCH@WEIGHTS (pretrained tag or checkpoint file) or local-dir:FOLDER; "
        "repeat for several.",
    ),
]


def _models(models: list[str] | None) -> list[str] | None:
    """Parse each --model now, so a bad one is a one-line error before anything runs."""
    from tv100.tasks.rank.clip import ModelSpec

    for m in models or []:
        try:
            ModelSpec.parse(m)
        except ValueError as err:
            fail(f"--model {m!r}: {err}")
    return models


def format_rank(summary: dict[str, Any]) -> list[str]:
    """The rank stage's summary: chance, then the hardest and easiest series."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def row(r: dict[str, Any]) -> str:
        mark = "kept" if r["kept"] else r["reason"]
        return f"    {pct(r['accuracy']):>6}  {r['title']} ({r['series_id']}, {mark})"

    lines = [
        f"  zero-shot     {summary['kept']} of {summary['candidates']} series kept; chance "
        f"{pct(summary['chance'])}; mean top-1 of kept {pct(summary['kept_mean_accuracy'])}, "
        f"of dropped {pct(summary['dropped_mean_accuracy'])}",
        "  hardest (top-1):",
        *[row(r) for r in summary["hardest"]],
        "  easiest (top-1):",
        *[row(r) for r in summary["easiest"]],
    ]
    return lines


def format_runs(train: dict[str, Any]) -> list[str]:
    """Zero-shot vs fine-tuned on the test split: figure (d) in miniature."""

    def pct(v: float | None) -> str:
        return "   n/a" if v is None else f"{100 * v:5.1f}%"

    sizes = ", ".join(f"{n} {s}" for s, n in sorted(train["splits"].items()))
    lines = [
        f"  splits        {train['classes']} classes; {sizes}; "
        f"{train['leakage']} held-out images near a train image",
        f"  test split    chance {pct(train['chance'])}",
        "    recipe      top-1   top-5  balanced   many  medium    few",
    ]
    for r in train["runs"]:
        lines.append(
            f"    {r['recipe']:<10} {pct(r['test_top1'])} {pct(r['test_top5'])}   "
            f"{pct(r['test_balanced_accuracy'])} {pct(r['test_many'])} "
            f"{pct(r['test_medium'])} {pct(r['test_few'])}"
        )
    return lines


@app.command()
def rank(
    data: DataOpt = None,
    model: ModelOpt = None,
    k: Annotated[int, typer.Option(min=1, help="Series to keep (the K hardest).")] = 100,
    min_images: Annotated[
        int, typer.Option(min=0, help="Fewest cleaned images a kept series needs.")
    ] = 100,
    aggregate: Annotated[
        str, typer.Option(help="Over several models: max (unseen by all) or mean.")
    ] = "max",
    template: Annotated[
        list[str] | None, typer.Option(help="Prompt template with one {}; repeatable.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Images per batch.")] = 64,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda[:N].")] = (
        "auto"
    ),
) -> None:
    """Rank candidate series by CLIP zero-shot accuracy; keep the K hardest (`classes`)."""
    from tv100.flows.rank import rank_flow

    if aggregate not in ("max", "mean"):
        fail(f"--aggregate {aggregate!r}; expected max or mean")
    url = _data(data)
    try:
        result = rank_flow(
            data=url, models=_models(model), k=k, min_images=min_images, aggregate=aggregate,
            templates=template, batch_size=batch_size, device=device,
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
        str | None, typer.Option(help="CLIP as ARCH@WEIGHTS or local-dir:FOLDER.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=10000, help="Fine-tuning epochs.")] = 10,
    lr: Annotated[float, typer.Option(min=0, max=1, help="Peak AdamW learning rate.")] = 1e-5,
    batch_size: Annotated[int, typer.Option(min=1, max=65536, help="Images per step.")] = 64,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Linear warm-up steps.")] = 500,
    weight_decay: Annotated[float, typer.Option(min=0, max=10, help="AdamW decay.")] = 0.1,
    sampling: Annotated[
        str, typer.Option(help="uniform, balanced or sqrt (long-tail sampling).")
    ] = "uniform",
    logit_adjust_tau: Annotated[
        float, typer.Option(min=0, max=10, help="Logit adjustment τ (0: off).")
    ] = 0.0,
    test_ratio: Annotated[float, typer.Option(min=0, max=0.99, help="Test share.")] = 0.2,
    val_ratio: Annotated[float, typer.Option(min=0, max=0.99, help="Validation share.")] = 0.1,
    split_seed: Annotated[int, typer.Option(min=0, help="Seed of the split.")] = 0,
    seed: Annotated[int, typer.Option(min=0, help="Seed of training.")] = 0,
    export: Annotated[bool, typer.Option(help="Write export/{train,val,test}/ folders.")] = True,
    clip_threshold: Annotated[
        float | None,
        typer.Option(min=0.01, max=0.9999,
                     help="Also count held-out images this CLIP-similar to a train image "
                     "as leaking (rank stage's embeddings; e.g. 0.95 for real CLIPs)."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N]; default auto.")] = None,
) -> None:
    """Split the kept series and score recipes on them; rows appended to `metrics`."""
    from tv100.flows.train import train_flow
    from tv100.tasks.train.finetune import RECIPES, SAMPLINGS

    for r in recipe or []:
        if r not in RECIPES:
            fail(f"--recipe {r!r}; expected one of {', '.join(RECIPES)}")
    if sampling not in SAMPLINGS:
        fail(f"--sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}")
    url = _data(data)
    _models([model] if model else None)
    try:
        result = train_flow(
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
    many: Annotated[int, typer.Option(min=0, help="Many-shot: more train images.")] = 100,
    few: Annotated[int, typer.Option(min=0, help="Few-shot: fewer train images.")] = 20,
    metric: Annotated[str, typer.Option(help="Metric of figure (d).")] = "top1",
    split: Annotated[str, typer.Option(help="Split of figure (d).")] = "test",
) -> None:
    """Write report/: figures (b) (c) (d), metrics.csv and DATASET_CARD.md."""
    from tv100.tasks.report.report import ReportConfig, write_report
    from tv100.tasks.train.metrics import Tiers

    url = _data(data)
    try:
        config = ReportConfig(tiers=Tiers(many=many, few=few), metric=metric, split=split)
    except ValueError as err:
        fail(str(err))
    result = write_report(url, config)
    lines = [f"report written to {result['report_dir']}"]
    lines += [f"  {name:<22} {path}" for name, path in sorted(result["files"].items())]
    lines += [f"  skipped {name}: {why}" for name, why in sorted(result["skipped"].items())]
    typer.echo("\n".join(lines))


@sandbox_app.command("pretrain")
def sandbox_pretrain(
    data: DataOpt = None,
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series.")] = 48,
) -> None:
    """Train the sandbox CLIP on the known half of the series (cached in the data root)."""
    from tv100.sandbox.pretrain import PretrainConfig, pretrain
    from tv100.storage.root import resolve_root

    root = resolve_root(_data(data))
    if not root.is_local:
        fail(f"the sandbox CLIP is saved to a local folder; {root.url!r} is not local")
    result = pretrain(root.path(), PretrainConfig(world_seed=seed, n_series=n_series))
    state = "trained" if result.trained else "cached"
    typer.echo(f"sandbox CLIP {state} in {result.seconds:.0f} s; use --model {result.spec}")


class DiffFormat(StrEnum):
    table = "table"
    json = "json"


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
    ] = 0.05,
    format: Annotated[DiffFormat, typer.Option("--format", help="Output format.")] = (
        DiffFormat.table
    ),
) -> None:
    """Compare two build snapshots: series added, removed, zero-shot moved, kept changed.

    Ids may be abbreviated to a unique prefix; list them with
    ``tv100 sql "select snapshot_id, created_at, n_series, n_kept from snapshots"``.
    """
    from tv100.tasks.snapshots.snapshots import SnapshotError, diff_snapshots, format_diff

    url = _data(data)
    try:
        result = diff_snapshots(url, snapshot_a, snapshot_b, threshold)
    except SnapshotError as err:
        fail(f"{err} (data root {url!r})")
    if format is DiffFormat.json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
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
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Images per batch.")] = 64,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda[:N].")] = (
        "auto"
    ),
) -> None:
    """Classify the kept classes again with a newer CLIP; list those no longer unseen."""
    from tv100.flows.refresh import rerank_flow
    from tv100.tasks.snapshots.snapshots import format_rerank

    if not model:
        fail("--model is required: the newer CLIP(s) to re-rank with, as ARCH@WEIGHTS")
    models = _models(model)
    url = _data(data)
    try:
        result = rerank_flow(
            data=url, models=models, since=since, threshold=threshold,
            batch_size=batch_size, device=device,
        )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err).splitlines()[0])
    sys.stdout.write(format_rerank(result))


@sandbox_app.command("serve")
def sandbox_serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 0,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series.")] = 48,
    scale: Annotated[float, typer.Option(min=0.01, max=10, help="Images per series ×.")] = 1.0,
) -> None:
    """Serve the sandbox web (IMDb, image search engines, image host) until Ctrl-C."""
    from tv100.sandbox.web import serve_forever

    serve_forever(seed=seed, port=port, host=host, n_series=n_series, scale=scale)


@sandbox_app.command("datasets")
def sandbox_datasets(
    directory: Annotated[Path, typer.Argument(help="Folder to write the .tsv.gz files to.")],
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series.")] = 48,
) -> None:
    """Write the sandbox's IMDb dataset files to a folder (for `discover --location DIR`)."""
    from tv100.sandbox.imdb import write_datasets
    from tv100.sandbox.world import build_world

    directory.mkdir(parents=True, exist_ok=True)
    write_datasets(build_world(seed=seed, n_series=n_series), str(directory))
    typer.echo(str(directory))


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (`kill PID`) ends a run as Ctrl-C does.

    While a flow runs, Prefect's own handler turns it into `TerminationSignal` (the flow and
    its tasks unwind: the downloader stops its worker processes), then signals again here.
    """
    raise KeyboardInterrupt


def main() -> None:
    # Offline by default: no telemetry from the ephemeral Prefect server.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        signal.signal(signal.SIGTERM, _terminated)
        app()
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) outside a command's own handling
        _exit_with(INTERRUPTED, 130)


if __name__ == "__main__":
    main()
