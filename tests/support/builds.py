"""The shared sandbox builds of the flow, crash and CLI tests, as plain functions.

`tests/conftest.py` wraps them in session fixtures (`collected`, `trained`); the crash
suites reuse the constants so every build sees the same sandbox web and knobs.
"""

from __future__ import annotations

from typing import Any

#: The sandbox's slow image stalls this long, past every image timeout below: it always
#: ends as a timeout, whatever the load on the machine.
SLOW_S = 8.0
#: The image timeout of the flow tests. Reading the 20 MiB cap of the oversized plant took
#: 0.9-1.0 s at load 12 on 2 cores (it must end as `too_large`, not `timeout`): 3 s leaves
#: a 3x margin, and the slow plant still stalls well past it.
TIMEOUT_S = 3.0
#: Backoff before a transiently failed image is tried again, in the shared builds: a day.
#: The sandbox's permanent faults (5xx, slow, truncated) fail transiently by design; a rerun
#: minutes later must change nothing, however long the session fixtures have existed (the
#: retries themselves: tests/tasks/collect/test_retry_transient.py, with an injected clock).
RERUN_BACKOFF_S = 86_400.0
#: Sandbox scale of the shared build: small (~350 images) but with every plant.
SCALE = 0.15
#: Fine-tuning knobs for the sandbox CLIP on the small shared build.
FAST_TRAIN: dict[str, Any] = {"epochs": 4, "lr": 5e-4, "batch_size": 32, "warmup_steps": 5,
                              "sampling": "balanced"}


def seed_series(data: str, titles: list[Any]) -> list[str]:
    """Write a `series` table of sandbox `titles` (world titles) under `data`; their ids.

    The minimal input of a collect run: ids and titles, no discover stage.
    """
    import pyarrow as pa

    from tv100.storage.root import DataRoot
    from tv100.storage.tables import write_table

    series = pa.table({
        "series_id": [t.series_id for t in titles],
        "title": [t.title for t in titles],
        "original_title": [t.original_title for t in titles],
        "start_year": pa.array([None] * len(titles), pa.int32()),
    })
    write_table(DataRoot(data).ensure(), "series", series, schema=series.schema)
    return [t.series_id for t in titles]


def collect_params(web: Any, data: str, image_timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """`collect_flow` parameters that point every engine and image at the sandbox `web`."""
    return dict(
        data=data,
        engine_urls=web.engine_urls(),
        per_series_cap=400,
        image_timeout_s=image_timeout_s,
        image_retries=1,
        allow_hosts=[web.host_port],
        download_retry_backoff_s=RERUN_BACKOFF_S,
    )


def seed_manifest(web: Any, data: str) -> None:
    """Write the sandbox's manifest tables (what the sandbox knows about its world)."""
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import write_table

    root = DataRoot(data).ensure()
    for name, table in web.manifest_tables().items():
        write_table(root, name, table, schema=table.schema)


def collect_build(web: Any, data: str) -> Any:
    """Manifest, discover and collect on the sandbox `web` into `data`; collect's result."""
    from tv100.flows.collect import collect_flow
    from tv100.flows.discover import discover_flow

    seed_manifest(web, data)
    discover_flow(location=f"{web.base_url}/datasets/", data=data, allow_hosts=[web.host_port])
    return collect_flow(**collect_params(web, data))


def unknown_series(data: str) -> int:
    """How many expected series of the sandbox the sandbox CLIP was not trained on."""
    from tv100.storage.catalog import query
    from tv100.storage.root import DataRoot

    rows = query(DataRoot(data), "select count(*) as n from sandbox_series where not known "
                 "and expected").to_pylist()
    return int(rows[0]["n"])


def train_build(collected_data: str, data: str, model: str) -> tuple[str, Any, Any, int]:
    """Copy a collected build to `data`, then clean, rank (`model`) and train it.

    Returns:
        (data, rank result, train result, number of unknown series).
    """
    import shutil

    from tv100.flows.clean import clean_flow
    from tv100.flows.rank import rank_flow
    from tv100.flows.train import train_flow

    shutil.copytree(collected_data, data)
    clean_flow(data=data)
    n_unknown = unknown_series(data)
    ranked = rank_flow(data=data, models=[model], k=n_unknown, min_images=3)
    result = train_flow(data=data, model=model, recipes=["zeroshot", "linear", "finetune"],
                        test_ratio=0.3, **FAST_TRAIN)
    return data, ranked, result, n_unknown
