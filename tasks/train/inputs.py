"""What the train stage reads from earlier stages: the kept series and their cleaned images
(rank + clean), the hashes the leakage check compares (clean), and the rank stage's CLIP
vectors (the optional CLIP leakage signal)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.clean.steps import duplicate_candidates
from tv100.tasks.rank.embed import load_embeddings
from tv100.tasks.review.decisions import reviewed_images


@dataclass(frozen=True)
class SelectedItems:
    """The images the stage splits.

    Attributes:
        items: image_id, series_id, path, class_index of every cleaned image of a kept
            series that the rank stage did not find irrelevant, sorted by image_id.
        names: class names: ``names[i]`` is the title of class i.
    """

    items: pa.Table
    names: tuple[str, ...]

    @property
    def image_ids(self) -> list[str]:
        """The image ids, in `items` order."""
        return [str(i) for i in self.items.column("image_id").to_pylist()]

    @property
    def labelled(self) -> pa.Table:
        """image_id, series_id, class_index: what `tv100.tasks.train.splits.make_splits`
        splits."""
        return self.items.drop_columns(["path"])

    @property
    def paths(self) -> pa.Table:
        """image_id, path (relative to the data root)."""
        return self.items.select(["image_id", "path"])


def selected_items(root: DataRoot) -> SelectedItems:
    """Cleaned images of the kept series with their class index, and the class names.

    Images the rank stage decided are ``irrelevant`` (table `relevance`) are left out, with
    the human reviews made since applied on top (`tv100.tasks.review.decisions`).

    Raises:
        ValueError: no `classes` table (run the rank stage first) or no kept series.
    """
    if not table_exists(root, "classes"):
        raise ValueError(
            f"no `classes` table under {root.url!r}; expected the rank stage to have run "
            "(tv100 rank)"
        )
    classes = read_table(root, "classes").filter(pc.field("kept"))
    if classes.num_rows == 0:
        raise ValueError(
            f"the `classes` table under {root.url!r} keeps no series; nothing to train"
        )
    kept = sorted(
        zip(classes.column("class_index").to_pylist(), classes.column("series_id").to_pylist(),
            classes.column("title").to_pylist(), strict=True)
    )
    index = {sid: i for i, sid, _ in kept}
    images = cleaned_images(root)
    images = images.filter(pc.is_in(images.column("series_id"), pa.array(list(index))))
    relevance = read_table(root, "relevance") if table_exists(root, "relevance") else None
    images = reviewed_images(root, images, relevance)
    items = images.select(["image_id", "series_id", "path"])
    items = items.append_column(
        "class_index",
        pa.array([index[s] for s in items.column("series_id").to_pylist()], pa.int32()),
    )
    return SelectedItems(items, tuple(title for _, _, title in kept))


def leakage_candidates(root: DataRoot) -> pa.Table:
    """The clean stage's hashes with each image's series and rank (`duplicate_candidates`)."""
    return duplicate_candidates(root, read_table(root, "hashes"))


def rank_embeddings(
    root: DataRoot, image_ids: list[str]
) -> tuple[list[str], np.ndarray] | None:
    """The rank stage's vectors of `image_ids` (its first model), for the CLIP leakage
    signal; None when the rank stage left none."""
    if not table_exists(root, "zeroshot"):
        return None
    keys = sorted(set(read_table(root, "zeroshot").column("model_key").to_pylist()))
    if not keys:
        return None
    ids, vectors = load_embeddings(root, keys[0], image_ids)
    return (ids, vectors) if ids else None


@task(name="selected-items", cache_policy=NO_CACHE)
def selected_items_task(root: DataRoot) -> SelectedItems:
    """`selected_items`."""
    return selected_items(root)


@task(name="leakage-candidates", cache_policy=NO_CACHE)
def leakage_candidates_task(root: DataRoot) -> pa.Table:
    """`leakage_candidates`."""
    return leakage_candidates(root)


@task(name="rank-embeddings", cache_policy=NO_CACHE)
def rank_embeddings_task(
    root: DataRoot, image_ids: list[str]
) -> tuple[list[str], np.ndarray] | None:
    """`rank_embeddings`."""
    return rank_embeddings(root, image_ids)
