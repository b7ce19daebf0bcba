"""`tv100 export`: the splits as files for downstream research (PyCIL class-incremental,
novel class discovery, Hugging Face ImageFolder, WebDataset shards)."""

from __future__ import annotations

from typing import Annotated

import typer

from tv100.flows.cli.app import DataOpt, app, data_root, fail
from tv100.tasks.exports.config import (
    DEFAULT_LABELLED_RATIO,
    DEFAULT_SEEDS,
    DEFAULT_SHARD_SIZE,
    KINDS,
    MAX_SEED,
    ExportResult,
)

KindOpt = Annotated[
    list[str] | None,
    typer.Option("--kind", help=f"{', '.join(KINDS)}; repeatable (default: all of them)."),
]
SeedOpt = Annotated[
    list[int] | None,
    typer.Option("--seed", min=0, max=MAX_SEED,
                 help="Seed of the class orders and partitions; repeatable (default "
                 f"{', '.join(map(str, DEFAULT_SEEDS))}, PyCIL's)."),
]

#: ExportConfig's fields → the options that set them (for its error messages).
_OPTIONS = {"kinds": "--kind", "seeds": "--seed", "labelled_ratio": "--labelled-ratio",
            "shard_size": "--shard-size"}


def format_export(result: ExportResult) -> list[str]:
    """One line per kind: its folder, images per split, and whether it was written."""
    lines = []
    for r in result.kinds:
        counts = ", ".join(f"{s} {n}" for s, n in r.counts.items())
        state = "written" if r.written else "unchanged"
        lines.append(f"{r.kind:<6} {r.path} ({counts}; {r.files} files, {state})")
    return lines


@app.command("export")
def export(
    data: DataOpt = None,
    kind: KindOpt = None,
    seed: SeedOpt = None,
    labelled_ratio: Annotated[
        float, typer.Option(min=0, max=1, help="Share of classes labelled (novel class "
                            "discovery); 0 < r < 1.")
    ] = DEFAULT_LABELLED_RATIO,
    shard_size: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Samples per WebDataset shard.")
    ] = DEFAULT_SHARD_SIZE,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="If another run holds the data root, refuse at "
                           "once instead of waiting for it.")
    ] = False,
) -> None:
    """Export the splits under DATA/export/<kind>/: pycil (class-incremental, PyCIL's
    layout), ncd (novel class discovery), hf (Hugging Face ImageFolder), wds (WebDataset).

    Each folder has a README.md with its layout, how to load it and its seeds. A rerun on
    an unchanged data root writes nothing.
    """
    from tv100.flows.export import export_flow
    from tv100.tasks.exports.common import check_local
    from tv100.tasks.exports.config import EXPORT_INPUTS, ExportConfig
    from tv100.tasks.prerequisites import require_tables

    try:  # the knobs, checked before a flow starts
        ExportConfig(kinds=tuple(kind) if kind else KINDS,
                     seeds=tuple(seed) if seed else DEFAULT_SEEDS,
                     labelled_ratio=labelled_ratio, shard_size=shard_size)
    except ValueError as err:
        message = str(err)
        for name, opt in _OPTIONS.items():
            message = message.replace(f"ExportConfig.{name}", opt)
        fail(message)
    root = data_root(data)
    require_tables(root, "export", EXPORT_INPUTS)  # MissingInputError: one line, exit 2
    try:
        url = check_local(root).url
        result = export_flow(data=url, kinds=kind, seeds=seed, labelled_ratio=labelled_ratio,
                             shard_size=shard_size, wait=not no_wait)
    except ValueError as err:
        fail(str(err))
    typer.echo("\n".join(["tv100 export finished", *format_export(result)]))
