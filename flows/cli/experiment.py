"""`tv100 experiment`: experiments on a trained data root (data-efficiency curves, long-tail
methods), each checking its input, running one flow and printing a small table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tv100.flows.cli.app import DataOpt, app, data_root, fail, model_specs, show_help_if_bare
from tv100.flows.cli.commands import NoWaitOpt, check_recipes
from tv100.flows.cli.render import format_rows
from tv100.tasks.experiments.config import (
    ALL_SHOTS,
    CURVES_INPUTS,
    LONGTAIL_METHODS,
    LONGTAIL_RECIPES,
    MAX_SHOTS,
    LongtailConfig,
    curves_config,
    shots_label,
)
from tv100.tasks.train.config import RECIPES, SAMPLINGS, TRAIN

if TYPE_CHECKING:  # Prefect is imported only when a command runs (`prefect_environment`)
    from tv100.tasks.experiments.curves import CurvesResult
    from tv100.tasks.experiments.longtail import LongtailResult

experiment_app = typer.Typer(
    help="Experiments on a trained data root: data-efficiency curves, long-tail methods.",
    invoke_without_command=True,
    callback=show_help_if_bare,
)

ModelOpt = Annotated[
    str | None,
    typer.Option(help="CLIP as ARCH@WEIGHTS or local-dir:FOLDER; default: the (first) model "
                 "the data root was last ranked with."),
]
SeedsOpt = Annotated[int, typer.Option(min=1, max=100, help="Runs per point, seeds 0..N-1.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda[:N]; default auto.")]
#: The long-tail experiment's defaults.
LONGTAIL = LongtailConfig()


def parse_shots(values: Sequence[str] | None) -> list[int] | None:
    """Each --shots value as a number of images per class, ``all`` as `ALL_SHOTS`; a bad
    one is a one-line error."""
    if not values:
        return None
    out = []
    for v in values:
        text = v.strip().lower()
        if text == "all":
            out.append(ALL_SHOTS)
            continue
        try:
            n = int(text)
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_SHOTS:
            fail(f"--shots {v!r}; expected a number of images per class in 1..{MAX_SHOTS} "
                 "or all")
        out.append(n)
    if len(set(out)) != len(out):
        fail(f"--shots {' '.join(values)!r} repeats a value; expected distinct values")
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _spread(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    return _pct(r["mean"]) if r["std"] is None else f"{_pct(r['mean'])} ± {100 * r['std']:.1f}"


def format_curves(result: CurvesResult) -> list[str]:
    """The curves on the test split: mean ± std over seeds of top-1 and balanced accuracy."""
    by = {(r["recipe"], r["shots"], r["metric"]): r for r in result.summary}
    rows = []
    for recipe, shots in dict.fromkeys((r["recipe"], r["shots"]) for r in result.summary):
        top1 = by.get((recipe, shots, "top1"))
        balanced = by.get((recipe, shots, "balanced_accuracy"))
        first = top1 or balanced
        rows.append({
            "recipe": recipe, "shots": shots_label(shots),
            "per class": "n/a" if first is None else f"{first['mean_shots']:.1f}",
            "seeds": "n/a" if first is None else str(first["n_seeds"]),
            "top-1": _spread(top1), "balanced": _spread(balanced),
        })
    head = [f"  model         {result.model_key}; {result.classes} classes; "
            f"{len(result.points)} runs; test split"]
    table = format_rows(["recipe", "shots", "per class", "seeds", "top-1", "balanced"],
                        rows, "table")
    tail = [f"  figure        {result.figure}"] if result.figure else []
    return head + ["    " + line for line in table.rstrip("\n").splitlines()] + tail


@experiment_app.command()
def curves(
    data: DataOpt = None,
    model: ModelOpt = None,
    recipe: Annotated[
        list[str] | None,
        typer.Option(help="zeroshot, linear, finetune or wiseft; repeatable (default linear "
                     "and finetune)."),
    ] = None,
    shots: Annotated[
        list[str] | None,
        typer.Option(help="Training images per class of a point, or all; repeatable "
                     "(default 1 2 4 8 16 32 all)."),
    ] = None,
    seeds: SeedsOpt = 3,
    epochs: Annotated[
        int, typer.Option(min=1, max=10000, help="Fine-tuning epochs.")
    ] = TRAIN.epochs,
    lr: Annotated[float, typer.Option(min=0, max=1, help="Peak AdamW learning rate.")] = TRAIN.lr,
    batch_size: Annotated[
        int, typer.Option(min=1, max=65536, help="Images per step.")
    ] = TRAIN.batch_size,
    sampling: Annotated[
        str, typer.Option(help="uniform, balanced or sqrt (long-tail sampling).")
    ] = TRAIN.sampling,
    device: DeviceOpt = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Data-efficiency curves: each recipe on 1, 2, 4, ... training images per class, over
    seeds; rows in table `curves`, the figure in report/curves.png."""
    from tv100.flows.experiment import curves_flow
    from tv100.tasks.prerequisites import require_tables

    check_recipes(recipe, RECIPES)
    if sampling not in SAMPLINGS:
        fail(f"--sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}")
    counts = parse_shots(shots)
    model_specs([model] if model else None)
    seed_list = list(range(seeds))
    try:
        curves_config(recipes=recipe, shots=counts, seeds=seed_list, epochs=epochs, lr=lr,
                      batch_size=batch_size, sampling=sampling)
    except ValueError as err:
        fail(str(err))
    root = data_root(data)
    require_tables(root, "experiment curves", CURVES_INPUTS)  # one line, nothing created
    try:
        result = curves_flow(
            data=root.url, model=model, recipes=recipe, shots=counts, seeds=seed_list,
            epochs=epochs, lr=lr, batch_size=batch_size, sampling=sampling, device=device,
            wait=not no_wait,
        )
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo("\n".join(["tv100 experiment curves finished", *format_curves(result)]))


