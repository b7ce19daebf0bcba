"""Snapshots, diff and rerank: table names, defaults, the rerank config and every result type."""

from __future__ import annotations

from dataclasses import dataclass, field

from tv100.tasks.rank.config import EmbedConfig, ZeroShotConfig, check_models

SNAPSHOTS_TABLE = "snapshots"
RERANK_TABLE = "rerank"
#: Folder under the data root holding each snapshot's frozen tables.
SNAPSHOTS_DIR = "snapshots"
#: The tables copied into every snapshot (what `diff` and `rerank --since` read).
FROZEN_TABLES = ("series", "zeroshot", "classes")
#: Tables that are not part of a build's state (see `tv100.tasks.snapshots.snapshots`).
EXCLUDED_TABLES = frozenset({SNAPSHOTS_TABLE, RERANK_TABLE, "embeddings"})
#: `tv100 diff` reports zero-shot top-1 changes larger than this.
DEFAULT_DIFF_THRESHOLD = 0.05


@dataclass(frozen=True)
class SnapshotRecord:
    """What `tv100.tasks.snapshots.snapshots.record_snapshot` did.

    Attributes:
        snapshot_id: the snapshot recording the current state (new or the latest).
        created: False when the latest snapshot already recorded this state (nothing
            written).
        state_sha256: the combined hash of every table.
        previous: the id of the snapshot before it (None for the first).
    """

    snapshot_id: str
    created: bool
    state_sha256: str
    previous: str | None


@dataclass(frozen=True)
class SnapshotBrief:
    """One side of a diff: which snapshot, when, and its counts."""

    snapshot_id: str
    created_at: str
    n_series: int | None
    n_kept: int | None


@dataclass(frozen=True)
class SeriesRef:
    """A series added or removed between two snapshots."""

    series_id: str
    title: str | None


@dataclass(frozen=True)
class TopMove:
    """A series whose zero-shot top-1 (by one model) moved between two snapshots."""

    model_key: str
    series_id: str
    title: str | None
    top1_a: float
    top1_b: float
    delta: float


@dataclass(frozen=True)
class KeptChange:
    """A series whose kept status differs (None: absent from that snapshot's classes)."""

    series_id: str
    title: str | None
    kept_a: bool | None
    kept_b: bool | None
    reason_a: str | None
    reason_b: str | None
    accuracy_a: float | None
    accuracy_b: float | None


@dataclass(frozen=True)
class DiffModels:
    """The model keys of each side's `zeroshot` table."""

    a: tuple[str, ...]
    b: tuple[str, ...]


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from snapshot A to snapshot B (`tv100.tasks.snapshots.diff`).

    Attributes:
        a: snapshot A.
        b: snapshot B.
        threshold: top-1 changes at most this large are not in `moved`.
        models: each side's model keys.
        added: series in B's `series` only.
        removed: series in A's `series` only.
        moved: per model present in both, series whose top-1 changed by more than
            `threshold` (largest change first).
        classes: series whose kept status differs.
    """

    a: SnapshotBrief
    b: SnapshotBrief
    threshold: float
    models: DiffModels
    added: tuple[SeriesRef, ...]
    removed: tuple[SeriesRef, ...]
    moved: tuple[TopMove, ...]
    classes: tuple[KeptChange, ...]


@dataclass(frozen=True)
class RerankConfig:
    """Everything one rerank run needs.

    Attributes:
        models: the newer CLIPs, ``ARCH@WEIGHTS`` or ``local-dir:FOLDER`` (at least one).
        since: a snapshot id (or unique prefix) whose kept classes to re-rank (None: the
            current `classes` table).
        threshold: top-1 at or below which a class is still unseen, 0..1 (None: per model
            `tv100.tasks.snapshots.rerank.default_threshold`).
        embed: how images are embedded.
        zeroshot: how they are classified.
    """

    models: tuple[str, ...]
    since: str | None = None
    threshold: float | None = None
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)

    def __post_init__(self) -> None:
        if isinstance(self.models, str) or not self.models:
            raise ValueError("no models to re-rank with; expected one or more newer CLIPs")
        object.__setattr__(self, "models", check_models("RerankConfig", self.models))
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(
                f"RerankConfig.threshold={self.threshold!r}; expected a top-1 accuracy in 0..1"
            )


@dataclass(frozen=True)
class NoLongerUnseen:
    """A kept class a newer model now recognises (new top-1 above the threshold)."""

    model_key: str
    series_id: str
    title: str | None
    old_accuracy: float | None
    new_accuracy: float
    threshold: float


@dataclass(frozen=True)
class RerankResult:
    """What `tv100.flows.refresh.rerank_flow` returns.

    Attributes:
        models: the newer models' keys.
        kept: kept classes re-ranked.
        still_unseen: (model, class) pairs at or below the threshold.
        no_images: (model, class) pairs without cleaned images (not judged).
        no_longer_unseen: the pairs above the threshold, by model, highest top-1 first.
        snapshot_id: the snapshot whose classes were re-ranked (None: the current ones).
        candidates: series the classes were classified among.
        tables: ``{table: sha256}`` of the tables written (`rerank`).
    """

    models: tuple[str, ...]
    kept: int
    still_unseen: int
    no_images: int
    no_longer_unseen: tuple[NoLongerUnseen, ...]
    snapshot_id: str | None = None
    candidates: int = 0
    tables: dict[str, str] = field(default_factory=dict)
