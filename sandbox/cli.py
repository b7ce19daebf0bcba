"""The sandbox's `tv100` commands: ``tv100 demo`` and ``tv100 sandbox serve|pretrain|datasets``.

The product's command line loads them through the ``tv100.cli`` entry point group
(`register`), so it never imports the sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tv100.flows.cli.app import RunnerOpt, data_url, fail, runner_name, show_help_if_bare
from tv100.flows.cli.render import format_rank, format_runs

if TYPE_CHECKING:
    from tv100.sandbox.demo import DemoResult

SeedOpt = Annotated[int, typer.Option(help="Sandbox seed.")]
SeriesOpt = Annotated[int, typer.Option(min=4, help="Candidate series.")]
ScaleOpt = Annotated[float, typer.Option(min=0.01, max=10, help="Images per series ×.")]
DemoDataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Data root of the demo; default $TV100_DATA/demo, else ./data/demo (apart from "
        "real builds' root).",
    ),
]

sandbox_app = typer.Typer(
    help="The offline stand-in for the web.",
    invoke_without_command=True,
    callback=show_help_if_bare,
)


def demo(
    data: DemoDataOpt = None,
    seed: SeedOpt = 0,
    n_series: Annotated[int, typer.Option(min=4, help="Candidate series in the sandbox.")] = 48,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Sandbox port.")] = 47100,
    scale: ScaleOpt = 1.0,
    rank: Annotated[
        bool, typer.Option(help="Pre-train the sandbox CLIP and rank (False: stop after clean).")
    ] = True,
    train: Annotated[bool, typer.Option(help="Run the train stage too.")] = True,
    runner: RunnerOpt = "threads",
) -> None:
    """Serve the sandbox web, build a dataset from it end to end, print a summary."""
    from tv100.sandbox.demo import demo_data, demo_flow

    url = data_url(data or demo_data())
    runner = runner_name(runner)
    result = demo_flow(
        data=url, seed=seed, n_series=n_series, port=port, scale=scale, rank=rank,
        train=train, runner=runner,
    )
    typer.echo("\n".join(format_demo(url, result)))


def format_demo(url: str, result: DemoResult) -> list[str]:
    """The demo's summary: what the sandbox planted, what the build found, what to try next."""
    from tv100.sandbox.noise import format_noise, ground_truth, noise_figures
    from tv100.storage.catalog import query
    from tv100.storage.root import resolve_root

    root = resolve_root(url)
    build = result.build
    kinds = query(root, "select kind, count(*) as n from series group by 1 order by 1")
    statuses = query(root, "select status, count(*) as n from images group by 1 order by 2 desc")
    truth = ground_truth(root)
    missing = truth["planted"] - truth["collected"]
    removed = {**build.clean.junk_by_reason, **build.clean.duplicates_by_kind}
    noise = noise_figures(root)
    return [
        "",
        "tv100 demo finished",
        f"  sandbox web   {result.base_url} (stopped)",
        f"  data root     {url}",
        f"  tables        {root.path('tables')}",
        "  series        " + ", ".join(f"{r['n']} {r['kind']}" for r in kinds.to_pylist()),
        f"  search hits   {build.collect.hits}",
        "  images        " + ", ".join(f"{r['n']} {r['status']}" for r in statuses.to_pylist()),
        f"  ground truth  {truth['agree']}/{truth['collected']} collected image statuses as "
        f"planted; {missing} of the {truth['planted']} planted images never collected"
        + (" (past the per-series cap, or never listed by a search)" if missing else ""),
        f"  cleaned       {build.clean.cleaned} images kept; removed: "
        + ", ".join(f"{n} {k}" for k, n in sorted(removed.items())),
        *(format_noise(noise) if noise else []),
        *(
            [f"  sandbox CLIP  {result.model.spec} (knows the other half of the series)",
             *format_rank(build.rank)]
            if result.model and build.rank else []
        ),
        *(format_runs(build.train) if build.train else []),
        f"  report        {root.path('report')}",
        "Try:",
        f'  tv100 sql --data {url} "select kind, count(*) from series group by 1"',
        f'  tv100 sql --data {url} "select status, count(*) from images group by 1"',
        f'  tv100 sql --data {url} "select c.title, c.accuracy, s.known from classes c '
        'join sandbox_series s using (series_id) where c.kept order by c.accuracy"',
        f'  tv100 sql --data {url} "select recipe, metric, value from metrics '
        "where split = 'test' order by all\"",
    ]


@sandbox_app.command("pretrain")
def sandbox_pretrain(
    data: DemoDataOpt = None, seed: SeedOpt = 0, n_series: SeriesOpt = 48
) -> None:
    """Train the sandbox CLIP on the known half of the series (cached in the data root)."""
    from tv100.sandbox.demo import demo_data
    from tv100.sandbox.pretrain import PretrainConfig, pretrain
    from tv100.storage.lock import hold_root
    from tv100.storage.root import resolve_root

    root = resolve_root(data_url(data or demo_data()))
    if not root.is_local:
        fail(f"the sandbox CLIP is saved to a local folder; {root.url!r} is not local")
    with hold_root(root, what="sandbox pretrain"):  # it writes models/ under the root
        result = pretrain(root.path(), PretrainConfig(world_seed=seed, n_series=n_series))
    state = "trained" if result.trained else "cached"
    typer.echo(f"sandbox CLIP {state} in {result.seconds:.0f} s; use --model {result.spec}")


@sandbox_app.command("serve")
def sandbox_serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 0,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: SeedOpt = 0,
    n_series: SeriesOpt = 48,
    scale: ScaleOpt = 1.0,
) -> None:
    """Serve the sandbox web (IMDb, image search engines, image host) until Ctrl-C."""
    from tv100.sandbox.web import serve_forever

    serve_forever(seed=seed, port=port, host=host, n_series=n_series, scale=scale)


@sandbox_app.command("datasets")
def sandbox_datasets(
    directory: Annotated[Path, typer.Argument(help="Folder to write the .tsv.gz files to.")],
    seed: SeedOpt = 0,
    n_series: SeriesOpt = 48,
) -> None:
    """Write the sandbox's IMDb dataset files to a folder (for `discover --location DIR`)."""
    from tv100.sandbox.imdb_datasets import write_datasets
    from tv100.sandbox.world import build_world

    directory.mkdir(parents=True, exist_ok=True)
    write_datasets(build_world(seed=seed, n_series=n_series), str(directory))
    typer.echo(str(directory))


def register(app: typer.Typer) -> None:
    """Add ``demo`` and the ``sandbox`` group to the `tv100` app (the entry point)."""
    app.command("demo")(demo)
    app.add_typer(sandbox_app, name="sandbox")
