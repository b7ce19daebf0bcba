"""The stages' Prefect artifacts: rows built right, published, and readable back through the
Prefect client (the test harness's API)."""

from __future__ import annotations

import json
import logging
import math
from typing import Any
from uuid import UUID

import pyarrow as pa
import pytest

from tv100.tasks.report import artifacts as art

# --- rows (no Prefect) ----------------------------------------------------------------------


def test_count_rows_orders_by_count_then_value_and_names_missing():
    rows = art.count_rows(["ok", "timeout", "ok", None, "", "http_error", "ok"])
    assert rows == [
        {"status": "ok", "count": 3, "share": "42.9%"},
        {"status": "unknown", "count": 2, "share": "28.6%"},
        {"status": "http_error", "count": 1, "share": "14.3%"},
        {"status": "timeout", "count": 1, "share": "14.3%"},
    ]
    assert art.count_rows([]) == []
    assert art.count_rows(["a"], label="reason") == [{"reason": "a", "count": 1, "share": "100.0%"}]


def test_discover_rows_count_fetches_and_records_by_status():
    fetches = pa.table(
        {
            "status": ["ok", "ok", "http_error", "ok"],
            "records": [10, 5, None, 0],
        }
    )
    assert art.discover_rows(fetches) == [
        {"status": "ok", "fetches": 3, "records": 15, "share": "75.0%"},
        {"status": "http_error", "fetches": 1, "records": 0, "share": "25.0%"},
    ]


def test_collect_and_search_page_rows():
    assert art.collect_rows({"timeout": 2, "ok": 8}) == [
        {"status": "ok", "images": 8, "share": "80.0%"},
        {"status": "timeout", "images": 2, "share": "20.0%"},
    ]
    pages = [
        {"engine": "bing", "status": "ok", "new_hits": 4},
        {"engine": "bing", "status": "ok", "new_hits": 3},
        {"engine": "bing", "status": "timeout", "new_hits": None},
        {"engine": "google", "status": "ok", "new_hits": 1},
    ]
    assert art.search_page_rows(pages) == [
        {"engine": "bing", "status": "ok", "pages": 2, "hits": 7},
        {"engine": "bing", "status": "timeout", "pages": 1, "hits": 0},
        {"engine": "google", "status": "ok", "pages": 1, "hits": 1},
    ]


def test_search_pages_fail_unless_read():
    """Page classes: `results` and `no_results` pages (and token pages, `ok`) were read; a
    failed request, a `blocked` or an `unknown_layout` page failed."""
    pages = [
        {"engine": "bing", "status": "results", "new_hits": 35},
        {"engine": "bing", "status": "no_results", "new_hits": 0},
        {"engine": "duckduckgo", "status": "ok", "new_hits": None},
        {"engine": "duckduckgo", "status": "results", "new_hits": 100},
        {"engine": "google", "status": "blocked", "new_hits": None},
        {"engine": "google", "status": "unknown_layout", "new_hits": None},
        {"engine": "google", "status": "timeout", "new_hits": None},
    ]
    rows = art.search_page_rows(pages)
    assert art.search_pages_description(rows) == "**Collect**: 7 search requests, 3 failed."
    assert art.search_pages_description([]) == "**Collect**: 0 search requests, 0 failed."


def test_clean_rows_split_reasons_and_skip_kept_duplicates():
    quality = pa.table(
        {
            "image_id": ["a", "b", "c", "d"],
            "is_junk": [True, True, False, True],
            "reason": ["too_small,blank", "too_small", None, "excluded"],
        }
    )
    duplicates = pa.table(
        {
            "image_id": ["e", "f", "g", "h"],
            "kind": ["phash", "phash", "exact", "clip"],
            "scope": ["within_series", "within_series", "cross_series", "cross_split"],
            "action": ["drop", "drop", "drop", "move_to_train"],
        }
    )
    assert art.clean_rows(quality, duplicates) == [
        {"stage": "quality", "reason": "too_small", "images": 2},
        {"stage": "quality", "reason": "blank", "images": 1},
        {"stage": "quality", "reason": "excluded", "images": 1},
        {"stage": "duplicates", "reason": "phash/within_series", "images": 2},
        {"stage": "duplicates", "reason": "exact/cross_series", "images": 1},
    ]
    assert art.clean_rows([], []) == []


