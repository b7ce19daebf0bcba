"""The experiments' settings, checked when made: what `tv100 experiment curves` and
`tv100 experiment longtail` run. Without Prefect or torch, so the CLI can check its options
before Prefect reads its settings (`tv100.flows.cli.server.prefect_environment`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tv100.tasks.train.config import (
    SELECT_METRICS,
    TRAIN,
    TrainConfig,
    check_recipe_tuple,
)

# --- data-efficiency curves (`tv100.tasks.experiments.curves`) -----------------------------

#: The table the curves are written to.
CURVES_TABLE = "curves"
#: ``shots`` meaning every training image of the split (the right end of a curve).
ALL_SHOTS = 0
#: The shots of a default curve: powers of two, then all.
DEFAULT_SHOTS = (1, 2, 4, 8, 16, 32, ALL_SHOTS)
#: The recipes of a default curve (zero-shot needs no training images: a flat line).
DEFAULT_CURVE_RECIPES = ("linear", "finetune")
#: The seeds of a default curve (each point is run once per seed).
DEFAULT_SEEDS = (0, 1, 2)
#: The scalar metrics each point writes, per split.
CURVE_METRICS = ("top1", "top5", "balanced_accuracy")
#: The largest shots value accepted.
MAX_SHOTS = 1_000_000
#: The tables a curve reads (written by rank, collect and train).
CURVES_INPUTS = ("classes", "images", "splits")
#: The largest seed.
SEED_MAX = 2**63 - 1


def is_int(v: Any) -> bool:
    """Whether `v` is an integer (a bool is not)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _distinct_ints(owner: str, name: str, vs: Any, lo: int, hi: int, note: str = "") -> None:
    if (
        not isinstance(vs, tuple)
        or not vs
        or not all(is_int(v) and lo <= v <= hi for v in vs)
        or len(set(vs)) != len(vs)
    ):
        raise ValueError(
            f"{owner}.{name}={vs!r}; expected a non-empty tuple of distinct integers in "
            f"{lo}..{hi}{note}"
        )


def shots_label(shots: int) -> str:
    """``"all"`` for `ALL_SHOTS`, else the number."""
    return "all" if shots == ALL_SHOTS else str(shots)


def shots_order(shots: int) -> tuple[bool, int]:
    """Sort key of a shots value: ascending, `ALL_SHOTS` last."""
    return (shots == ALL_SHOTS, shots)


@dataclass(frozen=True)
class CurvesConfig:
    """What a data-efficiency curve runs, validated once.

    Attributes:
        recipes: which of `tv100.tasks.train.config.RECIPES` to run, distinct (default
            linear and finetune).
        shots: the points of each curve: at most this many training images per class,
            distinct, each in 1..`MAX_SHOTS`, or `ALL_SHOTS` (0) for the whole train split.
            Run in ascending order, all last.
        seeds: one run per seed of each point (the draw and the training), distinct, each in
            0..2**63-1.
        train: the recipes' knobs (epochs, batch size, learning rate, sampling, ...); its
            `recipe` and `seed` are replaced per point.
        max_warmup_share: a fine-tuned point warms up for at most this share of its steps
            (0..1; 1 keeps ``train.warmup_steps`` as it is): a 1-shot point has so few steps
            that a fixed warm-up would never reach the peak learning rate.
    """

    recipes: tuple[str, ...] = DEFAULT_CURVE_RECIPES
    shots: tuple[int, ...] = DEFAULT_SHOTS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    train: TrainConfig = TRAIN
    max_warmup_share: float = 0.1

    def __post_init__(self) -> None:
        check_recipe_tuple("CurvesConfig", self.recipes, distinct=True)
        _distinct_ints("CurvesConfig", "shots", self.shots, 0, MAX_SHOTS, " (0: all)")
        _distinct_ints("CurvesConfig", "seeds", self.seeds, 0, SEED_MAX)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"CurvesConfig.train={self.train!r}; expected a TrainConfig")
        share = self.max_warmup_share
        if (
            not isinstance(share, int | float)
            or isinstance(share, bool)
            or not math.isfinite(share)
            or not 0 <= share <= 1
        ):
            raise ValueError(
                f"CurvesConfig.max_warmup_share={share!r}; expected a number in 0..1"
            )

    def ordered_shots(self) -> tuple[int, ...]:
        """`shots` ascending, `ALL_SHOTS` last."""
        return tuple(sorted(self.shots, key=shots_order))

    def points(self) -> list[tuple[str, int, int]]:
        """Every (recipe, shots, seed) in the order they run."""
        return [(r, k, s) for r in self.recipes for k in self.ordered_shots() for s in self.seeds]

    def point_config(self, recipe: str, seed: int, n_train: int) -> TrainConfig:
        """The `TrainConfig` of one point with `n_train` training images (validated)."""
        cfg = replace(self.train, recipe=recipe, seed=seed)
        if recipe in ("finetune", "wiseft"):
            steps = cfg.epochs * math.ceil(max(n_train, 1) / cfg.batch_size)
            cap = int(self.max_warmup_share * steps)
            if cfg.warmup_steps > cap:
                cfg = replace(cfg, warmup_steps=cap)
        return cfg


