"""Long-tail methods side by side: every method a knob set of one recipe, run over seeds
through `tv100.tasks.train.recipes.run_recipe`, on the build's own splits.

The methods (`LONGTAIL_METHODS`), each one change from plain cross-entropy:

- ``ce``: cross-entropy, uniform sampling (the baseline);
- ``balanced_sampling``: every class drawn equally often (`TrainConfig.sampling`);
- ``logit_adjust_posthoc``: the ``ce`` model's scores minus ``τ · log prior`` (Menon et al.
  2021; `TrainConfig.posthoc_tau`; a fine-tune run is the ``ce`` run, reused);
- ``logit_adjust_loss``: ``τ · log prior`` added to the logits in the loss
  (`TrainConfig.logit_adjust_tau`);
- ``class_balanced_loss``: cross-entropy weighted by the inverse effective number of
  samples (Cui et al. 2019; `TrainConfig.loss`, `TrainConfig.cb_beta`);
- ``crt``: the ``ce`` model's representation frozen and its linear classifier re-trained
  with class-balanced weights (Kang et al. 2020; `TrainConfig.crt`).

With the ``linear`` recipe the features are frozen and the probe's bias is not penalised,
so ``logit_adjust_loss`` is ``logit_adjust_posthoc`` (the bias absorbs the offsets) up to
the penalty chosen on val, and ``crt`` is the balanced probe at the penalty plain CE chose;
with ``finetune`` every method differs.

Each run's rows go to the `metrics` and `class_metrics` tables like the train stage's,
tagged in ``hyperparameters`` with ``longtail_method`` and ``longtail_setting`` (a hash of
the run's knobs without its seed: the runs of one setting are its seeds).
``tasks/report/queries/longtail_tiers.sql`` summarises them per method and tier;
`tv100.tasks.experiments.longtail_figure` draws them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.experiments.config import (  # noqa: F401 (the methods' settings, re-exported)
    LONGTAIL_METHODS,
    LONGTAIL_RECIPES,
    LongtailConfig,
    method_knobs,
)
from tv100.tasks.rank.models import ModelSpec
from tv100.tasks.train.config import TrainConfig
from tv100.tasks.train.inputs import selected_items
from tv100.tasks.train.recipes import run_recipe
from tv100.tasks.train.results import RecipeResult, append_metrics

log = logging.getLogger(__name__)

#: The summary's metrics: test ``metrics`` rows, named as tiers (`LongtailResult.rows`).
TIER_METRICS = {"top1": "top1", "balanced": "balanced_accuracy", "many": "many",
                "medium": "medium", "few": "few"}
#: The split the summary reads (val makes the choices: penalty, α, cRT's penalty).
SUMMARY_SPLIT = "test"
#: The named query of the summary (``tasks/report/queries/<name>.sql``).
TIERS_QUERY = "longtail_tiers"
#: Keys of a run's ``hyperparameters`` that tag it.
METHOD_KEY = "longtail_method"
SETTING_KEY = "longtail_setting"


def setting_of(config: TrainConfig) -> str:
    """12 hex digits naming a run's knobs without its seed: runs that share it are seeds of
    one setting (the `longtail_tiers` query groups by it)."""
    knobs = {k: v for k, v in config.knobs().items() if k != "seed"}
    blob = json.dumps({"recipe": config.recipe, "knobs": knobs}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def tag_result(result: RecipeResult, method: str, setting: str) -> RecipeResult:
    """`result` with its method and setting in its ``hyperparameters`` (what its rows of
    `metrics` carry)."""
    hp = {**result.hyperparameters, METHOD_KEY: method, SETTING_KEY: setting}
    return replace(result, hyperparameters=hp)


@dataclass(frozen=True)
class Stat:
    """One metric over seeds.

    Attributes:
        mean: the mean (None: no seed had the metric, e.g. an empty tier).
        std: the sample standard deviation (None with fewer than two values).
        n: how many seeds had the metric.
    """

    mean: float | None
    std: float | None
    n: int


def stat(values: Sequence[float | None]) -> Stat:
    """`Stat` of the values that are not None (sample std, as SQL's ``stddev_samp``)."""
    xs = np.array([v for v in values if v is not None], dtype=np.float64)
    if xs.size == 0:
        return Stat(None, None, 0)
    std = float(xs.std(ddof=1)) if xs.size > 1 else None
    return Stat(float(xs.mean()), std, int(xs.size))


@dataclass(frozen=True)
class MethodResult:
    """One method over its seeds, on the test split.

    Attributes:
        method: the method.
        setting: `setting_of` its runs.
        run_ids: its runs, in seed order.
        top1, balanced_accuracy, many, medium, few: each metric's `Stat` over seeds.
    """

    method: str
    setting: str
    run_ids: tuple[str, ...]
    top1: Stat
    balanced_accuracy: Stat
    many: Stat
    medium: Stat
    few: Stat


@dataclass(frozen=True)
class LongtailResult:
    """What `run_longtail` did.

    Attributes:
        recipe: the recipe.
        model_key: the model's key.
        seeds: the seeds.
        methods: one result per method, in the config's order.
        tables: ``{table: sha256 of its Parquet bytes}`` of `metrics` and `class_metrics`.
    """

    recipe: str
    model_key: str
    seeds: tuple[int, ...]
    methods: tuple[MethodResult, ...]
    tables: Mapping[str, str]

    def method(self, name: str) -> MethodResult:
        """The result of method `name`.

        Raises:
            KeyError: the method did not run.
        """
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"method {name!r} did not run; ran {[m.method for m in self.methods]}")

    def rows(self) -> list[dict[str, Any]]:
        """``{method, tier, mean, std, n_seeds}`` per method and tier (``top1``,
        ``balanced``, ``many``, ``medium``, ``few``): the `longtail_tiers` query's columns,
        what `tv100.tasks.experiments.longtail_figure.draw_longtail` draws."""
        out = []
        for m in self.methods:
            for tier, metric in TIER_METRICS.items():
                s: Stat = getattr(m, metric)
                out.append({"method": m.method, "tier": tier, "mean": s.mean, "std": s.std,
                            "n_seeds": s.n})
        return out