ZEROSHOT = [
    {"series_id": "tt1", "model_key": "m", "n_images": 10, "top1": 0.1, "mean_true_prob": 0.2},
    {"series_id": "tt2", "model_key": "m", "n_images": 20, "top1": 0.9, "mean_true_prob": 0.8},
    {"series_id": "tt3", "model_key": "m", "n_images": 30, "top1": 0.1, "mean_true_prob": 0.1},
    {"series_id": "tt4", "model_key": "m", "n_images": 40, "top1": 0.5, "mean_true_prob": 0.5},
    {"series_id": "tt5", "model_key": "m", "n_images": 5, "top1": float("nan")},
    {"series_id": "tt1", "model_key": "other", "n_images": 10, "top1": 0.7},
]
SERIES = [{"series_id": f"tt{i}", "title": f"Show {i}"} for i in range(1, 6)]


def test_rank_rows_hardest_and_easiest_per_model():
    hardest, easiest = art.rank_rows(ZEROSHOT, SERIES, n=2)
    assert [(r["model_key"], r["rank"], r["series_id"]) for r in hardest] == [
        ("m", 1, "tt3"),  # top-1 ties broken by the lower mean true-class probability
        ("m", 2, "tt1"),
        ("other", 1, "tt1"),
    ]
    assert [(r["model_key"], r["rank"], r["series_id"]) for r in easiest] == [
        ("m", 1, "tt2"),
        ("m", 2, "tt4"),
        ("other", 1, "tt1"),
    ]
    assert hardest[0]["title"] == "Show 3" and hardest[0]["n_images"] == 30
    only, _ = art.rank_rows(pa.Table.from_pylist(ZEROSHOT[:5]), n=10, model_key="m")
    assert [r["series_id"] for r in only] == ["tt3", "tt1", "tt4", "tt2"]  # NaN top-1 left out
    assert only[0]["title"] is None
    with pytest.raises(ValueError, match="n=0"):
        art.rank_rows(ZEROSHOT, n=0)


def test_metrics_rows_sorted_in_recipe_order_and_rounded():
    metrics = [
        {"run_id": "r2", "model_key": "b", "recipe": "finetune", "split": "test",
         "metric": "top1", "value": 0.812345678},
        {"run_id": "r1", "model_key": "a", "recipe": "finetune", "split": "test",
         "metric": "top1", "value": 0.7},
        {"run_id": "r0", "model_key": "a", "recipe": "zeroshot", "split": "test",
         "metric": "top1", "value": float("nan")},
    ]
    rows = art.metrics_rows(metrics)
    assert [(r["model_key"], r["recipe"]) for r in rows] == [
        ("a", "zeroshot"), ("a", "finetune"), ("b", "finetune"),
    ]
    assert rows[0]["value"] is None and rows[2]["value"] == 0.8123
    assert list(rows[0]) == ["model_key", "recipe", "split", "metric", "value", "run_id"]


# --- published and read back through the Prefect client -----------------------------------


def _artifacts(flow_run_id: UUID | None = None, key: str | None = None) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]) if flow_run_id else None,
                key=ArtifactFilterKey(any_=[key]) if key else None,
            )
        )