def curves_config(
    recipes: Sequence[str] | None = None,
    shots: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    max_warmup_share: float | None = None,
    **train: Any,
) -> CurvesConfig:
    """A `CurvesConfig` from options (None: the default), `train` being `TrainConfig` knobs.

    Raises:
        ValueError: an option out of range or unknown (one line naming it).
    """
    unknown = sorted(set(train) - set(TrainConfig.__dataclass_fields__) - {"recipe", "seed"})
    if unknown or "recipe" in train or "seed" in train:
        name = unknown[0] if unknown else ("recipe" if "recipe" in train else "seed")
        raise ValueError(f"curves option {name!r} is not a training knob of a point")
    base = CurvesConfig()
    return CurvesConfig(
        recipes=base.recipes if recipes is None else tuple(recipes),
        shots=base.shots if shots is None else tuple(shots),
        seeds=base.seeds if seeds is None else tuple(seeds),
        train=replace(TRAIN, **{k: v for k, v in train.items() if v is not None}),
        max_warmup_share=base.max_warmup_share if max_warmup_share is None else max_warmup_share,
    )


# --- long-tail methods (`tv100.tasks.experiments.longtail`) -------------------------------

#: The methods, in the order tables and figures show them.
LONGTAIL_METHODS = (
    "ce",
    "balanced_sampling",
    "logit_adjust_posthoc",
    "logit_adjust_loss",
    "class_balanced_loss",
    "crt",
)
#: Recipes the methods apply to.
LONGTAIL_RECIPES = ("linear", "finetune")
#: Long-tail knobs of `TrainConfig`, reset to plain cross-entropy before a method sets one.
_PLAIN: dict[str, Any] = {"sampling": "uniform", "logit_adjust_tau": 0.0, "loss": "ce",
                          "posthoc_tau": 0.0, "crt": False}


def method_knobs(method: str, tau: float = 1.0, cb_beta: float = 0.999) -> dict[str, Any]:
    """The `TrainConfig` fields `method` sets (on top of plain cross-entropy).

    Args:
        method: one of `LONGTAIL_METHODS`.
        tau: τ of both logit adjustments (post hoc and in the loss).
        cb_beta: β of the class-balanced loss.

    Raises:
        ValueError: an unknown method.
    """
    knobs: dict[str, dict[str, Any]] = {
        "ce": {},
        "balanced_sampling": {"sampling": "balanced"},
        "logit_adjust_posthoc": {"posthoc_tau": float(tau)},
        "logit_adjust_loss": {"logit_adjust_tau": float(tau)},
        "class_balanced_loss": {"loss": "class_balanced", "cb_beta": float(cb_beta)},
        "crt": {"crt": True},
    }
    if method not in knobs:
        raise ValueError(f"long-tail method {method!r} is unknown; expected one of "
                         f"{LONGTAIL_METHODS}")
    return dict(knobs[method])


def _check_int(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"LongtailConfig.{name}={v!r}; expected an integer in {lo}..{hi}")


def _check_float(name: str, v: Any, lo: float, hi: float, bound: str) -> None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or not lo <= v <= hi or (bound[0] == "(" and v == lo) or (
            bound[-1] == ")" and v == hi):
        raise ValueError(f"LongtailConfig.{name}={v!r}; expected x in {bound}")


