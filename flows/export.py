"""Exports for downstream research: the splits of a built data root as PyCIL's
class-incremental layout, novel-class-discovery partitions, a Hugging Face ImageFolder and
WebDataset shards, each under ``<root>/export/<kind>/``."""

from __future__ import annotations

from prefect import flow

from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.exports.common import check_local, export_items_task
from tv100.tasks.exports.config import (
    DEFAULT_LABELLED_RATIO,
    DEFAULT_SEEDS,
    DEFAULT_SHARD_SIZE,
    EXPORT_INPUTS,
    KINDS,
    ExportConfig,
    ExportResult,
)
from tv100.tasks.exports.hf import export_hf_task
from tv100.tasks.exports.ncd import export_ncd_task
from tv100.tasks.exports.pycil import export_pycil_task
from tv100.tasks.exports.wds import export_wds_task
from tv100.tasks.prerequisites import check_root, require_tables

#: The task writing each kind.
_EXPORTERS = {"pycil": export_pycil_task, "ncd": export_ncd_task, "hf": export_hf_task,
              "wds": export_wds_task}


@flow(name="export")
def export_flow(
    data: str | None = None,
    kinds: list[str] | None = None,
    seeds: list[int] | None = None,
    labelled_ratio: float = DEFAULT_LABELLED_RATIO,
    shard_size: int = DEFAULT_SHARD_SIZE,
    wait: bool = True,
) -> ExportResult:
    """Write each of `kinds` under ``<data>/export/<kind>/`` from the train stage's splits.

    Args:
        data: a built data root (its `splits`, `classes`, `series` and `images` tables;
            default ``$TV100_DATA``, else ``./data``); local only.
        kinds: any of ``pycil, ncd, hf, wds`` (default: all of them).
        seeds: seeds of PyCIL's class orders and of the novel-class partitions (default
            ``[1993]``, PyCIL's).
        labelled_ratio: share of the classes labelled in each novel-class partition.
        shard_size: samples per WebDataset shard.
        wait: if another run holds the data root, wait for it (False: refuse at once).

    Raises:
        ValueError: a bad kind, seed or knob, a missing table, or a remote data root (one
            line each).
    """
    config = ExportConfig(
        kinds=tuple(kinds) if kinds else KINDS,
        seeds=tuple(seeds) if seeds else DEFAULT_SEEDS,
        labelled_ratio=labelled_ratio,
        shard_size=shard_size,
    )
    root = check_local(check_root(resolve_root(data)))
    require_tables(root, "export", EXPORT_INPUTS)  # before the lock file is created
    with hold_root(root, wait=wait, what="export"):  # one run per data root
        items = export_items_task(root)
        return ExportResult(tuple(_EXPORTERS[kind](root, items, config)
                                  for kind in config.kinds))
