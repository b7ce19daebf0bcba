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


def write_manifest(data: str, seed: int, n_series: int) -> dict[str, str]:
    """Write the sandbox's ground truth into the data root (views `sandbox_*`)."""
    from sandbox.world import build_world

    root = resolve_root(data).ensure()
    world = build_world(seed=seed, n_series=n_series)
    return {
        name: write_table(root, name, table, schema=table.schema)
        for name, table in world.manifest_tables().items()
    }


@flow(name="sandbox-demo")
def demo_flow(
    data: str = "./data",
    seed: int = 0,
    n_series: int = 48,
    port: int = DEMO_PORT,
    since: int = 2021,
) -> dict[str, Any]:
    """Start the sandbox web, run the build against it, stop the sandbox.

    Args:
        data: data root for the demo build.
        seed: sandbox seed (same seed, same web, same tables).
        n_series: number of candidate series the sandbox invents.
        port: loopback port for the sandbox (fixed so reruns are cache hits).
        since: keep series that started after this year.
    """
    from sandbox.server import SandboxServer
    from sandbox.world import build_world

    logger = get_run_logger()
    world = build_world(seed=seed, n_series=n_series)
    manifest = write_manifest(data, seed, n_series)
    with SandboxServer(world, port=port) as server:
        base_url = server.base_url
        logger.info("sandbox web at %s", base_url)
        host = f"127.0.0.1:{port}"
        result = build_flow(
            location=f"{base_url}/datasets/",
            source="imdb-datasets",
            since=since,
            data=data,
            allow_hosts=[host],
        )
    logger.info("demo result: %s", json.dumps(result, sort_keys=True, default=str))
    return {"build": result, "manifest": manifest, "base_url": base_url}
