"""The exports' names, knobs and results: the kinds, their defaults, `ExportConfig`, and
the `ExportResult` the export flow returns.

Every kind name and default of ``tv100 export`` is defined here once; the CLI, the flow and
the exporters import them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tv100.tasks.train.config import EXPORT_DIR

#: The export kinds, each written to ``<root>/export/<kind>/``: class-incremental learning
#: (PyCIL's layout), novel class discovery partitions, a Hugging Face ``datasets``
#: ImageFolder, WebDataset tar shards.
KINDS = ("pycil", "ncd", "hf", "wds")
#: The folder holding every kind's folder, inside the data root (the train stage's export).
EXPORTS_DIR = EXPORT_DIR
#: The tables an export reads.
EXPORT_INPUTS = ("splits", "classes", "series", "images")
#: PyCIL's default seed (its ``exps/*.json`` use ``"seed": [1993]``).
DEFAULT_SEEDS = (1993,)
#: Share of the classes that are labelled in a novel class discovery partition.
DEFAULT_LABELLED_RATIO = 0.5
#: Samples per WebDataset shard (the last shard of a split holds the rest).
DEFAULT_SHARD_SIZE = 1000
#: Seeds numpy's legacy ``np.random.seed`` accepts.
MAX_SEED = 2**32 - 1


def kind_dir(kind: str) -> str:
    """A kind's folder relative to the data root: ``export/<kind>``."""
    return f"{EXPORTS_DIR}/{kind}"


@dataclass(frozen=True)
class ExportConfig:
    """What ``tv100 export`` writes.

    Attributes:
        kinds: the kinds to write, each one of `KINDS`, at least one, no repeats.
        seeds: the seeds of PyCIL's class orders and of the novel-class partitions
            (each 0..2**32-1, at least one, no repeats).
        labelled_ratio: share of the classes labelled in each novel-class partition
            (0 < r < 1; at least one class on each side).
        shard_size: samples per WebDataset shard (1..1000000).
    """

    kinds: tuple[str, ...] = KINDS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    labelled_ratio: float = DEFAULT_LABELLED_RATIO
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        kinds = tuple(self.kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            bad = next((k for k in kinds if k not in KINDS), None)
            raise ValueError(
                f"ExportConfig.kinds: unknown kind {bad!r}; expected any of {', '.join(KINDS)}"
                if bad is not None else
                f"ExportConfig.kinds is empty; expected any of {', '.join(KINDS)}"
            )
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"ExportConfig.kinds={kinds}; expected each kind once")
        seeds = tuple(self.seeds)
        if not seeds:
            raise ValueError("ExportConfig.seeds is empty; expected at least one seed")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
                raise ValueError(
                    f"ExportConfig.seeds: seed {s!r}; expected an integer in 0..{MAX_SEED}"
                )
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"ExportConfig.seeds={seeds}; expected each seed once")
        r = self.labelled_ratio
        if (isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r)
                or not 0 < r < 1):
            raise ValueError(
                f"ExportConfig.labelled_ratio={r!r}; expected a number with 0 < r < 1"
            )
        n = self.shard_size
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000:
            raise ValueError(
                f"ExportConfig.shard_size={n!r}; expected an integer in 1..1000000"
            )
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "labelled_ratio", float(r))

    def as_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (what a kind's README records)."""
        return {"kinds": list(self.kinds), "seeds": list(self.seeds),
                "labelled_ratio": self.labelled_ratio, "shard_size": self.shard_size}


@dataclass(frozen=True)
class KindResult:
    """What one kind's export holds.

    Attributes:
        kind: one of `KINDS`.
        path: its folder (local path).
        counts: images per split, in the kind's own split names.
        files: files in the folder.
        written: whether this run wrote the folder (False: it already held exactly this).
    """

    kind: str
    path: str
    counts: Mapping[str, int]
    files: int
    written: bool


@dataclass(frozen=True)
class ExportResult:
    """What the export flow did: one `KindResult` per kind, in the order asked."""

    kinds: tuple[KindResult, ...]

    def kind(self, kind: str) -> KindResult:
        """The result of `kind`.

        Raises:
            KeyError: the kind was not exported.
        """
        for r in self.kinds:
            if r.kind == kind:
                return r
        raise KeyError(f"kind {kind!r} was not exported; exported {[r.kind for r in self.kinds]}")