def _table(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


PAGES = pa.table({
    "engine": ["bing", "bing", "google"],
    "status": ["results", "no_results", "blocked"],
    "new_hits": pa.array([4, 0, None], pa.int32()),
})


def test_published_in_a_flow_and_read_back(prefect_harness):
    from prefect import flow
    from prefect.context import get_run_context

    fetches = pa.table({"status": ["ok", "ok", "timeout"], "records": [3, 4, None]})
    quality = pa.table({"is_junk": [True, False], "reason": ["blank", None]})
    duplicates = pa.table(
        {"kind": ["exact"], "scope": ["within_series"], "action": ["drop"]}
    )
    metrics = pa.table(
        {"run_id": ["r"], "model_key": ["m"], "recipe": ["linear"], "split": ["test"],
         "metric": ["top1"], "value": [0.5], "hyperparameters": ['{"lr": 0.1}']}
    )

    @flow(name="artifacts-test")
    def publish_all() -> dict[str, Any]:
        ids: dict[str, Any] = {
            "discover": art.publish_discover_artifacts(fetches, series=7),
            "clean": art.publish_clean_artifacts(quality, duplicates, images=2, cleaned=0),
            "metrics": art.publish_metrics_artifact(metrics),
        }
        ids.update(art.publish_collect_artifacts({"ok": 3, "timeout": 1}, PAGES))
        ids.update(art.publish_rank_artifacts(ZEROSHOT, SERIES, n=2, model_key="m"))
        progress = art.progress_reporter("artifacts-test-progress", "items")
        for i in range(1, 301):
            progress(i, 300)
        ids["run"] = get_run_context().flow_run.id
        return ids

    ids = publish_all()
    run_id = ids.pop("run")
    assert all(isinstance(v, UUID) for v in ids.values()), ids
    by_key = {a.key: a for a in _artifacts(run_id)}
    assert {k.value for k in art.ArtifactKey} | {"artifacts-test-progress"} == set(by_key)
    for a in by_key.values():
        assert a.flow_run_id == run_id

    discover = by_key["discover-fetches-by-status"]
    assert discover.type == "table"
    assert "3 fetches, 1 failed; 7 series kept" in discover.description
    assert _table(discover) == art.discover_rows(fetches)
    assert _table(by_key["collect-images-by-status"]) == [
        {"status": "ok", "images": 3, "share": "75.0%"},
        {"status": "timeout", "images": 1, "share": "25.0%"},
    ]
    pages = by_key["collect-search-pages-by-status"]
    assert "3 search requests, 1 failed" in pages.description
    assert _table(pages) == art.search_page_rows(PAGES)
    clean = by_key["clean-removals-by-reason"]
    assert "2 images in, 0 kept, 2 removed" in clean.description
    assert _table(clean) == [
        {"stage": "quality", "reason": "blank", "images": 1},
        {"stage": "duplicates", "reason": "exact/within_series", "images": 1},
    ]
    hardest = _table(by_key["rank-hardest-series"])
    easiest = _table(by_key["rank-easiest-series"])
    assert [r["series_id"] for r in hardest] == ["tt3", "tt1"]
    assert [r["series_id"] for r in easiest] == ["tt2", "tt4"]
    assert hardest[0]["title"] == "Show 3"
    train = _table(by_key["train-metrics"])
    assert train == [{"model_key": "m", "recipe": "linear", "split": "test", "metric": "top1",
                      "value": 0.5, "run_id": "r", "hyperparameters": '{"lr": 0.1}'}]
    progress = by_key["artifacts-test-progress"]
    assert progress.type == "progress" and math.isclose(float(progress.data), 100.0)


def test_publishing_failure_is_a_warning_not_an_error(prefect_harness, caplog):
    from prefect import flow

    @flow(name="artifacts-bad-key")
    def bad() -> Any:
        return art.publish_table("Not A Valid Key!", [{"a": 1}])

    with caplog.at_level(logging.WARNING, logger="tv100.artifacts"):
        assert bad() is None
    assert "could not publish artifact 'Not A Valid Key!'" in caplog.text


def test_stage_flows_publish_their_counts(collected):
    """discover and collect on the sandbox publish tables that match what they wrote."""
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import read_table

    data, result = collected
    root = DataRoot(data)
    fetch_rows = art.discover_rows(read_table(root, "discover_fetches"))
    published = [_table(a) for a in _artifacts(key="discover-fetches-by-status")]
    assert fetch_rows in published
    image_rows = art.collect_rows(result.images.status_counts)
    assert sum(r["images"] for r in image_rows) == read_table(root, "images").num_rows
    published = [_table(a) for a in _artifacts(key="collect-images-by-status")]
    assert image_rows in published
    page_rows = art.search_page_rows(read_table(root, "search_pages"))
    assert page_rows in [_table(a) for a in _artifacts(key="collect-search-pages-by-status")]
