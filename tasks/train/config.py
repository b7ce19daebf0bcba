"""The train stage's names, knobs and results: recipes, samplings, `TrainConfig`,
`SplitConfig`, the stage's `TrainStageConfig`, and the `TrainResult` the flow returns.

Every recipe name, sampling name and default of the stage is defined here once; the CLI,
the flows, the report and the artifacts import them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, check_templates

#: The recipes, in the order figures and tables show them.
RECIPES = ("zeroshot", "linear", "finetune", "wiseft")
#: Recipes a build runs by default: the paper's figure (d) plus the cheap probe.
DEFAULT_RECIPES = ("zeroshot", "linear", "finetune")
#: ``uniform``: every training image once per epoch, shuffled. ``balanced``: images drawn
#: with replacement so every class is equally likely. ``sqrt``: class probability
#: proportional to the square root of its image count (between the two).
SAMPLINGS = ("uniform", "balanced", "sqrt")
#: Training losses. ``ce``: cross-entropy. ``class_balanced``: cross-entropy weighted per
#: class by the inverse effective number of samples (Cui et al. 2019; `TrainConfig.cb_beta`).
LOSSES = ("ce", "class_balanced")
#: What the probe's penalty sweep (``linear``, and cRT's second stage) maximises on val.
#: ``balanced_accuracy`` suits the long-tail methods: val is as long-tailed as train, and
#: its top-1 favours the penalty that favours the head classes.
SELECT_METRICS = ("top1", "balanced_accuracy")
SPLIT_NAMES = ("train", "val", "test")
#: The splits every recipe scores.
EVAL_SPLITS = ("val", "test")
#: Where the ImageFolder/CSV export goes, inside the data root.
EXPORT_DIR = "export"
#: Whether a train run writes the split folders under `EXPORT_DIR` by default.
EXPORT_SPLITS = True
#: The scalar metrics of a run the stage summary shows (`RunSummary`).
SUMMARY_METRICS = ("top1", "top5", "balanced_accuracy", "many", "medium", "few")


def _check_int(owner: str, name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{owner}.{name}={v!r}; expected an integer in {lo}..{hi}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of a recipe run. Only those a recipe uses go into its run id.

    Attributes:
        recipe: one of `RECIPES`.
        epochs: fine-tuning epochs (1..10000).
        batch_size: images per training step and per evaluation batch (1..65536).
        lr: peak AdamW learning rate (0 < lr <= 1); real CLIPs want ~1e-5.
        weight_decay: AdamW decoupled weight decay on matrices (0..10); gains, biases,
            embeddings and the logit scale are not decayed.
        warmup_steps: steps of linear warm-up before the cosine decay to 0 (0..10**9).
        grad_clip: max global gradient norm (0..1e6; 0 turns clipping off).
        sampling: one of `SAMPLINGS` (long-tail option).
        logit_adjust_tau: τ of the logit-adjusted loss (0..10; 0 turns it off).
        loss: one of `LOSSES` (long-tail option).
        cb_beta: β of the class-balanced loss (0 <= β < 1): class c weighs
            ``(1 - β) / (1 - β^n_c)``, normalised to sum to the class count; 0 is plain
            cross-entropy, β → 1 inverse class frequency.
        posthoc_tau: τ of post-hoc logit adjustment (0..10; 0 turns it off): the
            plainly trained model's scores minus ``τ · log prior`` (Menon et al. 2021).
            Training is the run without it (a fine-tune run is reused); the choices on val
            (penalty, α) are made on the unadjusted scores.
        crt: classifier re-training (Kang et al. 2020), ``linear`` and ``finetune`` only.
            Stage 1 is the plain run (cross-entropy, uniform sampling; for ``finetune`` the
            fine-tune run of the other knobs, reused); stage 2 freezes its representation
            and re-fits the linear classifier with class-balanced re-weighting (the
            full-batch form of balanced sampling). ``finetune``: the tuned tower's features
            of the training images (no augmentation), the classifier re-initialised and its
            L2 penalty swept on val over `probe_weight_decays`. ``linear`` (the features
            are frozen already): the stage-1 probe re-fitted from its own weights at its
            penalty, i.e. the balanced probe at the penalty plain cross-entropy chose.
            Needs sampling ``uniform``, logit_adjust_tau 0 and loss ``ce``.
        select_by: one of `SELECT_METRICS`: what the L2 penalty sweeps of ``linear`` and
            of cRT maximise on val (WiSE-FT's α is chosen on top-1 whatever it says).
        crop_min_scale: smallest area share of the random resized crop (0 < s <= 1; 1 and
            `hflip` 0 mean no augmentation).
        hflip: probability of a horizontal flip (0..1).
        wiseft_alphas: the α swept on val by ``wiseft`` (each in 0..1, at least one).
        probe_weight_decays: L2 penalties swept on val by ``linear`` (each 0..1e3; the
            loss is mean cross-entropy + wd/2·‖W‖², i.e. sklearn's C = 1/(wd · n_train)).
        probe_max_iter: L-BFGS iterations per probe fit (1..100000); the fits run from
            the strongest penalty down, each warm-started from the previous one.
        templates: prompt templates of the zero-shot weights (and the fine-tune head init).
        seed: seeds initialisation, data order and augmentation (0..2**63-1).
        threads: torch intra-op threads (None: ``min(2, cpu_count)``; 1..1024).
        workers: DataLoader worker processes (0..64); keep threads + workers within the
            free cores on a shared machine.
    """

    recipe: str = "finetune"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 500
    grad_clip: float = 1.0
    sampling: str = "uniform"
    logit_adjust_tau: float = 0.0
    loss: str = "ce"
    cb_beta: float = 0.999
    posthoc_tau: float = 0.0
    crt: bool = False
    select_by: str = "top1"
    crop_min_scale: float = 0.6
    hflip: float = 0.5
    wiseft_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    probe_weight_decays: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    probe_max_iter: int = 300
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    seed: int = 0
    threads: int | None = field(default=None, compare=False)
    workers: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"TrainConfig.recipe={self.recipe!r}; expected one of {RECIPES}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(
                f"TrainConfig.sampling={self.sampling!r}; expected one of {SAMPLINGS}"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss={self.loss!r}; expected one of {LOSSES}")
        if self.select_by not in SELECT_METRICS:
            raise ValueError(
                f"TrainConfig.select_by={self.select_by!r}; expected one of {SELECT_METRICS}"
            )
        if not isinstance(self.crt, bool):
            raise ValueError(f"TrainConfig.crt={self.crt!r}; expected True or False")
        for name, lo, hi in (
            ("epochs", 1, 10_000),
            ("batch_size", 1, 65_536),
            ("warmup_steps", 0, 10**9),
            ("probe_max_iter", 1, 100_000),
            ("seed", 0, 2**63 - 1),
            ("workers", 0, 64),
        ):
            _check_int("TrainConfig", name, getattr(self, name), lo, hi)
        if self.threads is not None and (
            isinstance(self.threads, bool)
            or not isinstance(self.threads, int)
            or not 1 <= self.threads <= 1024
        ):
            raise ValueError(f"TrainConfig.threads={self.threads!r}; expected 1..1024 or None")
        for name, flo, fhi, open_lo in (
            ("lr", 0.0, 1.0, True),
            ("weight_decay", 0.0, 10.0, False),
            ("grad_clip", 0.0, 1e6, False),
            ("logit_adjust_tau", 0.0, 10.0, False),
            ("posthoc_tau", 0.0, 10.0, False),
            ("crop_min_scale", 0.0, 1.0, True),
            ("hflip", 0.0, 1.0, False),
        ):
            v = getattr(self, name)
            if not _is_number(v) or not ((flo < v) if open_lo else (flo <= v)) or v > fhi:
                bound = f"{flo} < x <= {fhi}" if open_lo else f"{flo} <= x <= {fhi}"
                raise ValueError(f"TrainConfig.{name}={v!r}; expected {bound}")
        if not _is_number(self.cb_beta) or not 0.0 <= self.cb_beta < 1.0:
            raise ValueError(f"TrainConfig.cb_beta={self.cb_beta!r}; expected 0.0 <= x < 1.0")
        if self.crt and (self.sampling, self.logit_adjust_tau, self.loss) != ("uniform", 0, "ce"):
            raise ValueError(
                f"TrainConfig.crt=True with sampling={self.sampling!r}, "
                f"logit_adjust_tau={self.logit_adjust_tau!r}, loss={self.loss!r}; expected "
                "sampling='uniform', logit_adjust_tau=0 and loss='ce' (cRT re-trains the "
                "classifier of a plain run, itself class-balanced)"
            )
        for name, top in (("wiseft_alphas", 1.0), ("probe_weight_decays", 1e3)):
            vs = getattr(self, name)
            if (
                not isinstance(vs, tuple)
                or not vs
                or not all(_is_number(v) and 0 <= v <= top for v in vs)
            ):
                raise ValueError(
                    f"TrainConfig.{name}={vs!r}; expected a non-empty tuple of numbers in "
                    f"0..{top}"
                )
        if not isinstance(self.templates, tuple):
            raise ValueError(f"TrainConfig.templates={self.templates!r}; expected a tuple")
        check_templates(self.templates)

    def knobs(self) -> dict[str, Any]:
        """The knobs `recipe` uses (what its run id hashes), as JSON-ready values.

        `loss` (with `cb_beta`), `posthoc_tau`, `crt` and `select_by` came later: they enter
        only when set away from their defaults, so the ids of runs without them stay as
        they were.
        """
        r = self.recipe
        out: dict[str, Any] = {"seed": self.seed}
        if r in ("zeroshot", "finetune", "wiseft"):
            out["templates"] = list(self.templates)
        if r in ("linear", "finetune", "wiseft"):
            out["sampling"] = self.sampling
            out["logit_adjust_tau"] = float(self.logit_adjust_tau)
            if self.loss != "ce":
                out["loss"] = self.loss
                out["cb_beta"] = float(self.cb_beta)
            if self.posthoc_tau > 0:
                out["posthoc_tau"] = float(self.posthoc_tau)
        if r in ("linear", "finetune") and self.crt:
            out["crt"] = True
        if r == "finetune" and self.crt:
            out["probe_weight_decays"] = [float(v) for v in self.probe_weight_decays]
            out["probe_max_iter"] = self.probe_max_iter
        if (r == "linear" or (r == "finetune" and self.crt)) and self.select_by != "top1":
            out["select_by"] = self.select_by
        if r == "linear":
            out["probe_weight_decays"] = [float(v) for v in self.probe_weight_decays]
            out["probe_max_iter"] = self.probe_max_iter
            out["batch_size"] = self.batch_size
        if r in ("finetune", "wiseft"):
            out.update(
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                warmup_steps=self.warmup_steps,
                grad_clip=float(self.grad_clip),
                crop_min_scale=float(self.crop_min_scale),
                hflip=float(self.hflip),
            )
        if r == "wiseft":
            out["wiseft_alphas"] = [float(v) for v in self.wiseft_alphas]
        return out

    def with_recipe(self, recipe: str) -> TrainConfig:
        """The same knobs for another recipe (validated again)."""
        return replace(self, recipe=recipe)

    def training_config(self) -> TrainConfig:
        """The fine-tune run that ``finetune`` and ``wiseft`` train or reuse: recipe
        ``finetune`` without the knobs that act after training (`posthoc_tau`, `crt`).

        Its `knobs` name the run's checkpoint folder, so a post-hoc or cRT run, a plain
        fine-tune and WiSE-FT with otherwise equal knobs share one training.
        """
        return replace(self, recipe="finetune", posthoc_tau=0.0, crt=False)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name (``TrainConfig(**cfg.as_dict())`` rebuilds it)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class SplitConfig:
    """Split ratios and seed.

    Args:
        test_ratio: share of each series' images held out for test (at least one image).
        val_ratio: share carved from the rest for validation (model selection, sweeps).
        seed: changes which images land where, deterministically.
    """

    test_ratio: float = 0.2
    val_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("test_ratio", "val_ratio"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0 <= v < 1:
                raise ValueError(f"SplitConfig.{name}={v!r} is invalid; expected 0 <= x < 1")
        if self.test_ratio + self.val_ratio >= 1:
            raise ValueError(
                f"SplitConfig test_ratio + val_ratio = {self.test_ratio + self.val_ratio} "
                "leaves nothing to train on; expected a sum < 1"
            )


#: Defaults of the train flow's parameters.
TRAIN = TrainConfig()
SPLIT = SplitConfig()
LEAKAGE = NearDupConfig()


def check_recipe_tuple(owner: str, recipes: Any, distinct: bool = False) -> None:
    """Raise a one-line ValueError unless `recipes` is a non-empty tuple of `RECIPES`
    (without repeats when `distinct`), naming `owner`'s field."""
    if (
        not isinstance(recipes, tuple)
        or not recipes
        or (distinct and len(set(recipes)) != len(recipes))
    ):
        what = "distinct recipes of " if distinct else ""
        raise ValueError(
            f"{owner}.recipes={recipes!r}; expected a non-empty tuple of {what}{RECIPES}"
        )
    bad = [r for r in recipes if r not in RECIPES]
    if bad:
        raise ValueError(f"recipe {bad[0]!r} is unknown; expected one of {RECIPES}")


@dataclass(frozen=True)
class TrainStageConfig:
    """Everything the train flow does, validated once.

    Attributes:
        model: the CLIP every recipe starts from (``ARCH@WEIGHTS`` or ``local-dir:FOLDER``).
        recipes: which of `RECIPES` to run, in this order (at least one).
        split: ratios and seed of the split.
        leakage: near-duplicate thresholds and the action on a leaking held-out image.
        clip_leakage: also link held-out images by CLIP similarity (above
            ``leakage.clip_threshold``, from the rank stage's embeddings).
        export: write ``<root>/export/{train,val,test}/<class>/`` and open_clip CSVs.
        train: the recipes' knobs (its `recipe` field is replaced per recipe).
        device: None (CUDA when present) or e.g. ``cpu``.
    """

    model: str
    recipes: tuple[str, ...] = DEFAULT_RECIPES
    split: SplitConfig = SPLIT
    leakage: NearDupConfig = LEAKAGE
    clip_leakage: bool = False
    export: bool = EXPORT_SPLITS
    train: TrainConfig = TRAIN
    device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"TrainStageConfig.model={self.model!r}; expected a model spec")
        check_recipe_tuple("TrainStageConfig", self.recipes)

    def recipe_configs(self) -> tuple[TrainConfig, ...]:
        """One `TrainConfig` per recipe, in `recipes` order."""
        return tuple(self.train.with_recipe(r) for r in self.recipes)