def method_result(method: str, setting: str, runs: Sequence[RecipeResult]) -> MethodResult:
    """A `MethodResult` from the method's runs (one per seed)."""
    def over(metric: str) -> Stat:
        return stat([r.metric(SUMMARY_SPLIT, metric) for r in runs])

    return MethodResult(method, setting, tuple(r.run_id for r in runs), over("top1"),
                        over("balanced_accuracy"), over("many"), over("medium"), over("few"))


def build_splits(root: DataRoot) -> pa.Table:
    """The train stage's `splits` table.

    Raises:
        ValueError: no `splits` table (the train stage has not run).
    """
    if not table_exists(root, "splits"):
        raise ValueError(f"no `splits` table under {root.url!r}; expected the train stage to "
                         "have run (tv100 train)")
    return read_table(root, "splits")


def run_longtail(
    root: DataRoot,
    model_spec: ModelSpec | str,
    config: LongtailConfig,
    device: str | None = None,
) -> LongtailResult:
    """Run every method × seed of `config` on the build's splits; add their rows to the
    `metrics` and `class_metrics` tables.

    The splits and class names are the train stage's (`splits` table, class names and
    image paths from `tv100.tasks.train.inputs.selected_items`). Runs that exist are reused
    (a fine-tune resumes from its checkpoint; post-hoc adjustment and cRT reuse the ``ce``
    fine-tune run), so running it again leaves every table byte-identical.

    Args:
        root: the data root of a build that went through the train stage.
        model_spec: the CLIP the recipe starts from (``ARCH@WEIGHTS`` or ``local-dir:...``).
        config: recipe, methods, seeds and knobs.
        device: None (CUDA when present) or e.g. ``cpu``.

    Raises:
        ValueError: no `splits` or `classes` table, or splits that do not match the
            selected images (rerun the train stage).
    """
    splits = build_splits(root)
    selected = selected_items(root)
    names = list(selected.names)
    by_method: dict[str, list[RecipeResult]] = {m: [] for m in config.methods}
    settings: dict[str, str] = {}
    tables: dict[str, str] = {}
    model_key = ""
    for method, seed, cfg in config.runs():
        setting = settings.setdefault(method, setting_of(cfg))
        result = run_recipe(root, splits, names, model_spec, cfg, selected.paths, device)
        result = tag_result(result, method, setting)
        tables.update(append_metrics(root, *result.tables()))
        by_method[method].append(result)
        model_key = result.model_key
        log.info("long tail: %s %s seed %d: test top-1 %s, few %s", config.recipe, method,
                 seed, result.metric(SUMMARY_SPLIT, "top1"), result.metric(SUMMARY_SPLIT, "few"))
    methods = tuple(method_result(m, settings[m], by_method[m]) for m in config.methods)
    return LongtailResult(config.recipe, model_key, config.seeds, methods, tables)


def tiers_sql() -> str:
    """The SQL of ``tasks/report/queries/longtail_tiers.sql`` (read from the package)."""
    from tv100.tasks.report.named_queries import parse_query

    path = files("tv100.tasks.report").joinpath("queries", f"{TIERS_QUERY}.sql")
    return parse_query(TIERS_QUERY, path.read_text(encoding="utf-8")).sql


def longtail_tiers(root: DataRoot) -> pa.Table:
    """The `longtail_tiers` query on the data root's `metrics` table: model_key, recipe,
    method, setting, tier, mean, std, n_seeds."""
    from tv100.storage.catalog import query

    return query(root, tiers_sql())


@task(name="run-longtail", cache_policy=NO_CACHE)
def run_longtail_task(
    root: DataRoot, model_spec: str, config: LongtailConfig, device: str | None = None
) -> LongtailResult:
    """`run_longtail` (uncached: its runs resume by themselves)."""
    return run_longtail(root, model_spec, config, device)
