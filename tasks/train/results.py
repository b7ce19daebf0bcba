"""What a recipe run leaves behind: its id, its `RecipeResult`, ``runs/<run_id>/result.json``
and its rows of the ``metrics`` and ``class_metrics`` tables.

Every run has a `run_id` (a hash of model key, recipe, the recipe's knobs, the split
table, the class names and the seed) and a folder ``<root>/runs/<run_id>/``.
`metrics_tables` turns a result into rows of `METRICS` and `CLASS_METRICS` and
`append_metrics` adds them to the data root's tables, replacing only the rows of the same
run.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot, write_bytes_atomic
from tv100.storage.schemas import CLASS_METRICS, METRICS
from tv100.storage.tables import read_table, table_exists, write_table
from tv100.tasks.report.artifacts import publish_metrics_artifact
from tv100.tasks.train.config import RunSummary, TrainResult
from tv100.tasks.train.metrics import Tiers, metric_rows
from tv100.tasks.train.splits import split_counts

RUNS_DIR = "runs"
RESULT_NAME = "result.json"
#: A run's val/test scores (`RecipeResult.scores_by_split`), written before `RESULT_NAME`.
SCORES_NAME = "scores.npz"
METRICS_TABLE = "metrics"
CLASS_METRICS_TABLE = "class_metrics"
#: Bumped when a recipe changes in a way its knobs do not show (new run ids).
RECIPE_VERSION = 1


def splits_digest(splits: pa.Table) -> str:
    """sha256 of the split assignment (image_id, series_id, class_index, split), row-order
    independent."""
    cols = [splits.column(c).to_pylist() for c in ("image_id", "series_id", "class_index",
                                                   "split")]
    lines = sorted("\t".join(str(v) for v in row) for row in zip(*cols, strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def run_id(
    model_key: str,
    recipe: str,
    knobs: Mapping[str, Any],
    split_digest: str,
    seed: int,
    classnames: Sequence[str] = (),
) -> str:
    """The id of a run: ``<recipe>-<16 hex digits>`` of everything that changes its numbers.

    Args:
        model_key: the model's key (architecture + exact weights).
        recipe: the recipe.
        knobs: its knobs (`tv100.tasks.train.config.TrainConfig.knobs`).
        split_digest: `splits_digest` of the split table.
        seed: the seed.
        classnames: the class names (they make the zero-shot weights).
    """
    blob = json.dumps(
        {
            "version": RECIPE_VERSION,
            "model_key": model_key,
            "recipe": recipe,
            "knobs": dict(knobs),
            "splits": split_digest,
            "seed": seed,
            "classnames": list(classnames),
        },
        sort_keys=True,
    ).encode()
    return f"{recipe}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass(frozen=True, eq=False)
class RecipeResult:
    """What a recipe run produced.

    Attributes:
        run_id: the run's id (`run_id`); its folder is ``<root>/runs/<run_id>/``.
        model_key: `tv100.tasks.rank.clip.Clip.key` of the model.
        recipe: the recipe.
        hyperparameters: the knobs (`TrainConfig.knobs`) plus what was chosen on val
            (``weight_decay`` and ``val_top1_by_weight_decay`` for linear, ``alpha`` and
            ``val_top1_by_alpha`` for WiSE-FT).
        scores_by_split: ``{split: (scores (n, classes) float32, labels (n,) int64,
            image_ids)}`` for val and test (those with images), rows sorted by image id.
        metrics_by_split: `tv100.tasks.train.metrics.classification_metrics` of each split.
        train_counts: training images per class index.
        class_series: series id per class index.
        history: per-epoch ``{"epoch", "loss", "lr"}`` of fine-tuning (empty otherwise).
        resumed_from_epoch: epochs found done in the checkpoint when the run started (0:
            trained from scratch; == epochs: a finished run reused).
        seconds: wall time of this call.
    """

    run_id: str
    model_key: str
    recipe: str
    hyperparameters: dict[str, Any]
    scores_by_split: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]
    metrics_by_split: dict[str, dict[str, Any]]
    train_counts: dict[int, int]
    class_series: dict[int, str]
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    seconds: float = 0.0

    def tables(
        self, tiers: Tiers | None = None, created_at: datetime | None = None
    ) -> tuple[pa.Table, pa.Table]:
        """`metrics_tables` of this result: ``(metrics, class_metrics)``."""
        return metrics_tables(
            self.run_id, self.model_key, self.recipe, self.hyperparameters,
            self.metrics_by_split, self.class_series, self.train_counts, tiers, created_at,
        )

    def metric(self, split: str, name: str) -> float | None:
        """A scalar metric of `split` (None when the split or the metric is absent)."""
        value = self.metrics_by_split.get(split, {}).get(name)
        return None if value is None else float(value)

    def summary(self) -> RunSummary:
        """The `RunSummary` the stage result lists."""
        return RunSummary(
            recipe=self.recipe,
            run_id=self.run_id,
            model_key=self.model_key,
            resumed_from_epoch=self.resumed_from_epoch,
            test_top1=self.metric("test", "top1"),
            test_top5=self.metric("test", "top5"),
            test_balanced_accuracy=self.metric("test", "balanced_accuracy"),
            test_many=self.metric("test", "many"),
            test_medium=self.metric("test", "medium"),
            test_few=self.metric("test", "few"),
            val_top1=self.metric("val", "top1"),
        )


def write_result(root: DataRoot, result: RecipeResult) -> str:
    """Write ``runs/<run_id>/scores.npz`` (each split's scores), then
    ``runs/<run_id>/result.json`` (knobs, choices, metrics, history); the latter's path.

    Together they let a later call with the same run id reuse the run (`stored_run`).
    """
    write_bytes_atomic(root, f"{RUNS_DIR}/{result.run_id}/{SCORES_NAME}",
                       _npz_bytes({s: v[0] for s, v in result.scores_by_split.items()}))
    summary = {
        "run_id": result.run_id,
        "model_key": result.model_key,
        "recipe": result.recipe,
        "hyperparameters": result.hyperparameters,
        "metrics": {s: dict(metric_rows(m)) for s, m in result.metrics_by_split.items()},
        "n": {s: m["n"] for s, m in result.metrics_by_split.items()},
        "history": result.history,
    }
    data = json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n"
    return write_bytes_atomic(root, f"{RUNS_DIR}/{result.run_id}/{RESULT_NAME}", data)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """`arrays` as an ``.npz`` (what `np.load` reads), the same bytes for the same arrays
    (`np.savez` stamps each member with the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                       member.getvalue())
    return buf.getvalue()


@dataclass(frozen=True)
class StoredRun:
    """A finished run read back: what `write_result` wrote."""

    hyperparameters: dict[str, Any]
    history: list[dict[str, float]]
    scores: dict[str, np.ndarray]


def stored_run(root: DataRoot, rid: str, shapes: Mapping[str, tuple[int, int]]) -> StoredRun | None:
    """Run `rid`'s stored result and scores, when both are there and each split's scores
    have the shape expected (``{split: (images, classes)}``); else None (run it)."""
    base = root.path(RUNS_DIR, rid)
    try:
        with root.fs.open(f"{base}/{RESULT_NAME}", "rb") as f:
            summary = json.loads(f.read())
        with root.fs.open(f"{base}/{SCORES_NAME}", "rb") as f, np.load(
            io.BytesIO(f.read())
        ) as npz:
            scores = {split: np.asarray(npz[split], dtype=np.float32) for split in npz.files}
    except (OSError, ValueError, KeyError):
        return None  # absent, or a file a crash or a hand left unreadable: run again
    if {s: a.shape for s, a in scores.items()} != dict(shapes):
        return None
    return StoredRun(dict(summary.get("hyperparameters") or {}),
                     list(summary.get("history") or []), scores)


def metrics_tables(
    run_id: str,
    model_key: str,
    recipe: str,
    hyperparameters: Mapping[str, Any],
    per_split_metrics: Mapping[str, Mapping[str, Any]],
    class_series: Mapping[int, str],
    train_counts: Mapping[int, int],
    tiers: Tiers | None = None,
    created_at: datetime | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Rows of `METRICS` and `CLASS_METRICS` for one run.

    Args:
        run_id: the run's id.
        model_key: the model key.
        recipe: the recipe.
        hyperparameters: stored as sorted JSON.
        per_split_metrics: ``{split: classification_metrics(...)}``.
        class_series: series id per class index.
        train_counts: training images per class index (the tier of each class).
        tiers: tier thresholds (default `tv100.tasks.train.metrics.Tiers`).
        created_at: the rows' timestamp (default now, UTC).

    Returns:
        ``(metrics, class_metrics)``, sorted by split then metric / class index.
    """
    t = tiers or Tiers()
    when = created_at or datetime.now(UTC)
    hp = json.dumps(dict(hyperparameters), sort_keys=True)
    rows, class_rows = [], []
    for split in sorted(per_split_metrics):
        m = per_split_metrics[split]
        for name, value in sorted(metric_rows(m)):
            rows.append({"run_id": run_id, "model_key": model_key, "recipe": recipe,
                         "hyperparameters": hp, "split": split, "metric": name,
                         "value": float(value), "created_at": when})
        for c in sorted(m.get("per_class", {})):
            n_train = int(train_counts.get(int(c), 0))
            class_rows.append({
                "run_id": run_id, "model_key": model_key, "recipe": recipe, "split": split,
                "class_index": int(c), "series_id": class_series.get(int(c)),
                "n": int(m["per_class_n"][c]), "accuracy": float(m["per_class"][c]),
                "train_count": n_train, "tier": t.tier(n_train),
            })
    return (pa.Table.from_pylist(rows, schema=METRICS),
            pa.Table.from_pylist(class_rows, schema=CLASS_METRICS))


def _merge(root: DataRoot, name: str, new: pa.Table, schema: pa.Schema,
           keys: list[str]) -> str:
    """Existing rows of other runs + `new`; a run's earlier rows are replaced, keeping their
    timestamp when present so a rerun with equal numbers leaves the file byte-identical."""
    runs = set(new.column("run_id").to_pylist())
    rows = []
    kept_ts: dict[str, Any] = {}
    if table_exists(root, name):
        for r in read_table(root, name).to_pylist():
            if r["run_id"] in runs:
                if "created_at" in r and r["created_at"] is not None:
                    kept_ts.setdefault(r["run_id"], r["created_at"])
                continue
            rows.append(r)
    for r in new.to_pylist():
        if "created_at" in schema.names and r["run_id"] in kept_ts:
            r["created_at"] = kept_ts[r["run_id"]]
        rows.append(r)
    rows.sort(key=lambda r: tuple(str(r[k]) if not isinstance(r[k], int) else r[k]
                                  for k in keys))
    return write_table(root, name, pa.Table.from_pylist(rows, schema=schema), schema=schema)


def append_metrics(root: DataRoot, metrics: pa.Table, class_metrics: pa.Table) -> dict[str, str]:
    """Add a run's rows to the ``metrics`` and ``class_metrics`` tables.

    Rows of other runs stay; rows of the same run id are replaced (their first
    ``created_at`` kept). Returns ``{table: sha256 of its Parquet bytes}``.
    """
    root = root.ensure()
    return {
        METRICS_TABLE: _merge(root, METRICS_TABLE, metrics, METRICS,
                              ["run_id", "split", "metric"]),
        CLASS_METRICS_TABLE: _merge(root, CLASS_METRICS_TABLE, class_metrics, CLASS_METRICS,
                                    ["run_id", "split", "class_index"]),
    }


def train_result(
    classnames: Sequence[str],
    splits: pa.Table,
    cross_split: pa.Table,
    exported: Mapping[str, int] | None,
    runs: Sequence[RecipeResult],
    tables: Mapping[str, str],
) -> TrainResult:
    """The train flow's `TrainResult` from what its tasks returned.

    Args:
        classnames: the class names.
        splits: the `splits` table written.
        cross_split: the leakage rows (held-out images near a train image).
        exported: images exported per split, or None.
        runs: the recipe results, in the order they ran.
        tables: ``{table: sha256}`` of every table written.
    """
    return TrainResult(
        classes=len(classnames),
        chance=1.0 / len(classnames),
        splits=split_counts(splits),
        leakage=cross_split.num_rows,
        exported=None if exported is None else dict(exported),
        runs=tuple(r.summary() for r in runs),
        tables=dict(tables),
    )


@task(name="append-metrics", cache_policy=NO_CACHE)
def append_metrics_task(root: DataRoot, result: RecipeResult) -> dict[str, str]:
    """`append_metrics` of a result's `metrics_tables`."""
    metrics, class_metrics = result.tables()
    return append_metrics(root, metrics, class_metrics)


@task(name="publish-metrics", cache_policy=NO_CACHE)
def publish_metrics_task(root: DataRoot) -> None:
    """Publish the ``metrics`` table as the stage's Prefect artifact."""
    publish_metrics_artifact(read_table(root, METRICS_TABLE))