@dataclass(frozen=True)
class RunSummary:
    """One recipe run as the stage summary shows it (test metrics, val top-1).

    A metric is None when the split had no images or the tier no class.
    """

    recipe: str
    run_id: str
    model_key: str
    resumed_from_epoch: int
    test_top1: float | None
    test_top5: float | None
    test_balanced_accuracy: float | None
    test_many: float | None
    test_medium: float | None
    test_few: float | None
    val_top1: float | None


@dataclass(frozen=True)
class TrainResult:
    """What the train flow did.

    Attributes:
        classes: number of classes (kept series).
        chance: 1 / classes.
        splits: images per split (``train``, ``val``, ``test``; splits without any absent).
        leakage: held-out images found near a train image (moved or dropped).
        exported: images exported per split, or None (export off or a remote root).
        runs: one summary per recipe, in the order they ran.
        tables: ``{table: sha256 of its Parquet bytes}`` of every table written.
    """

    classes: int
    chance: float
    splits: Mapping[str, int]
    leakage: int
    exported: Mapping[str, int] | None
    runs: tuple[RunSummary, ...]
    tables: Mapping[str, str]

    def run(self, recipe: str) -> RunSummary:
        """The summary of `recipe`'s run.

        Raises:
            KeyError: the recipe did not run.
        """
        for r in self.runs:
            if r.recipe == recipe:
                return r
        raise KeyError(f"recipe {recipe!r} did not run; ran {[r.recipe for r in self.runs]}")
