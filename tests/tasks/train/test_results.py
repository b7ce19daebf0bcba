"""Run ids, the metrics rows of a run and appending them to the tables."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from tests.tasks.train.recipe_data import FT, NAMES, top1


def test_run_id_distinct_per_knob_and_stable_otherwise(dataset):
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.results import run_id, splits_digest

    _, splits, _ = dataset
    digest = splits_digest(splits)

    def rid(cfg, key="m@x", dig=digest):
        return run_id(key, cfg.recipe, cfg.knobs(), dig, cfg.seed, NAMES)

    base = TrainConfig(recipe="finetune", **FT)
    ids = {
        rid(base),
        rid(replace(base, lr=1e-3)),
        rid(replace(base, epochs=5)),
        rid(replace(base, sampling="sqrt")),
        rid(replace(base, logit_adjust_tau=0.5)),
        rid(replace(base, seed=1)),
        rid(replace(base, recipe="wiseft")),
        rid(base, key="m@y"),
        rid(base, dig=splits_digest(splits.slice(1))),
    }
    assert len(ids) == 9
    # Threads and workers do not change the numbers, so not the id either.
    assert rid(replace(base, threads=2, workers=1)) == rid(base)
    # Row order of the split table does not matter; zero-shot ignores training knobs.
    assert splits_digest(splits.take(np.arange(splits.num_rows)[::-1])) == digest
    zs = TrainConfig(recipe="zeroshot")
    assert rid(zs) == rid(replace(zs, lr=0.5, epochs=3))
    assert rid(zs) != rid(replace(zs, templates=("a still from {}",)))


def test_metrics_tables_and_append(results, tmp_path):
    from tv100.storage.root import DataRoot
    from tv100.storage.schemas import CLASS_METRICS, METRICS
    from tv100.storage.tables import read_table
    from tv100.tasks.train.results import append_metrics

    when = datetime(2024, 5, 1, tzinfo=UTC)
    ft = results["finetune"]
    metrics, per_class = ft.tables(created_at=when)
    assert metrics.schema.equals(METRICS) and per_class.schema.equals(CLASS_METRICS)
    rows = metrics.to_pylist()
    assert {r["split"] for r in rows} == {"val", "test"}
    test = {r["metric"]: r["value"] for r in rows if r["split"] == "test"}
    assert test["top1"] == top1(ft)
    assert set(test) == {"top1", "top5", "balanced_accuracy", "few"}  # 15 train: few
    assert all(json.loads(r["hyperparameters"]) == ft.hyperparameters for r in rows)
    assert per_class.num_rows == 2 * len(NAMES)
    first = per_class.to_pylist()[0]
    assert first["series_id"] == f"tt{9000 + first['class_index']}"
    assert (first["train_count"], first["tier"]) == (15, "few")
    assert first["n"] == 5

    root = DataRoot(str(tmp_path / "data")).ensure()
    digests = append_metrics(root, metrics, per_class)
    lin = results["linear"].tables(created_at=when)
    append_metrics(root, *lin)
    table = read_table(root, "metrics")
    assert set(table.column("run_id").to_pylist()) == {ft.run_id, results["linear"].run_id}
    assert table.num_rows == metrics.num_rows + lin[0].num_rows
    assert read_table(root, "class_metrics").num_rows == 4 * len(NAMES)
    # Appending a run again replaces its rows (keeping their timestamp): nothing changes.
    later = ft.tables(created_at=datetime(2025, 1, 1, tzinfo=UTC))
    again = append_metrics(root, *later)
    assert read_table(root, "metrics").num_rows == table.num_rows
    append_metrics(root, *lin)
    assert append_metrics(root, *later) == again
    assert digests.keys() == again.keys()


def test_run_summary_and_train_result(results, dataset):
    from tv100.storage.schemas import DUPLICATES
    from tv100.tasks.train.results import train_result

    _, splits, _ = dataset
    ft = results["finetune"]
    s = ft.summary()
    assert (s.recipe, s.run_id, s.model_key) == ("finetune", ft.run_id, ft.model_key)
    assert s.test_top1 == top1(ft) and s.val_top1 == top1(ft, "val")
    assert s.test_many is None  # 15 training images per class: every class is few-shot
    out = train_result(NAMES, splits, DUPLICATES.empty_table(), None,
                       [results["zeroshot"], ft], {"splits": "x"})
    assert (out.classes, out.chance, out.leakage) == (6, 1 / 6, 0)
    assert out.splits == {"train": 90, "val": 30, "test": 30}
    assert [r.recipe for r in out.runs] == ["zeroshot", "finetune"]
    assert out.run("finetune") == s
