"""The `tv100` command line: one subcommand per stage, each running the matching flow."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="tv100",
    help="Build, refresh and benchmark image datasets of classes a pre-trained CLIP has not "
    "seen (TV100, arXiv 2404.12407).",
    no_args_is_help=True,
    add_completion=False,
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
    from storage.root import DataRootError, resolve_root

    root = resolve_root(data)
    try:
        root.ensure()
    except DataRootError as err:
        fail(str(err))
    return root.url


@app.command()
def demo(
    data: DataOpt = None,
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series in the sandbox.")] = 48,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Sandbox port.")] = 47100,
    scale: Annotated[float, typer.Option(min=0.01, max=10, help="Images per series ×.")] = 1.0,
) -> None:
    """Serve the sandbox web, build a dataset from it end to end, print a summary."""
    from flows.demo import demo_flow
    from storage.catalog import query
    from storage.root import resolve_root

    url = _data(data)
    result = demo_flow(data=url, seed=seed, n_series=n_series, port=port, scale=scale)
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
        "Try:",
        f'  tv100 sql --data {url} "select kind, count(*) from series group by 1"',
        f'  tv100 sql --data {url} "select status, count(*) from images group by 1"',
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
) -> None:
    """Run the whole pipeline (every stage that exists) on real or sandbox sources."""
    from flows.build import build_flow

    result = build_flow(
        location=location,
        source=source.value,
        since=since,
        min_votes=min_votes,
        data=_data(data),
        allow_hosts=allow_host or [],
        refresh=refresh,
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
    from flows.discover import discover_flow

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
) -> None:
    """Run the collect stage alone: search each series' images and download them."""
    from flows.collect import collect_flow
    from tasks.search import ENGINES

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
    result = collect_flow(
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
) -> None:
    """Run the clean stage alone: junk flags, exact and near-duplicate removal."""
    from flows.clean import clean_flow

    if exclusions is not None and not exclusions.is_file():
        fail(f"--exclusions {str(exclusions)!r} is not a readable file")
    result = clean_flow(
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
    from tasks.neardup import dedupe_folder

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

    from storage.catalog import query
    from storage.root import DataRootError, resolve_root

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
    from tasks import imdb

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
        from tasks.search import parse_page

        records = [hit.to_dict() for hit in parse_page(kind.value, content)]
    for r in records:
        typer.echo(json.dumps(r, ensure_ascii=False, default=str, sort_keys=True))


@sandbox_app.command("serve")
def sandbox_serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 0,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series.")] = 48,
    scale: Annotated[float, typer.Option(min=0.01, max=10, help="Images per series ×.")] = 1.0,
) -> None:
    """Serve the sandbox web (IMDb, image search engines, image host) until Ctrl-C."""
    from sandbox.web import serve_forever

    serve_forever(seed=seed, port=port, host=host, n_series=n_series, scale=scale)


@sandbox_app.command("datasets")
def sandbox_datasets(
    directory: Annotated[Path, typer.Argument(help="Folder to write the .tsv.gz files to.")],
    seed: Annotated[int, typer.Option(help="Sandbox seed.")] = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series.")] = 48,
) -> None:
    """Write the sandbox's IMDb dataset files to a folder (for `discover --location DIR`)."""
    from sandbox.imdb import write_datasets
    from sandbox.world import build_world

    directory.mkdir(parents=True, exist_ok=True)
    write_datasets(build_world(seed=seed, n_series=n_series), str(directory))
    typer.echo(str(directory))


def main() -> None:
    # Offline by default: no telemetry from the ephemeral Prefect server.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    app()


if __name__ == "__main__":
    main()
