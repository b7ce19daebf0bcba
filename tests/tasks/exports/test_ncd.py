"""The novel class discovery export: seeded partitions and the three lists per seed."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from tests.tasks.exports.tiny_root import COUNTS, KEPT, K
from tv100.tasks.exports.common import export_items
from tv100.tasks.exports.config import ExportConfig
from tv100.tasks.exports.ncd import export_ncd, labelled_count, partition


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_partitions_and_lists(tiny):
    root, labels = tiny
    result = export_ncd(root, export_items(root), ExportConfig(seeds=(1993, 4)))
    out = root.path("export/ncd")
    parts = json.loads(open(f"{out}/partitions.json").read())
    assert parts["seeds"] == [1993, 4] and parts["num_classes"] == K
    n = labelled_count(K, 0.5)
    assert n == parts["num_labelled"] == 3  # 5 x 0.5 rounded half up
    for seed in (1993, 4):
        p = parts["partitions"][str(seed)]
        np.random.seed(seed)
        order = np.random.permutation(K).tolist()
        assert p["labelled"] == sorted(order[:n]) and p["unlabelled"] == sorted(order[n:])
        label = {c: i for i, c in enumerate(p["labelled"] + p["unlabelled"])}
        lists = {name: _rows(f"{out}/seed{seed}/{name}.csv")
                 for name in ("labelled_train", "unlabelled_train", "test")}
        for name, rows in lists.items():
            assert list(rows[0]) == ["path", "label", "series_id", "class_index"]
            assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
            for r in rows:
                c = int(r["class_index"])
                iid = r["path"].rsplit("/", 1)[1].removesuffix(".jpg")
                assert labels[iid] == c and KEPT[c] == r["series_id"]
                assert int(r["label"]) == label[c]
                assert os.path.isfile(os.path.join(out, r["path"]))  # relative to the folder
                want = ("test" if name == "test" else "labelled_train"
                        if c in p["labelled"] else "unlabelled_train")
                assert name == want
        assert len(lists["test"]) == COUNTS["test"]
        train = lists["labelled_train"] + lists["unlabelled_train"]
        assert len(train) == COUNTS["train"] + COUNTS["val"]
        assert {int(r["label"]) for r in lists["labelled_train"]} == set(range(n))
        assert {int(r["label"]) for r in lists["unlabelled_train"]} == set(range(n, K))
    assert result.counts == {"train": COUNTS["train"] + COUNTS["val"], "test": COUNTS["test"]}
    assert "Seeds: 1993, 4." in open(f"{out}/README.md").read()


def test_the_ratio_is_configurable_and_keeps_a_class_on_each_side():
    assert len(partition(100, 0, 0.8)[0]) == 80
    assert len(partition(10, 0, 0.5)[0]) == 5
    assert partition(4, 1, 0.01)[0] and partition(4, 1, 0.99)[1]
    labelled, unlabelled = partition(7, 11, 0.3)
    assert sorted(labelled + unlabelled) == list(range(7)) and len(labelled) == 2
