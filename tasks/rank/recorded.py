"""The models a data root was last ranked with: the `rank_models` table.

The rank stage writes it beside `zeroshot` and `classes`, one row per model in the order
given (its spec, with local paths made absolute so it loads from any directory, and its
key), replacing the previous rank's rows. Rank, train, rerank and build take their default
models from it (`default_models`), so a data root ranked with the sandbox CLIP, say, is
trained and re-ranked with that CLIP, not with `DEFAULT_MODELS` (a download). No time is
recorded: a rerun with the same models leaves the table byte-identical.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.storage.schemas import RANK_MODELS
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.rank.config import DEFAULT_MODELS
from tv100.tasks.rank.models import CHECKPOINT_SUFFIXES, ModelSpec, model_key

RANK_MODELS_TABLE = "rank_models"


def absolute_spec(spec: str) -> str:
    """`spec` with a local folder or checkpoint file as an absolute path (tags unchanged)."""
    parsed = ModelSpec.parse(spec)
    if parsed.is_local_dir:
        return f"local-dir:{os.path.abspath(parsed.local_dir)}"
    weights = parsed.weights or ""
    path = os.path.expanduser(weights)
    if os.sep in weights or "/" in weights or weights.endswith(CHECKPOINT_SUFFIXES):
        return f"{parsed.arch}@{os.path.abspath(path)}"
    return str(parsed)


def rank_models_table(models: Sequence[str]) -> pa.Table:
    """The `rank_models` rows of one rank run: position, spec (absolute paths), model key.

    Raises:
        WeightsNotFoundError: a model's weights are missing (as the rank stage itself does).
    """
    specs = [absolute_spec(m) for m in models]
    return pa.Table.from_pydict(
        {
            "position": list(range(len(specs))),
            "model": specs,
            "model_key": [model_key(s) for s in specs],
        },
        schema=RANK_MODELS,
    )


@task(name="rank-models", cache_policy=NO_CACHE)
def rank_models_task(models: Sequence[str]) -> pa.Table:
    """`rank_models_table`; uncached: a checkpoint replaced in place changes its key."""
    return rank_models_table(models)


def recorded_models(root: DataRoot) -> tuple[str, ...]:
    """The specs the root was last ranked with, in their order; () when never ranked."""
    if not table_exists(root, RANK_MODELS_TABLE):
        return ()
    rows = read_table(root, RANK_MODELS_TABLE).sort_by("position")
    return tuple(str(m) for m in rows.column("model").to_pylist())


def default_models(root: DataRoot, models: Sequence[str] | None) -> tuple[str, ...]:
    """`models` when given, else the ones `root` was last ranked with, else `DEFAULT_MODELS`."""
    if models:
        return tuple(models)
    return recorded_models(root) or DEFAULT_MODELS


def ranked_models(root: DataRoot, what: str, models: Sequence[str] | None) -> tuple[str, ...]:
    """`models` when given, else the ones `root` was last ranked with (train, rerank).

    Raises:
        ValueError: none given and none recorded (a root ranked before `rank_models`
            existed): one line saying to pass ``--model`` or rank again.
    """
    if models:
        return tuple(models)
    recorded = recorded_models(root)
    if not recorded:
        raise ValueError(
            f"{what} needs --model: {root.url!r} has no record of the CLIP(s) it was ranked "
            f"with (table `{RANK_MODELS_TABLE}`, written by `tv100 rank`); pass --model "
            "ARCH@WEIGHTS, or run `tv100 rank` again"
        )
    return recorded