@dataclass(frozen=True)
class LongtailConfig:
    """The long-tail comparison: which recipe, methods, seeds and training knobs.

    The defaults suit the sandbox demo's CLIP (a small ViT trained from scratch: a large
    step, few epochs, as `tv100 demo` fine-tunes it); a real CLIP wants ``lr=1e-5`` and
    more warm-up.

    Attributes:
        recipe: ``finetune`` (default; the tower learns, so the methods that only re-weight
            the classifier differ from those that shape the features) or ``linear`` (frozen
            features: seconds per run, and the same numbers for every seed).
        methods: which of `LONGTAIL_METHODS`, in the order given (at least one, no repeats).
        seeds: the seeds of every method (at least one, no repeats; 0..2**63-1); the
            summary is mean ± sample std over them.
        epochs: fine-tuning epochs (1..10000).
        lr: peak learning rate of fine-tuning (0 < lr <= 1).
        batch_size: images per step (1..65536).
        warmup_steps: linear warm-up steps (0..10**9).
        tau: τ of both logit adjustments (0 < τ <= 10; 1 is the Bayes-optimal choice for
            balanced error).
        cb_beta: β of the class-balanced loss (0 < β < 1).
        select_by: what the val sweeps of the L2 penalty maximise (``linear``, cRT's second
            stage): ``balanced_accuracy`` (default; val is as long-tailed as train, and its
            top-1 picks penalties that favour the head) or ``top1`` (the train stage's rule).
        train: every other knob (weight decay, augmentation, probe sweep, templates, threads,
            workers); its recipe, seed, the knobs above and the long-tail knobs are replaced.
    """

    recipe: str = "finetune"
    methods: tuple[str, ...] = LONGTAIL_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 6
    lr: float = 5e-4
    batch_size: int = 32
    warmup_steps: int = 20
    tau: float = 1.0
    cb_beta: float = 0.999
    select_by: str = "balanced_accuracy"
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.recipe not in LONGTAIL_RECIPES:
            raise ValueError(f"LongtailConfig.recipe={self.recipe!r}; expected one of "
                             f"{LONGTAIL_RECIPES}")
        if (not isinstance(self.methods, tuple) or not self.methods
                or len(set(self.methods)) != len(self.methods)):
            raise ValueError(f"LongtailConfig.methods={self.methods!r}; expected a non-empty "
                             f"tuple of distinct names from {LONGTAIL_METHODS}")
        bad = [m for m in self.methods if m not in LONGTAIL_METHODS]
        if bad:
            raise ValueError(f"long-tail method {bad[0]!r} is unknown; expected one of "
                             f"{LONGTAIL_METHODS}")
        if (not isinstance(self.seeds, tuple) or not self.seeds
                or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"LongtailConfig.seeds={self.seeds!r}; expected a non-empty "
                             "tuple of distinct integers")
        for s in self.seeds:
            _check_int("seeds", s, 0, 2**63 - 1)
        _check_int("epochs", self.epochs, 1, 10_000)
        _check_int("batch_size", self.batch_size, 1, 65_536)
        _check_int("warmup_steps", self.warmup_steps, 0, 10**9)
        _check_float("lr", self.lr, 0.0, 1.0, "(0, 1]")
        _check_float("tau", self.tau, 0.0, 10.0, "(0, 10]")
        _check_float("cb_beta", self.cb_beta, 0.0, 1.0, "(0, 1)")
        if self.select_by not in SELECT_METRICS:
            raise ValueError(f"LongtailConfig.select_by={self.select_by!r}; expected one of "
                             f"{SELECT_METRICS}")
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"LongtailConfig.train={self.train!r}; expected a TrainConfig")

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The `TrainConfig` of one run: `train` with this recipe, seed and knobs, and the
        long-tail knobs of `method` on top of plain cross-entropy."""
        return replace(
            self.train, recipe=self.recipe, seed=seed, epochs=self.epochs, lr=self.lr,
            batch_size=self.batch_size, warmup_steps=self.warmup_steps,
            select_by=self.select_by, **{**_PLAIN, **method_knobs(method, self.tau, self.cb_beta)},
        )

    def runs(self) -> list[tuple[str, int, TrainConfig]]:
        """``(method, seed, config)`` of every run, methods outer, seeds inner."""
        return [(m, s, self.train_config(m, s)) for m in self.methods for s in self.seeds]
