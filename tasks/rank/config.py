"""The rank stage's settings and results: every default of the stage is defined here, once.

`RankConfig` bundles the four steps' knobs (`EmbedConfig`, `RelevanceConfig`,
`ZeroShotConfig`, `SelectConfig`) with the models; `tv100.flows.rank.rank_flow` builds one from its
parameters and returns a `RankResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tv100.tasks.rank.models import ModelSpec

#: The paper's models are OpenAI's RN50, ViT-B/16 and ViT-L/14; one keeps a weekly CPU
#: build affordable. Pass ``--model`` several times for the "unseen by all" ranking.
DEFAULT_MODELS: tuple[str, ...] = ("ViT-B-16@openai",)

#: The paper's single zero-shot prompt.
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of the TV series {}",)

#: A small template ensemble for `ZeroShotConfig.templates` (optional).
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a photo of the TV series {}",
    "a still from the TV series {}",
    "a scene from {}",
    "{}, a TV series",
    "a screenshot of the show {}",
)

#: How several models' accuracies combine into one per series (`SelectConfig.aggregate`):
#: ``max`` and ``mean`` rank on one number; the consensus ones (`CONSENSUS`) first count the
#: models that find a series unseen (`tv100.tasks.rank.select`).
AGGREGATES = ("max", "mean", "all", "vote")
#: The consensus aggregates: ``all`` (unseen by every model), ``vote`` (by `min_unseen`).
CONSENSUS = ("all", "vote")
#: The lowest default seen threshold: a model whose top-1 on a series is above
#: ``max(2 / n_classes, SEEN_FLOOR)`` has seen it (`SelectConfig.seen_threshold`).
SEEN_FLOOR = 0.1
#: Most models one selection may count votes over (`SelectConfig.min_unseen`).
MAX_MODELS = 100


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Validate prompt templates: each has exactly one ``{}`` placeholder.

    Raises:
        ValueError: naming the bad template.
    """
    if isinstance(templates, str) or not templates:
        raise ValueError(f"templates={templates!r}; expected a non-empty sequence of strings")
    out = []
    for t in templates:
        try:
            ok = isinstance(t, str) and t.count("{}") == 1 and t.format("\x00") != t
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"prompt template {t!r} is invalid; expected one '{{}}' placeholder and no "
                "other braces, e.g. 'a photo of the TV series {}'"
            )
        out.append(t)
    return tuple(out)


def check_device(owner: str, device: str) -> None:
    """Raise ValueError unless `device` is ``auto``, ``cpu`` or ``cuda[:N]``."""
    if not (device == "auto" or device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"{owner}.device={device!r}; expected 'auto', 'cpu' or 'cuda[:N]'")


@dataclass(frozen=True)
class EmbedConfig:
    """Knobs of the embedding stage.

    Attributes:
        batch_size: images per forward pass (1..4096).
        workers: DataLoader worker processes decoding ahead (0..64); None: the cores left
            over by the torch threads, at most 4, none for small inputs
            (`tv100.tasks.rank.embed.plan_parallelism`).
        threads: torch intra-op threads (1..1024); None: ``min(2, cpu_count)``.
        shard_size: images per shard of the table (1..1000000): the unit of resumption.
        prefetch_batches: batches each worker keeps ready (1..64).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ...
        compact: fold the shards into the whole table at the end.
        draft: decode JPEGs at reduced scale (libjpeg's DCT scaling, 1/2 to 1/8: an 8x8
            block average, no aliasing) while their short side stays at least the model's
            input side; False decodes every pixel, bit for bit what a plain ``Image.open`` +
            preprocess loop sees.
    """

    batch_size: int = 64
    workers: int | None = None
    threads: int | None = None
    shard_size: int = 4096
    prefetch_batches: int = 2
    device: str = "auto"
    compact: bool = True
    draft: bool = True

    def __post_init__(self) -> None:
        checks: dict[str, tuple[int | None, int, int]] = {
            "batch_size": (self.batch_size, 1, 4096),
            "workers": (self.workers, 0, 64),
            "threads": (self.threads, 1, 1024),
            "shard_size": (self.shard_size, 1, 1_000_000),
            "prefetch_batches": (self.prefetch_batches, 1, 64),
        }
        for name, (value, lo, hi) in checks.items():
            if value is not None and not lo <= value <= hi:
                raise ValueError(f"EmbedConfig.{name}={value!r}; expected {lo}..{hi}")
        check_device("EmbedConfig", self.device)


