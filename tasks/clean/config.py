"""The clean stage's knobs and result: every default and threshold of the stage, defined once.

`CleanConfig` is what the clean flow, the build flow and the CLI expose; it validates its
values and hands each step its own config (`HashConfig`, `QualityConfig`, `NearDupConfig`),
so a task's cache key holds only the knobs that change its table. `CLEAN` is the default
instance: other modules take their defaults from it (``CLEAN.phash_threshold``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Bits of a pHash or dHash code (16 hex digits).
HASH_BITS = 64
#: imagehash.phash resizes to hash_size * highfreq_factor = 8 * 4 pixels square.
PHASH_SIDE = 32
#: What `NearDupConfig.leakage_action` may be.
LEAKAGE_ACTIONS = ("move_to_train", "drop")


@dataclass(frozen=True)
class HashConfig:
    """Knobs of the hashing stage.

    Attributes:
        workers: processes hashing in parallel (1 = in this process).
        fast: decode JPEGs at reduced scale (see `tv100.tasks.clean.hashing`).
        draft_size: smallest side the drafted JPEG keeps; pHash needs 32.
        chunksize: items per task sent to a worker (amortises pickling).
    """

    workers: int = 2
    fast: bool = True
    draft_size: int = 96
    chunksize: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 256:
            raise ValueError(f"HashConfig.workers={self.workers!r}; expected 1..256")
        if not PHASH_SIDE <= self.draft_size <= 4096:
            raise ValueError(
                f"HashConfig.draft_size={self.draft_size!r}; expected {PHASH_SIDE}..4096 "
                "(pHash resizes to 32x32, a smaller draft would upsample)"
            )
        if not 1 <= self.chunksize <= 10_000:
            raise ValueError(f"HashConfig.chunksize={self.chunksize!r}; expected 1..10000")


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the junk filters; an image is flagged when it falls below/above them.

    Attributes:
        min_std: blank when the largest per-channel pixel std is below this (0..128).
            5 separates flat colour plus JPEG noise (< 2) from the flattest real photos.
        min_entropy: low information when the grey histogram entropy (bits) is below
            this (0..8). 3 bits ~ 8 equally used grey levels.
        min_side: too small when the short side is below this many pixels (1..10000);
            CLIP sees 224 px, so a 100 px image is already upsampled more than 2x.
        max_aspect: extreme when long/short side exceeds this (1..100).
        analysis_size: longest side of the subsample the pixel statistics use (16..4096).
    """

    min_std: float = 5.0
    min_entropy: float = 3.0
    min_side: int = 100
    max_aspect: float = 3.0
    analysis_size: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_std <= 128.0:
            raise ValueError(f"QualityConfig.min_std={self.min_std!r}; expected 0..128")
        if not 0.0 <= self.min_entropy <= 8.0:
            raise ValueError(f"QualityConfig.min_entropy={self.min_entropy!r}; expected 0..8")
        if not 1 <= self.min_side <= 10_000:
            raise ValueError(f"QualityConfig.min_side={self.min_side!r}; expected 1..10000")
        if not 1.0 <= self.max_aspect <= 100.0:
            raise ValueError(f"QualityConfig.max_aspect={self.max_aspect!r}; expected 1..100")
        if not 16 <= self.analysis_size <= 4096:
            raise ValueError(
                f"QualityConfig.analysis_size={self.analysis_size!r}; expected 16..4096"
            )


