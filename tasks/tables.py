"""Prefect tasks that write tables: uncached, because `write_table` is already idempotent.

Keeping writes out of the cache means a table deleted by hand is written again on the
next run, while a rerun with unchanged inputs leaves every file byte-identical.
"""

from __future__ import annotations

import pyarrow as pa
from prefect import task

from tv100.storage.catalog import write_catalog
from tv100.storage.root import DataRoot
from tv100.storage.tables import write_table


@task(name="write-tables")
def write_tables_task(root: DataRoot, tables: dict[str, pa.Table]) -> dict[str, str]:
    """Write each table atomically; return ``{name: sha256 of its Parquet bytes}``."""
    root.ensure()
    return {name: write_table(root, name, table) for name, table in tables.items()}


@task(name="write-catalog")
def write_catalog_task(root: DataRoot) -> bool:
    """``catalog.duckdb`` in the data root, a view per table (`write_catalog`); whether
    it changed."""
    return write_catalog(root)