@dataclass(frozen=True)
class ZeroShotConfig:
    """Knobs of zero-shot classification.

    Attributes:
        templates: prompt templates, one ``{}`` each (the paper: a single one).
        logit_scale: softmax temperature on cosine similarities (1..1000; CLIP's is 100).
        top_k: the "top-k" accuracy reported as ``top5`` (1..100; 5 as in the paper).
        classes_per_batch: class names per text forward pass (1..4096).
        threads: torch threads (1..1024; None: ``min(2, cpu_count)``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda[:N]``.
    """

    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    logit_scale: float = 100.0
    top_k: int = 5
    classes_per_batch: int = 64
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_templates(self.templates)
        if not 1.0 <= self.logit_scale <= 1000.0:
            raise ValueError(f"ZeroShotConfig.logit_scale={self.logit_scale!r}; expected 1..1000")
        if not 1 <= self.top_k <= 100:
            raise ValueError(f"ZeroShotConfig.top_k={self.top_k!r}; expected 1..100")
        if not 1 <= self.classes_per_batch <= 4096:
            raise ValueError(
                f"ZeroShotConfig.classes_per_batch={self.classes_per_batch!r}; expected 1..4096"
            )
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ValueError(f"ZeroShotConfig.threads={self.threads!r}; expected 1..1024")
        check_device("ZeroShotConfig", self.device)


@dataclass(frozen=True)
class SelectConfig:
    """Knobs of class selection (`tv100.tasks.rank.select.select_classes`).

    A model has *seen* a series when its zero-shot top-1 on the series' images is above the
    seen threshold, and finds it *unseen* at or below it (the rerank flow's rule,
    `tv100.tasks.snapshots.rerank.default_threshold`, so a class kept as unseen stays
    "still unseen" there under the same models). The default, ``max(2 / n_classes, 0.1)``
    (twice chance among the candidates, never below 10%), was measured on three sandbox
    CLIPs (`tv100.sandbox.pretrain`, seeds 0-2), each pre-trained on a different seeded half
    of the 48 candidates, over 20 served images a series: top-1 of a model on a series it
    was trained on 0.75-1.00 (mean 0.98; 72 pairs), on one it was not 0.00 (all 72), so any
    bar in 0..0.75 splits them: ``all`` keeps exactly the 7 series no model was trained on,
    ``vote`` with `min_unseen` 2 the 22 at most one model was (asked for 10, ``max`` keeps
    those 7 and 3 that one model knows, ``all`` the 7 only). The 10% floor guards the other
    side, a series a model guesses at chance on: among 48 candidates it scores above 0.1
    with probability 1.7% on 10 images, 0.8% on 20 (binomial), ~0 with 100 images or 1,000
    candidates.

    Attributes:
        k: series to keep (1..100000; the paper keeps 100).
        min_images: fewest cleaned images a kept series needs (0..10000000).
        aggregate: how the models' top-1 combine (`AGGREGATES`): ``max`` (a series is as
            easy as the best model finds it: novel means unseen by all) or ``mean`` over the
            models rank on that one number; ``all`` keeps only series every model that
            classified them finds unseen, ``vote`` those at least `min_unseen` models find
            unseen, ranked by how many models find them unseen, then by mean top-1.
        min_unseen: with ``vote``, the fewest models that must find a series unseen
            (1..100, at most the models ranked; None: a strict majority, ``n // 2 + 1``);
            ignored by the other aggregates.
        seen_threshold: with ``all`` and ``vote``, the top-1 above which a model has seen a
            series (0..1; None: ``max(2 / n_classes, 0.1)``); ignored by ``max``/``mean``.
    """

    k: int = 100
    min_images: int = 100
    aggregate: str = "max"
    min_unseen: int | None = None
    seen_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 100_000:
            raise ValueError(f"SelectConfig.k={self.k!r}; expected 1..100000")
        if not 0 <= self.min_images <= 10_000_000:
            raise ValueError(f"SelectConfig.min_images={self.min_images!r}; expected 0..10000000")
        if self.aggregate not in AGGREGATES:
            raise ValueError(
                f"SelectConfig.aggregate={self.aggregate!r}; expected one of {AGGREGATES}"
            )
        votes = self.min_unseen
        if votes is not None and (
            isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= MAX_MODELS
        ):
            raise ValueError(
                f"SelectConfig.min_unseen={votes!r}; expected an integer 1..{MAX_MODELS} "
                "(models that must find a series unseen)"
            )
        bar = self.seen_threshold
        if bar is not None and (
            isinstance(bar, bool) or not isinstance(bar, int | float) or not 0.0 <= bar <= 1.0
        ):
            raise ValueError(
                f"SelectConfig.seen_threshold={bar!r}; expected 0..1 (the top-1 above which "
                "a model has seen a series)"
            )

    def votes_needed(self, n_models: int) -> int | None:
        """Models that must find a series unseen for it to be kept, among `n_models`.

        Returns:
            `min_unseen` (default a strict majority) with ``vote``; `n_models` with ``all``
            (each series needs every model that classified it); None with ``max``/``mean``.

        Raises:
            ValueError: `min_unseen` above `n_models`.
        """
        if self.aggregate == "all":
            return n_models
        if self.aggregate != "vote":
            return None
        votes = n_models // 2 + 1 if self.min_unseen is None else self.min_unseen
        if votes > n_models:
            raise ValueError(
                f"SelectConfig.min_unseen={votes!r}; expected 1..{n_models} (the models ranked)"
            )
        return votes