def format_longtail(result: LongtailResult, figure: str) -> list[str]:
    """The methods on the test split: mean ± std over seeds of each tier's accuracy."""
    by = {(r["method"], r["tier"]): r for r in result.rows()}
    tiers = list(dict.fromkeys(r["tier"] for r in result.rows()))
    rows = [{"method": m.method, **{t: _spread(by.get((m.method, t))) for t in tiers}}
            for m in result.methods]
    head = [f"  model         {result.model_key}; recipe {result.recipe}; "
            f"{len(result.seeds)} seed{'s' if len(result.seeds) != 1 else ''}; test split"]
    table = format_rows(["method", *tiers], rows, "table")
    return (head + ["    " + line for line in table.rstrip("\n").splitlines()]
            + [f"  figure        {figure}"])


@experiment_app.command()
def longtail(
    data: DataOpt = None,
    model: ModelOpt = None,
    recipe: Annotated[
        str, typer.Option(help=f"{' or '.join(LONGTAIL_RECIPES)}.")
    ] = LONGTAIL.recipe,
    method: Annotated[
        list[str] | None,
        typer.Option(help=f"One of {', '.join(LONGTAIL_METHODS)}; repeatable (default all)."),
    ] = None,
    seeds: SeedsOpt = len(LONGTAIL.seeds),
    device: DeviceOpt = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Long-tail methods compared on the trained split (rows in `metrics`); the figure in
    report/longtail.png."""
    from tv100.flows.experiment import LONGTAIL_FIGURE, longtail_flow
    from tv100.tasks.prerequisites import require_tables

    check_recipes([recipe], LONGTAIL_RECIPES)
    for m in method or []:
        if m not in LONGTAIL_METHODS:
            fail(f"--method {m!r}; expected one of {', '.join(LONGTAIL_METHODS)}")
    if method and len(set(method)) != len(method):
        fail(f"--method {' '.join(method)!r} repeats a method; expected distinct methods")
    model_specs([model] if model else None)
    root = data_root(data)
    require_tables(root, "experiment longtail", CURVES_INPUTS)  # one line, nothing created
    try:
        result = longtail_flow(data=root.url, model=model, recipe=recipe, methods=method,
                               seeds=list(range(seeds)), device=device, wait=not no_wait)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    figure = root.path("report", LONGTAIL_FIGURE)
    typer.echo("\n".join(["tv100 experiment longtail finished",
                          *format_longtail(result, figure)]))


app.add_typer(experiment_app, name="experiment")
