"""The report's figures (b), (c), (d) drawn from small tables."""

from __future__ import annotations

import pyarrow as pa

from tests.tasks.report.test_analysis import AFTER
from tv100.tasks.report import figures
from tv100.tasks.train.metrics import Tiers


def test_plot_country_distribution_merges_the_tail_into_other():
    t = pa.table(
        {"country": ["CN", "JP", "KR", "TH", "US", "FR"], "n_series": [55, 25, 16, 3, 1, 1]}
    )
    fig = figures.plot_country_distribution(t, max_slices=3)
    texts = [x.get_text() for x in fig.axes[0].texts]
    assert "China" in texts and "Korea" in texts
    assert "Other (3) 5%" in texts  # 5 of 101, a thin slice: share outside
    fig = figures.plot_country_distribution(t, max_slices=5)  # one extra: shown, no "Other (1)"
    assert not any(x.get_text().startswith("Other") for x in fig.axes[0].texts)


def test_plot_performance_labels_values_in_percent():
    acc = pa.table(
        {
            "model_key": ["RN50", "RN50", "ViT-L-14"],
            "recipe": ["zeroshot", "finetune", "finetune"],
            "value": [0.0208, 0.4308, 0.602],
        }
    )
    fig = figures.plot_performance(acc, chance=0.01)
    ax = fig.axes[0]
    labels = {x.get_text() for x in ax.texts}
    assert {"2.08", "43.08", "60.20"} <= labels
    assert [t.get_text() for t in ax.get_xticklabels()] == ["RN50", "ViT-L-14"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "chance (1.0%)",
        "Zero-Shot",
        "Fine-tuned",
    ]


def test_plot_instance_distribution_is_sorted_bars_with_thresholds():
    counts = sorted(AFTER.values(), reverse=True)
    fig = figures.plot_instance_distribution(pa.table({"n_images": counts}), Tiers())
    ax = fig.axes[0]
    assert [round(p.get_height()) for p in ax.patches] == counts
    assert "many 1 · medium 2 · few 1" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "many-shot > 100",
        "few-shot < 20",
    ]
