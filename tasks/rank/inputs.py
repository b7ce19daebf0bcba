"""The rank stage's inputs: the cleaned images and every candidate series of a data root."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table
from tv100.tasks.clean.cleaned import cleaned_images


@dataclass(frozen=True)
class RankInputs:
    """What the rank stage classifies.

    Attributes:
        images: the cleaned images: image_id, series_id, path (relative to the root).
        series: every candidate series: series_id, title, sorted by series_id.
    """

    images: pa.Table
    series: pa.Table


def rank_inputs(root: DataRoot) -> RankInputs:
    """The cleaned images and the candidate series (table `series`) of a data root.

    Raises:
        ValueError: a series has cleaned images but no row in `series`.
    """
    images = cleaned_images(root).select(["image_id", "series_id", "path"])
    series = read_table(root, "series").select(["series_id", "title"]).sort_by("series_id")
    candidates = set(series.column("series_id").to_pylist())
    strays = {s for s in images.column("series_id").to_pylist() if s not in candidates}
    if strays:
        raise ValueError(
            f"{len(strays)} series have cleaned images but no row in `series` under "
            f"{root.url!r} (e.g. {sorted(strays)[0]!r}); expected the discover stage's table "
            "to list them"
        )
    return RankInputs(images, series)


@task(name="rank-inputs", cache_policy=NO_CACHE)
def rank_inputs_task(root: DataRoot) -> RankInputs:
    """`rank_inputs`; uncached: the tables are read afresh on every run."""
    return rank_inputs(root)