@dataclass(frozen=True)
class NearDupConfig:
    """Knobs of near-duplicate search (`tv100.tasks.clean.groups`).

    Attributes:
        phash_threshold: max pHash Hamming distance of a ``phash`` pair (0..32). 10 is a
            placeholder until `tv100.tasks.clean.sweep.sweep_thresholds` on the sandbox
            ground truth picks one.
        dhash_threshold: max dHash distance of a ``dhash`` pair (0..32); None disables.
        dhash_phash_max: a ``dhash`` pair's pHash distance must still be <= this
            (phash_threshold..64).
        clip_threshold: cosine similarity a ``clip`` pair must exceed (0 < x < 1).
        flat_max: largest set FAISS searches with `IndexBinaryFlat` (>= 1); above,
            multi-hash (see `tv100.tasks.clean.pairs` for why the default is high). On the
            CPU, sets above `tv100.tasks.clean.pairs.MIH_MIN` codes use multi-index hashing
            instead (t <= 15).
        use_gpu: None = when available; False = never; True = when available, warning
            if not.
        drop_cross_series: drop every member of a group spanning several series.
        leakage_action: what `tv100.tasks.clean.leakage.leakage_check` does to a held-out
            image near a train image: ``move_to_train`` or ``drop``.
        train_split: the value of ``split`` naming the training set.
    """

    phash_threshold: int = 10
    dhash_threshold: int | None = 8
    dhash_phash_max: int = 20
    clip_threshold: float = 0.95
    flat_max: int = 2_000_000
    use_gpu: bool | None = None
    drop_cross_series: bool = True
    leakage_action: str = "move_to_train"
    train_split: str = "train"

    def __post_init__(self) -> None:
        if not 0 <= self.phash_threshold <= 32:
            raise ValueError(
                f"NearDupConfig.phash_threshold={self.phash_threshold!r}; expected 0..32"
            )
        if self.dhash_threshold is not None and not 0 <= self.dhash_threshold <= 32:
            raise ValueError(
                f"NearDupConfig.dhash_threshold={self.dhash_threshold!r}; expected 0..32 or None"
            )
        if not self.phash_threshold <= self.dhash_phash_max <= HASH_BITS:
            raise ValueError(
                f"NearDupConfig.dhash_phash_max={self.dhash_phash_max!r}; expected "
                f"phash_threshold ({self.phash_threshold})..{HASH_BITS}"
            )
        if not 0.0 < self.clip_threshold < 1.0:
            raise ValueError(
                f"NearDupConfig.clip_threshold={self.clip_threshold!r}; expected 0 < x < 1"
            )
        if self.flat_max < 1:
            raise ValueError(f"NearDupConfig.flat_max={self.flat_max!r}; expected >= 1")
        if self.leakage_action not in LEAKAGE_ACTIONS:
            raise ValueError(
                f"NearDupConfig.leakage_action={self.leakage_action!r}; expected one of "
                f"{', '.join(LEAKAGE_ACTIONS)}"
            )
        if not self.train_split:
            raise ValueError("NearDupConfig.train_split is empty; expected e.g. 'train'")


@dataclass(frozen=True)
class CleanConfig:
    """The clean stage's parameters (those of ``clean_flow`` and ``tv100 clean``).

    Attributes:
        phash_threshold: pHash Hamming distance (<=) that makes two images near duplicates.
        dhash_threshold: dHash distance confirming pairs a little beyond the pHash one
            (None: pHash alone).
        drop_cross_series: drop every copy of an image found under several series.
        min_side: images whose shorter side is below this are junk.
        max_aspect: images longer than this ratio are junk.
        min_std: near-uniform images (pixel std below this) are junk.
        min_entropy: low-information images (grey-level entropy in bits) are junk.
        exclusions: CSV/Parquet of ``image_id_or_url,reason`` the user wants excluded.
        workers: processes for hashing and for the quality checks.

    Raises:
        ValueError: naming the value and what was expected (checked by the step configs).
    """

    phash_threshold: int = NearDupConfig.phash_threshold
    dhash_threshold: int | None = NearDupConfig.dhash_threshold
    drop_cross_series: bool = NearDupConfig.drop_cross_series
    min_side: int = QualityConfig.min_side
    max_aspect: float = QualityConfig.max_aspect
    min_std: float = QualityConfig.min_std
    min_entropy: float = QualityConfig.min_entropy
    exclusions: str | None = None
    workers: int = HashConfig.workers

    def __post_init__(self) -> None:
        # Each step config validates its own values: building them here fails early.
        _ = (self.hashing, self.quality, self.neardup)

    @property
    def hashing(self) -> HashConfig:
        """The hashing step's config."""
        return HashConfig(workers=self.workers)

    @property
    def quality(self) -> QualityConfig:
        """The junk filters' config."""
        return QualityConfig(
            min_side=self.min_side,
            max_aspect=self.max_aspect,
            min_std=self.min_std,
            min_entropy=self.min_entropy,
        )

    @property
    def neardup(self) -> NearDupConfig:
        """The near-duplicate search's config."""
        return NearDupConfig(
            phash_threshold=self.phash_threshold,
            dhash_threshold=self.dhash_threshold,
            drop_cross_series=self.drop_cross_series,
        )


#: The defaults, for parameters of flows and CLI commands (``CLEAN.phash_threshold``).
CLEAN = CleanConfig()


@dataclass(frozen=True)
class CleanResult:
    """What a clean run did.

    Attributes:
        images: images looked at (downloaded with status ok).
        cleaned: images left: not junk, not dropped as duplicates.
        junk_by_reason: junk images per failed check (an image may count for several).
        duplicates_by_kind: `duplicates` rows per ``"<kind>/<scope>"``.
        tables: ``{table name: sha256 of its Parquet bytes}`` of the tables written.
        computed: images hashed and assessed by this run; the others' rows were reused
            from the last run's tables (`tv100.tasks.clean.reuse`).
    """

    images: int
    cleaned: int
    junk_by_reason: Mapping[str, int]
    duplicates_by_kind: Mapping[str, int]
    tables: Mapping[str, str]
    computed: int = 0
