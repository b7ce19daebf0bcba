"""Data-efficiency curves: recipes trained on k images per class (k = 1, 2, 4, ..., all), over
several seeds, each scored on the same val and test split; the `curves` table.

A point of a curve is one (recipe, shots, seed): the train split of the `splits` table cut
to at most `shots` images per class by `few_shot_splits` (val and test untouched), then one
`tv100.tasks.train.recipes.run_recipe` run with that seed. Its scalar metrics on val and
test become rows of `CURVES`; ``shots`` 0 (`ALL_SHOTS`) is the whole train split.

The draw is seeded and nested: for one seed, the images of the 2-shot set include those of
the 1-shot set, and so on, so a curve shows what more data adds, not a different draw.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.storage.schemas import CURVES
from tv100.storage.tables import read_table, table_exists, write_table
from tv100.tasks.experiments.config import (  # noqa: F401 (the curves' settings, re-exported)
    ALL_SHOTS,
    CURVE_METRICS,
    CURVES_INPUTS,
    CURVES_TABLE,
    DEFAULT_CURVE_RECIPES,
    DEFAULT_SEEDS,
    DEFAULT_SHOTS,
    MAX_SHOTS,
    SEED_MAX,
    CurvesConfig,
    curves_config,
    is_int,
    shots_label,
    shots_order,
)
from tv100.tasks.progress import track
from tv100.tasks.rank.models import ModelSpec
from tv100.tasks.train.config import RECIPES, SPLIT_NAMES, TrainConfig
from tv100.tasks.train.recipes import run_recipe
from tv100.tasks.train.results import RecipeResult, splits_digest

#: The progress artifact of `run_curves`.
CURVES_PROGRESS = "experiment-curves-progress"
_SPLIT_COLUMNS = ("image_id", "series_id", "class_index", "split")


def _draw_key(seed: int, image_id: str) -> bytes:
    return hashlib.sha256(f"few-shot:{seed}:{image_id}".encode()).digest()


def _check_splits(splits: pa.Table) -> None:
    missing = [c for c in ("image_id", "class_index", "split") if c not in splits.column_names]
    if missing:
        raise ValueError(
            f"splits table lacks column {missing[0]!r}; expected image_id, series_id, "
            "class_index, split"
        )


def few_shot_splits(splits: pa.Table, shots: int, seed: int) -> pa.Table:
    """`splits` with at most `shots` train images per class; val and test rows untouched.

    Each class keeps the train images with the smallest seeded hash of their id, so the
    draw is deterministic, independent of row order and nested: for one seed, the k-shot
    set is a subset of every larger one. A class with fewer than `shots` keeps all it has.

    Args:
        splits: the `splits` table (image_id, series_id, class_index, split, ...).
        shots: most train images per class (1..`MAX_SHOTS`), or `ALL_SHOTS` for all.
        seed: the draw's seed (0..2**63-1).

    Returns:
        The rows kept, in `splits`' order, with all its columns.

    Raises:
        ValueError: `shots` or `seed` out of range, or a column missing.
    """
    if not is_int(shots) or not 0 <= shots <= MAX_SHOTS:
        raise ValueError(f"shots={shots!r}; expected an integer in 0..{MAX_SHOTS} (0: all)")
    if not is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed={seed!r}; expected an integer in 0..{SEED_MAX}")
    _check_splits(splits)
    if shots == ALL_SHOTS:
        return splits
    ids = splits.column("image_id").to_pylist()
    classes = splits.column("class_index").to_pylist()
    names = splits.column("split").to_pylist()
    by_class: dict[int, list[tuple[bytes, str, int]]] = {}
    for i, (image_id, c, s) in enumerate(zip(ids, classes, names, strict=True)):
        if s == "train":
            key = _draw_key(seed, str(image_id))
            by_class.setdefault(int(c), []).append((key, str(image_id), i))
    keep = [s != "train" for s in names]
    for rows in by_class.values():
        for _, _, i in sorted(rows)[:shots]:
            keep[i] = True
    return splits.filter(pa.array(keep, pa.bool_()))


def mean_shots(splits: pa.Table, classes: int) -> float:
    """Train images of `splits` per class, over `classes` classes (0 when there are none)."""
    n = sum(1 for s in splits.column("split").to_pylist() if s == "train")
    return n / classes if classes else 0.0


@dataclass(frozen=True)
class ExperimentInputs:
    """What an experiment reads from a trained data root.

    Attributes:
        splits: image_id, series_id, class_index, split (the `splits` table the train stage
            wrote), sorted by image_id.
        names: class names in class-index order (the kept series' titles, else their ids).
        paths: image_id → image path relative to the root, for every image of `splits`.
    """

    splits: pa.Table
    names: tuple[str, ...]
    paths: Mapping[str, str]

    @property
    def train_classes(self) -> int:
        """Classes with at least one training image."""
        return len({c for c, s in zip(self.splits.column("class_index").to_pylist(),
                                      self.splits.column("split").to_pylist(), strict=True)
                    if s == "train"})


def experiment_inputs(root: DataRoot) -> ExperimentInputs:
    """The split the train stage wrote, the class names and the images' paths.

    Raises:
        ValueError: a table is missing, the split is older than `classes` (a class index
            names another series, or is not kept), an image has no stored path, or the
            train split is empty.
    """
    for name in CURVES_INPUTS:
        if not table_exists(root, name):
            raise ValueError(f"no `{name}` table under {root.url!r}; run `tv100 train` first")
    splits = read_table(root, "splits").select(list(_SPLIT_COLUMNS)).sort_by("image_id")
    classes = read_table(root, "classes").filter(pc.field("kept"))
    kept = sorted((int(c), str(s), t) for c, s, t in zip(
        classes.column("class_index").to_pylist(), classes.column("series_id").to_pylist(),
        classes.column("title").to_pylist(), strict=True))
    series_of = {c: s for c, s, _ in kept}
    if [c for c, _, _ in kept] != list(range(len(kept))):
        raise ValueError(f"the `classes` table under {root.url!r} has class indices "
                         f"{[c for c, _, _ in kept]}; expected 0..{len(kept) - 1}")
    for c, s in zip(splits.column("class_index").to_pylist(),
                    splits.column("series_id").to_pylist(), strict=True):
        if series_of.get(int(c)) != s:
            raise ValueError(
                f"the `splits` table under {root.url!r} is older than its `classes` (class "
                f"{c} is {s!r} in splits, {series_of.get(int(c))!r} in classes); run "
                "`tv100 train` first"
            )
    if "train" not in splits.column("split").to_pylist():
        raise ValueError(f"the train split under {root.url!r} is empty; nothing to learn from")
    wanted = set(splits.column("image_id").to_pylist())
    images = read_table(root, "images").select(["image_id", "path"])
    paths = {str(i): str(p) for i, p in zip(images.column("image_id").to_pylist(),
                                            images.column("path").to_pylist(), strict=True)
             if i in wanted and p}
    lost = sorted(wanted - set(paths))
    if lost:
        raise ValueError(f"{len(lost)} images of the `splits` table have no stored file in "
                         f"`images`, e.g. {lost[0]!r}; run `tv100 train` again")
    names = tuple(str(t) if t else s for _, s, t in kept)
    return ExperimentInputs(splits, names, paths)


@dataclass(frozen=True)
class CurvePoint:
    """One point of a curve: one recipe run on a few-shot split with one seed.

    Attributes:
        recipe, shots, seed: the point (`shots` 0: all).
        run_id: the recipe run (``runs/<run_id>/result.json``).
        n_train: training images it had.
        mean_shots: training images per class (mean over classes with any).
        test_top1, test_balanced_accuracy, val_top1: its metrics (None: split empty).
    """

    recipe: str
    shots: int
    seed: int
    run_id: str
    n_train: int
    mean_shots: float
    test_top1: float | None
    test_balanced_accuracy: float | None
    val_top1: float | None


@dataclass(frozen=True)
class CurvesResult:
    """What `run_curves` did.

    Attributes:
        model_key: the CLIP's key (architecture + exact weights).
        classes: number of classes.
        points: every point, in the order they ran.
        table: sha256 of the `curves` table's Parquet bytes after the last write.
        summary: `curve_summary` of this run's test rows.
        figure: the figure's path (set by the flow; None when not drawn).
    """

    model_key: str
    classes: int
    points: tuple[CurvePoint, ...]
    table: str
    summary: tuple[Mapping[str, Any], ...]
    figure: str | None = None


def curve_rows(result: RecipeResult, shots: int, seed: int, mean: float) -> pa.Table:
    """The `CURVES` rows of one point: `CURVE_METRICS` on each split scored."""
    rows = []
    for split in sorted(result.metrics_by_split, key=SPLIT_NAMES.index):
        for metric in CURVE_METRICS:
            rows.append({"run_id": result.run_id, "model_key": result.model_key,
                         "recipe": result.recipe, "shots": shots, "seed": seed,
                         "mean_shots": mean, "split": split, "metric": metric,
                         "value": result.metric(split, metric)})
    return pa.Table.from_pylist(rows, schema=CURVES)


def _row_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r["model_key"], r["recipe"], *shots_order(r["shots"]), r["seed"], r["split"],
            r["metric"], r["run_id"])


def write_curves(root: DataRoot, rows: pa.Table) -> str:
    """Merge `rows` into the `curves` table; return the sha256 of its Parquet bytes.

    Rows of the same (run_id, shots) as a new row are replaced, the others kept; the rows
    are sorted (`CURVES`), so writing equal rows again leaves the file byte-identical.
    """
    new = rows.select(CURVES.names).cast(CURVES).to_pylist()
    points = {(r["run_id"], r["shots"]) for r in new}
    old = []
    if table_exists(root, CURVES_TABLE):
        old = [r for r in read_table(root, CURVES_TABLE).to_pylist()
               if (r["run_id"], r["shots"]) not in points]
    merged = sorted(old + new, key=_row_key)
    return write_table(root, CURVES_TABLE, pa.Table.from_pylist(merged, schema=CURVES),
                       schema=CURVES)


def curve_summary(
    table: pa.Table | Iterable[Mapping[str, Any]], split: str | None = "test"
) -> list[dict[str, Any]]:
    """Mean and spread over seeds of each (model_key, recipe, shots, split, metric).

    Args:
        table: `CURVES` rows (a table or dicts).
        split: only this split's rows (None: every split).

    Returns:
        Dicts with model_key, recipe, shots, split, metric, mean, std (sample standard
        deviation; None with one seed), min, max, n_seeds and mean_shots (averaged over
        seeds), in recipe order (`RECIPES`), then shots ascending (all last). Null values
        are left out (a point without them does not count).
    """
    rows = table.to_pylist() if isinstance(table, pa.Table) else list(table)
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        if (split is None or r["split"] == split) and r["value"] is not None:
            key = (r["model_key"], r["recipe"], r["shots"], r["split"], r["metric"])
            groups.setdefault(key, []).append(r)
    out = []
    for (model_key, recipe, shots, s, metric), rs in groups.items():
        values = [float(r["value"]) for r in rs]
        out.append({
            "model_key": model_key, "recipe": recipe, "shots": shots, "split": s,
            "metric": metric, "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values),
            "n_seeds": len({r["seed"] for r in rs}),
            "mean_shots": statistics.fmean(float(r["mean_shots"]) for r in rs),
        })
    order = {r: i for i, r in enumerate(RECIPES)}
    out.sort(key=lambda r: (r["model_key"], order.get(r["recipe"], len(RECIPES)), r["recipe"],
                            *shots_order(r["shots"]), r["split"], r["metric"]))
    return out


def run_curves(
    root: DataRoot,
    model_spec: ModelSpec | str,
    config: CurvesConfig | None = None,
    device: str | None = None,
    inputs: ExperimentInputs | None = None,
) -> CurvesResult:
    """Run every point of `config` and write its rows to the `curves` table.

    Each point is written as soon as it is done (a stopped run keeps the points it
    finished; fine-tuning resumes from its checkpoints). Two points whose few-shot splits
    and knobs are equal (a shots value above every class's train count, and all) are
    trained once.

    Args:
        root: a trained data root (its `splits`, `classes` and `images`).
        model_spec: the CLIP every point starts from.
        config: the recipes, shots, seeds and knobs (default `CurvesConfig()`).
        device: None/``"auto"`` (CUDA when available) or e.g. ``"cpu"``.
        inputs: the data root's `experiment_inputs` when already read.

    Returns:
        A `CurvesResult`.

    Raises:
        ValueError: inputs missing or inconsistent (see `experiment_inputs`).
    """
    cfg = config or CurvesConfig()
    data = inputs or experiment_inputs(root)
    n_classes = data.train_classes
    done: dict[tuple[str, TrainConfig], RecipeResult] = {}
    points: list[CurvePoint] = []
    rows: list[pa.Table] = []
    digest = ""
    plan = cfg.points()
    with track("curves", len(plan), "runs", CURVES_PROGRESS) as tracker:
        tracker(0)
        for recipe, shots, seed in plan:
            few = few_shot_splits(data.splits, shots, seed)
            n_train = sum(1 for s in few.column("split").to_pylist() if s == "train")
            pcfg = cfg.point_config(recipe, seed, n_train)
            key = (splits_digest(few), pcfg)
            if key not in done:
                done[key] = run_recipe(root, few, data.names, model_spec, pcfg, data.paths,
                                       device)
            result = done[key]
            mean = mean_shots(few, n_classes)
            point_rows = curve_rows(result, shots, seed, mean)
            digest = write_curves(root, point_rows)
            rows.append(point_rows)
            points.append(CurvePoint(
                recipe=recipe, shots=shots, seed=seed, run_id=result.run_id, n_train=n_train,
                mean_shots=mean, test_top1=result.metric("test", "top1"),
                test_balanced_accuracy=result.metric("test", "balanced_accuracy"),
                val_top1=result.metric("val", "top1"),
            ))
            tracker.advance()
    model_key = next(iter(done.values())).model_key
    return CurvesResult(
        model_key=model_key,
        classes=len(data.names),
        points=tuple(points),
        table=digest,
        summary=tuple(curve_summary(pa.concat_tables(rows))),
    )


@task(name="experiment-inputs", cache_policy=NO_CACHE)
def experiment_inputs_task(root: DataRoot) -> ExperimentInputs:
    """`experiment_inputs`."""
    return experiment_inputs(root)


@task(name="run-curves", cache_policy=NO_CACHE)
def run_curves_task(
    root: DataRoot,
    model_spec: str,
    config: CurvesConfig,
    device: str | None = None,
    inputs: ExperimentInputs | None = None,
) -> CurvesResult:
    """`run_curves` (uncached: each point resumes by itself), logging each curve's ends."""
    result = run_curves(root, model_spec, config, device, inputs)
    log = get_run_logger()
    for r in result.summary:
        if r["metric"] == "top1":
            log.info("curves %s %s-shot: test top-1 %.3f over %d seeds", r["recipe"],
                     shots_label(r["shots"]), r["mean"], r["n_seeds"])
    return result