@dataclass(frozen=True)
class RelevanceConfig:
    """Knobs of relevance scoring (`tv100.tasks.rank.relevance`), run on the first model's
    vectors before zero-shot ranking.

    The defaults were measured on two kinds of vectors, scored by precision and recall over
    both planted kinds: the sandbox demo's own pipeline (its CLIP's vectors of 2,455 cleaned
    images of 48 series, 354 of them irrelevant; heavy-tailed: 1% of relevant images lie
    beyond a robust z of 12) and `tv100.sandbox.labelnoise` (Gaussian-like; 20,000 images,
    100 series, seeds 0-4). A fixed `outlier_z` fits one or the other (3: the synthetic
    vectors at 0.99 / 0.99 but the demo at precision 0.71; 8: the demo at 0.93 / 0.94 but
    the synthetic recall at 0.6), so the bar adapts to the tail of the confidently
    labelled images (`tail_quantile` x `tail_factor`: 8.6-10.5 on the demo's vectors,
    3.3-3.5 on the synthetic ones). A grid of `tail_quantile` (0.99, 0.995), `tail_factor`
    (1.25..2), `other_share` (0.3..0.6) and `stray_share` (0.4..1) scored by the worst of
    precision and recall on the demo and synthetic seeds 0 and 3 chose (0.995, 1.5, 0.4,
    0.8): 0.927 / 0.927 on the demo, >= 0.957 on the synthetic seeds (neighbours 5, 10, 20
    tried: 10). Demo figures in README, synthetic ones in
    ``tests/tasks/rank/test_relevance.py``. `logit_scale` 100 (CLIP's) ranks other-series
    images above off-topic ones in cleanlab's count (at 30, a tenth of them were missed on
    the synthetic vectors).

    Attributes:
        enabled: score relevance and leave `irrelevant` images out of ranking and training;
            False keeps every image the scorer would judge (rows with method ``off``; human
            reviews still apply).
        folds: folds of the out-of-fold probabilities (2..20).
        logit_scale: softmax temperature on the cosine to each series' centroid (1..1000).
        neighbours: nearest images of a series an image's fit averages (1..1000).
        outlier_z: the least robust z of the fit in its own series above which an image is
            an outlier (0.5..100); the bar itself adapts (`tail_quantile`).
        tail_quantile: quantile of the confidently labelled images' z that sets the bar
            (0.5..1).
        tail_factor: the bar is this many times that quantile (0.5..10).
        confident_score: out-of-fold probability of its own series from which an image is
            confidently labelled (0..1).
        other_share: an ``other_series`` image strays from its own series beyond this share
            of the outlier bar (0..1).
        stray_share: an image cleanlab flags that strays beyond this share of the bar is
            ``offtopic`` even if it is no outlier (0..1).
        fit_z: robust z of the fit in the suspected series at most which an image is one of
            that series' (0..100).
        min_series_images: fewest images a series needs to be judged (2..1000000); a
            smaller one keeps all its images.
        chunk: images per block of probabilities (1..1000000): memory is ``chunk * series``
            float32.
        seed: the folds' seed (0..2**32-1).
    """

    enabled: bool = True
    folds: int = 5
    logit_scale: float = 100.0
    neighbours: int = 10
    outlier_z: float = 3.0
    tail_quantile: float = 0.995
    tail_factor: float = 1.5
    confident_score: float = 0.5
    other_share: float = 0.4
    stray_share: float = 0.8
    fit_z: float = 2.0
    min_series_images: int = 20
    chunk: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"RelevanceConfig.enabled={self.enabled!r}; expected True or False")
        checks: dict[str, tuple[float, float, float]] = {
            "folds": (self.folds, 2, 20),
            "logit_scale": (self.logit_scale, 1.0, 1000.0),
            "neighbours": (self.neighbours, 1, 1000),
            "outlier_z": (self.outlier_z, 0.5, 100.0),
            "tail_quantile": (self.tail_quantile, 0.5, 1.0),
            "tail_factor": (self.tail_factor, 0.5, 10.0),
            "confident_score": (self.confident_score, 0.0, 1.0),
            "other_share": (self.other_share, 0.0, 1.0),
            "stray_share": (self.stray_share, 0.0, 1.0),
            "fit_z": (self.fit_z, 0.0, 100.0),
            "min_series_images": (self.min_series_images, 2, 1_000_000),
            "chunk": (self.chunk, 1, 1_000_000),
            "seed": (self.seed, 0, 2**32 - 1),
        }
        for name, (value, lo, hi) in checks.items():
            if isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"RelevanceConfig.{name}={value!r}; expected {lo}..{hi}")
        for name in ("folds", "neighbours", "min_series_images", "chunk", "seed"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(
                    f"RelevanceConfig.{name}={getattr(self, name)!r}; expected an integer"
                )


def check_models(owner: str, models: Sequence[str]) -> tuple[str, ...]:
    """Validate model specs (`ModelSpec.parse`); return them as a tuple.

    Raises:
        ValueError: no model, or one that does not parse (the message names it).
    """
    if isinstance(models, str) or not models:
        raise ValueError(f"{owner}.models={models!r}; expected one or more CLIP specs")
    for m in models:
        try:
            ModelSpec.parse(m)
        except ValueError as err:
            raise ValueError(f"{owner}.models: {m!r}: {err}") from err
    return tuple(models)


@dataclass(frozen=True)
class RankConfig:
    """Everything one rank run needs.

    Attributes:
        models: CLIPs as ``ARCH@WEIGHTS`` or ``local-dir:FOLDER`` (at least one).
        embed: how images are embedded.
        relevance: which images are relevant to their series (before ranking).
        zeroshot: how they are classified.
        select: which series are kept.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    select: SelectConfig = field(default_factory=SelectConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", check_models("RankConfig", self.models))


@dataclass(frozen=True)
class EmbedSummary:
    """What one `tv100.tasks.rank.embed.embed_images` call did.

    Attributes:
        model_key: the model's key.
        images: distinct input images.
        embedded_now: images encoded by this call.
        failed_now: images this call could not read or decode (rows with a null vector).
        already: images that had a row for this model before the call.
        shards: shards written by this call.
        table_sha256: the compacted table's content hash, a cache key for later stages
            (None without compaction or when nothing was ever written).
    """

    model_key: str
    images: int
    embedded_now: int
    failed_now: int
    already: int
    shards: int
    table_sha256: str | None


@dataclass(frozen=True)
class SeriesAccuracy:
    """One series in a ranking summary (`RankResult.hardest` / `easiest`)."""

    series_id: str
    title: str | None
    accuracy: float | None
    kept: bool
    reason: str


@dataclass(frozen=True)
class SelectionSummary:
    """The kept series next to the chance level (`tv100.tasks.rank.select.summarize`).

    Attributes:
        candidates: series CLIP chose among.
        kept: series kept.
        chance: 1 / candidates (None without candidates).
        kept_mean_accuracy: mean top-1 of the kept series (None when none).
        dropped_mean_accuracy: mean top-1 of the other classified series.
        hardest: the lowest accuracies, hardest first.
        easiest: the highest accuracies, easiest first.
    """

    candidates: int
    kept: int
    chance: float | None
    kept_mean_accuracy: float | None
    dropped_mean_accuracy: float | None
    hardest: tuple[SeriesAccuracy, ...]
    easiest: tuple[SeriesAccuracy, ...]


@dataclass(frozen=True)
class RankResult:
    """What `tv100.flows.rank.rank_flow` returns.

    Attributes:
        selection: the kept series next to chance, hardest and easiest.
        overall_top1: per model key, top-1 accuracy over all images (micro average).
        tables: ``{table: sha256}`` of the tables written (`zeroshot`, `classes`,
            `rank_models`).
        embedded_now: per model key, images this run encoded; the others already had
            their vector (a refresh encodes the new images only).
    """

    selection: SelectionSummary
    overall_top1: dict[str, float]
    tables: dict[str, str]
    embedded_now: dict[str, int] = field(default_factory=dict)


#: The defaults, for flow parameters and the CLI (one source of truth).
EMBED = EmbedConfig()
RELEVANCE = RelevanceConfig()
ZEROSHOT = ZeroShotConfig()
SELECT = SelectConfig()
