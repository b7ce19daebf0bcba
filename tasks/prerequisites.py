"""What a stage needs before it runs, checked before anything is written.

A command that fails these checks leaves no trace: not the data root's folder, nor its
``tv100.json`` marker, nor its lock file. So the stage flows check here first, and only
then take the data root's lock and create the root (`tv100.storage.root.DataRoot.ensure`):

- `check_root`: the root is usable (not a file, not under a file, its marker readable and
  not from a newer schema), without creating anything;
- `require_tables`: the tables a stage reads are there; the error names the command that
  writes the missing one, or says that nothing is built under the root yet;
- `check_dataset_location`: a local IMDb dataset folder exists and holds the three files.

Each failure is a `tv100.storage.root.DataRootError` (or the discover stage's
`tv100.tasks.web.errors.SourceError`): one line, exit code 2 on the command line, and never
retried (these run in the flows, outside any task).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tv100.storage.root import MARKER, DataRoot, DataRootError
from tv100.storage.tables import list_tables

#: The command that writes each table a stage reads (for the error naming the fix).
WRITTEN_BY: dict[str, str] = {
    "series": "discover",
    "discover_fetches": "discover",
    "search_hits": "collect",
    "search_pages": "collect",
    "images": "collect",
    "quality": "clean",
    "hashes": "clean",
    "duplicates": "clean",
    "embeddings": "rank",
    "relevance": "rank",
    "reviews": "review",
    "zeroshot": "rank",
    "classes": "rank",
    "rank_models": "rank",
    "splits": "train",
    "metrics": "train",
    "class_metrics": "train",
    "snapshots": "build",
    "rerank": "rerank",
    "curves": "experiment curves",
}
#: What to run on a data root with no table at all.
BUILD_FIRST = "run `tv100 build ...` (or `tv100 demo`) first"


class MissingInputError(DataRootError):
    """A table a stage reads is not under the data root yet (one line naming the fix)."""


#: The tables each stage reads (rerank with a snapshot reads `snapshots`, not `classes`).
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "collect": ("series",),
    "clean": ("images",),
    "rank": ("series", "images"),
    "train": ("classes", "images", "hashes"),
    "rerank": ("series", "images", "classes"),
}


def nothing_built(root: DataRoot, why: str = "") -> str:
    """The line for a data root with no table at all (`why`: what needed one)."""
    return f"nothing built here yet under {root.url!r}{why}: {BUILD_FIRST}"


def _not_usable(root: DataRoot, why: str) -> DataRootError:
    return DataRootError(
        f"data root {root.url!r} is not usable: {why}; expected a folder (or a path where one "
        "can be made)"
    )


def check_root(root: DataRoot) -> DataRoot:
    """Check that `root` can be used, creating nothing; return it.

    A root that does not exist yet is fine if it can be made (locally: its nearest existing
    ancestor is a folder). An existing one must be a folder whose ``tv100.json``, if any,
    is readable and not from a newer schema (the checks of `DataRoot.ensure`).

    Raises:
        DataRootError: naming the root and what is wrong with it.
    """
    try:
        if root.is_local:
            path = root.base
            while not os.path.exists(path) and os.path.dirname(path) != path:
                path = os.path.dirname(path)
            if not os.path.isdir(path):
                where = "it is" if path == root.base else f"{path} is"
                raise _not_usable(root, f"{where} a file, not a folder")
        if root.fs.exists(root.path(MARKER)):
            # `ensure` refuses a corrupt or newer marker, and writes nothing when one exists.
            root.ensure()
    except OSError as err:
        raise _not_usable(root, " ".join(str(err).split())) from err
    return root


def require_inputs(root: DataRoot, stage: str, since: str | None = None) -> None:
    """`require_tables` with the tables `stage` reads (`STAGE_INPUTS`; `since`: rerank
    reads a snapshot's classes)."""
    tables = STAGE_INPUTS[stage]
    if stage == "rerank" and since:
        tables = tuple("snapshots" if t == "classes" else t for t in tables)
    require_tables(root, stage, tables)


def require_tables(root: DataRoot, stage: str, tables: Sequence[str]) -> None:
    """Raise `MissingInputError` unless every one of `tables` is under `root`.

    The stage flows call it before they create the root; the commands too, before they
    start a flow (so the error comes at once).

    Args:
        root: the data root (it may not exist: then nothing is built yet).
        stage: the stage that reads them, for the message (``collect``, ``rank``, ...).
        tables: the tables it reads.

    Raises:
        MissingInputError: one line: the stage, the missing table and what to run first;
            on a root without any table, that nothing is built there yet.
    """
    present = list_tables(root)
    missing = [t for t in tables if t not in present]
    if not missing:
        return
    table = missing[0]
    writer = WRITTEN_BY.get(table, "build")
    if not present:
        raise MissingInputError(nothing_built(root, f" ({stage} reads its `{table}` table)"))
    raise MissingInputError(
        f"{stage} reads the `{table}` table, which is not under {root.url!r} yet: run "
        f"`tv100 {writer} ...` first"
    )


def require_any_table(root: DataRoot) -> None:
    """Raise `MissingInputError` when `root` holds no table at all (nothing built yet)."""
    if not list_tables(root):
        raise MissingInputError(nothing_built(root))


def check_dataset_location(source: str, location: str, root: DataRoot) -> None:
    """For the imdb-datasets source, a local `location` must be a folder with the three files.

    URLs (and the imdb-web source) are checked when fetched. The discover stage's own check
    runs (`fetch_dataset_files`, which writes nothing for a folder) only when a file is
    missing, so a folder that is missing or lacks a file is refused before anything is read.

    Raises:
        MissingDatasetFiles: the folder does not exist or lacks a dataset file.
    """
    from tv100.tasks.discover.datasets import fetch_dataset_files, local_files_stamp
    from tv100.tasks.discover.fetches import is_url
    from tv100.tasks.web.config import HttpConfig

    if source != "imdb-datasets" or is_url(location) or local_files_stamp(location) is not None:
        return
    fetch_dataset_files(location, root, HttpConfig())  # raises MissingDatasetFiles
