"""The report stage's names, knobs and result: file names, `ReportConfig`, `ReportResult`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tv100.tasks.train.metrics import Tiers

#: The report's folder inside the data root.
REPORT_DIR = "report"
CARD = "DATASET_CARD.md"
METRICS_CSV = "metrics.csv"
#: Figure key -> file name, in the order the card shows them.
FIGURES = {
    "country_distribution": "fig_b_country_distribution.png",
    "instance_distribution": "fig_c_instance_distribution.png",
    "performance": "fig_d_zeroshot_vs_finetuned.png",
    "relevance": "relevance.png",
    "novelty": "novelty.png",
}
#: Figure key -> caption (the paper's panel letter).
CAPTIONS = {
    "country_distribution": "(b) Country distribution",
    "instance_distribution": "(c) Instance distribution",
    "performance": "(d) Zero-shot vs fine-tuned",
    "relevance": "Relevance and review per class",
    "novelty": "Novelty: top-1 per series and model; what kept classes are mistaken for",
}
#: Figure key -> the table it needs: without that table the figure is left out unnoted (a
#: build from before the table existed), not skipped; its stale file is still removed.
OPTIONAL_FIGURES = {"relevance": "relevance"}
#: Figures `tv100 experiment` writes into the report folder (key -> file name): the card
#: links each one that exists; the report neither draws nor removes them.
EXPERIMENT_FIGURES = {"curves": "curves.png", "longtail": "longtail.png"}
EXPERIMENT_CAPTIONS = {
    "curves": "Data-efficiency curves: accuracy against training images per class",
    "longtail": "Long-tail methods: accuracy per tier (many, medium, few shots)",
}


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows.

    Attributes:
        tiers: long-tail thresholds (many-shot above, few-shot below).
        metric: the `metrics.metric` plotted in figure (d), e.g. ``top1``.
        split: the `metrics.split` plotted in figure (d), e.g. ``test``.
        dpi: resolution of the PNG figures (50..600).
        max_countries: pie slices before the rest are merged into "Other" (1..20).
    """

    tiers: Tiers = field(default_factory=Tiers)
    metric: str = "top1"
    split: str = "test"
    dpi: int = 150
    max_countries: int = 7

    def __post_init__(self) -> None:
        if not 50 <= self.dpi <= 600:
            raise ValueError(f"ReportConfig.dpi={self.dpi!r}; expected 50..600")
        if not 1 <= self.max_countries <= 20:
            raise ValueError(f"ReportConfig.max_countries={self.max_countries!r}; expected 1..20")


@dataclass(frozen=True)
class ReportResult:
    """What `tv100.tasks.report.report.write_report` wrote.

    Attributes:
        report_dir: the report folder (a path of the data root's filesystem).
        files: file key (a `FIGURES` key, ``metrics`` or ``card``) -> path written.
        skipped: figure key -> why it was not drawn (its stale file is removed).
    """

    report_dir: str
    files: Mapping[str, str]
    skipped: Mapping[str, str]


#: The defaults, for the CLI's options.
REPORT = ReportConfig()
