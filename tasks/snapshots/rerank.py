"""Re-rank old classes with a newer model: which kept series are no longer unseen?

A dataset of classes "CLIP has not seen" ages: newer models are trained on newer web data.
The rerank flow (`tv100.flows.refresh`) takes the kept classes (the current `classes`
table, or a snapshot's with `since`: `rerank_inputs`), embeds their cleaned images with
the newer model(s), classifies them zero-shot among the same candidates the rank stage
chose among (every row of that `classes` table, so the new top-1 is comparable with the
old accuracy) and writes the `rerank` table (`rerank_table`): old and new accuracy per
(model, kept series) and whether the class is still unseen, i.e. its new top-1 is at most
the threshold, by default ``max(2 / n_classes, 0.1)`` (`default_threshold`: twice chance
among the candidates it is classified among, and never below 10%).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.storage.schemas import RERANK
from tv100.storage.tables import read_table
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.snapshots.config import NoLongerUnseen, RerankResult
from tv100.tasks.snapshots.diff import pct
from tv100.tasks.snapshots.snapshots import list_snapshots, read_frozen, resolve_snapshot


def default_threshold(n_classes: int) -> float:
    """Top-1 at or below which a class still counts as unseen: twice chance, at least 10%."""
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes!r}; expected at least 1")
    return max(2.0 / n_classes, 0.1)


def old_classes(root: DataRoot, since: str | None = None) -> tuple[pa.Table, str | None]:
    """The `classes` table to re-rank: the current one, or snapshot `since`'s frozen copy.

    Returns:
        ``(classes, snapshot_id)`` (snapshot_id None for the current table).

    Raises:
        SnapshotError: an unknown snapshot; FileNotFoundError: no classes to re-rank.
    """
    if since is None:
        return read_table(root, "classes"), None
    snap = resolve_snapshot(list_snapshots(root), since)
    classes = read_frozen(root, snap["snapshot_id"], "classes")
    if classes is None:
        raise FileNotFoundError(
            f"snapshot {snap['snapshot_id']!r} has no `classes` table (built without the "
            "rank stage); expected a snapshot of a build that ranked classes"
        )
    return classes, snap["snapshot_id"]


@dataclass(frozen=True)
class RerankInputs:
    """What the rerank flow classifies.

    Attributes:
        kept: the kept rows of the old `classes` table.
        candidates: series_id, title of every row of it (the classes to choose among),
            sorted by series_id.
        images: the cleaned images of the kept series: image_id, series_id, path.
        snapshot_id: the snapshot the classes come from (None: the current table).
    """

    kept: pa.Table
    candidates: pa.Table
    images: pa.Table
    snapshot_id: str | None


def rerank_inputs(root: DataRoot, since: str | None = None) -> RerankInputs:
    """The kept classes to re-rank (`old_classes`), their candidates and cleaned images.

    Raises:
        SnapshotError: an unknown snapshot; FileNotFoundError: no classes to re-rank;
        ValueError: no kept class.
    """
    classes, snapshot_id = old_classes(root, since)
    kept = classes.filter(pc.field("kept"))
    if kept.num_rows == 0:
        raise ValueError(
            f"no kept classes to re-rank under {root.url!r}"
            + (f" in snapshot {snapshot_id!r}" if snapshot_id else "")
            + "; expected a build whose rank stage kept some"
        )
    candidates = classes.select(["series_id", "title"]).sort_by("series_id")
    kept_ids = pa.array(sorted(kept.column("series_id").to_pylist()), pa.string())
    images = cleaned_images(root).select(["image_id", "series_id", "path"])
    images = images.filter(pc.is_in(images.column("series_id"), value_set=kept_ids))
    return RerankInputs(kept, candidates, images, snapshot_id)


@task(name="rerank-inputs", cache_policy=NO_CACHE)
def rerank_inputs_task(root: DataRoot, since: str | None = None) -> RerankInputs:
    """`rerank_inputs`; uncached: the tables are read afresh on every run."""
    return rerank_inputs(root, since)


def rerank_table(
    kept: pa.Table,
    zeroshot: pa.Table,
    threshold: float | None = None,
    snapshot_id: str | None = None,
) -> pa.Table:
    """Compare kept classes' old accuracy with newer models' zero-shot top-1.

    Args:
        kept: the kept classes: series_id, title, accuracy (the accuracy they were kept on).
        zeroshot: `ZEROSHOT` rows of the newer model(s) (rows of other series are ignored).
        threshold: top-1 at or below which a class is still unseen (default per model
            `default_threshold` of its ``n_classes``).
        snapshot_id: the snapshot the classes come from (None: the current `classes`).

    Returns:
        `RERANK` rows, one per (model, kept series), sorted by model_key, series_id.
    """
    old = {r["series_id"]: r for r in kept.select(["series_id", "title", "accuracy"]).to_pylist()}
    rows = []
    for z in sorted(zeroshot.to_pylist(), key=lambda r: (r["model_key"], r["series_id"])):
        sid = z["series_id"]
        if sid not in old:
            continue
        thr = threshold if threshold is not None else default_threshold(int(z["n_classes"]))
        new = z["top1"] if z["n_images"] else None
        rows.append({
            "model_key": z["model_key"],
            "series_id": sid,
            "title": old[sid]["title"] or z["title"],
            "snapshot_id": snapshot_id,
            "old_accuracy": old[sid]["accuracy"],
            "new_accuracy": new,
            "n_images": int(z["n_images"]),
            "n_classes": int(z["n_classes"]),
            "threshold": float(thr),
            "still_unseen": None if new is None else bool(new <= thr),
        })
    return pa.Table.from_pylist(rows, schema=RERANK)


def summarize_rerank(
    table: pa.Table,
    snapshot_id: str | None = None,
    candidates: int = 0,
    tables: Mapping[str, str] | None = None,
) -> RerankResult:
    """Which kept classes a newer model now recognises (by model), for logs and the CLI.

    Args:
        table: the `RERANK` rows.
        snapshot_id: the snapshot the classes come from (None: the current `classes`).
        candidates: series the classes were classified among.
        tables: ``{table: sha256}`` of the tables written.
    """
    rows = table.to_pylist()
    no_longer = sorted(
        (
            NoLongerUnseen(
                model_key=r["model_key"], series_id=r["series_id"], title=r["title"],
                old_accuracy=r["old_accuracy"], new_accuracy=r["new_accuracy"],
                threshold=r["threshold"],
            )
            for r in rows if r["still_unseen"] is False
        ),
        key=lambda r: (r.model_key, -r.new_accuracy, r.series_id),
    )
    return RerankResult(
        models=tuple(sorted({r["model_key"] for r in rows})),
        kept=len({r["series_id"] for r in rows}),
        still_unseen=sum(1 for r in rows if r["still_unseen"]),
        no_images=sum(1 for r in rows if r["still_unseen"] is None),
        no_longer_unseen=tuple(no_longer),
        snapshot_id=snapshot_id,
        candidates=candidates,
        tables=dict(tables or {}),
    )


def format_rerank(result: RerankResult) -> str:
    """`summarize_rerank`'s result as readable text."""
    lines = [
        f"tv100 rerank: {result.kept} kept classes re-ranked with {', '.join(result.models)}"
        + (f" (old classes of snapshot {result.snapshot_id})" if result.snapshot_id else ""),
    ]
    gone = result.no_longer_unseen
    if gone:
        lines.append(f"  no longer unseen ({len(gone)}):")
        lines += [
            f"    {r.model_key}  {r.series_id}  {r.title}  top-1 "
            f"{pct(r.old_accuracy)} -> {pct(r.new_accuracy)} "
            f"(threshold {pct(r.threshold)})"
            for r in gone
        ]
    else:
        lines.append("  every kept class with images is still unseen")
    if result.no_images:
        lines.append(f"  {result.no_images} (model, class) pairs had no cleaned images")
    return "\n".join(lines) + "\n"
