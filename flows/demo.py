"""The sandbox demo: serve the offline stand-in web, build against it, summarise."""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger

from flows.build import build_flow
from storage.root import resolve_root
from storage.tables import write_table

#: A fixed port keeps every URL in the tables (and so every cache key) stable between
#: demo runs; `tv100 sandbox serve` picks a free port instead.
DEMO_PORT = 47100
#: The planted slow image stalls longer than the demo's image timeout, so it times out.
DEMO_IMAGE_TIMEOUT_S = 4.0
DEMO_SLOW_S = 10.0
#: The sandbox's largest series has ~300 images: a cap above it lets search find them all.
DEMO_PER_SERIES_CAP = 400


@flow(name="sandbox-demo")
def demo_flow(
    data: str = "./data",
    seed: int = 0,
    n_series: int = 48,
    scale: float = 1.0,
    port: int = DEMO_PORT,
    since: int = 2021,
) -> dict[str, Any]:
    """Start the sandbox web, write its ground truth, run the build against it, stop it.

    Args:
        data: data root for the demo build.
        seed: sandbox seed (same seed, same web, same tables).
        n_series: number of candidate series the sandbox invents.
        scale: multiplies the sandbox's images per series.
        port: loopback port for the sandbox (fixed so reruns are cache hits).
        since: keep series that started after this year.
    """
    from sandbox.web import SandboxWeb

    logger = get_run_logger()
    root = resolve_root(data).ensure()
    with SandboxWeb(
        seed=seed, n_series=n_series, scale=scale, port=port, slow_s=DEMO_SLOW_S
    ) as web:
        base_url = web.base_url
        logger.info("sandbox web at %s", base_url)
        manifest = {
            name: write_table(root, name, table, schema=table.schema)
            for name, table in web.manifest_tables().items()
        }
        result = build_flow(
            location=f"{base_url}/datasets/",
            source="imdb-datasets",
            since=since,
            data=data,
            engine_urls=web.engine_urls(),
            per_series_cap=DEMO_PER_SERIES_CAP,
            image_timeout_s=DEMO_IMAGE_TIMEOUT_S,
            image_retries=1,
            allow_hosts=[web.host_port],
        )
    logger.info("demo result: %s", json.dumps(result, sort_keys=True, default=str))
    return {"build": result, "manifest": manifest, "base_url": base_url}
