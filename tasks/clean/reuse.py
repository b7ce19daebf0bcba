"""Per-image reuse: a refresh hashes and assesses only the images the last run did not.

The `hashes` and `quality` rows of an image depend on that image's file alone (and on the
step's settings and code), so a rerun can take them from the tables the last run wrote
instead of decoding the file again; the tables then equal a cold build's, row for row and
byte for byte. The key is per image, not per image list: adding 5% new series, or new
images to old ones, costs the new images only (a Prefect cache keyed on the whole list
would miss and redo everything).

Both tables carry two notes in their Parquet metadata (`tv100.storage.tables.write_table`
keeps ``tv100.*`` keys):

- ``tv100.clean.fingerprint``: the settings that change a row (not the worker counts), the
  tables' schemas and the source of the modules that compute them. A different one reuses nothing.
- ``tv100.clean.items``: a digest of the ``(image_id, sha256)`` list the rows were made
  from. The two tables are written one after the other, so a run stopped between the two
  leaves them from different runs; rows are reused only when both digests agree.

An image is reused when the `hashes` row of its id holds the sha256 its file has now (a
file fetched again with other bytes is computed again) and both rows have ``status`` ok:
failed rows are cheap to redo and may have been transient (a worker that died).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tv100.storage.root import DataRoot
from tv100.storage.schemas import HASHES, QUALITY
from tv100.storage.tables import CorruptTableError, read_table, table_metadata
from tv100.tasks.clean import hashing, quality
from tv100.tasks.clean.config import HashConfig, QualityConfig

Item = tuple[str, str, str]  # image_id, path relative to the data root, sha256 of the file

FINGERPRINT_KEY = "tv100.clean.fingerprint"
ITEMS_KEY = "tv100.clean.items"
#: The tables whose rows are per image and reusable.
TABLES = ("hashes", "quality")
#: Settings that say how the work is spread, not what a row holds.
_NOT_IN_ROWS = ("workers", "chunksize")


def fingerprint(
    hash_config: HashConfig, quality_config: QualityConfig, exclusions_sha256: str | None
) -> str:
    """What the rows of both tables depend on besides the images: settings and code."""
    settings = {
        "hashing": {k: v for k, v in asdict(hash_config).items() if k not in _NOT_IN_ROWS},
        "quality": {k: v for k, v in asdict(quality_config).items() if k not in _NOT_IN_ROWS},
        "exclusions": exclusions_sha256,
        "schemas": [str(HASHES), str(QUALITY)],
    }
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for module in (hashing, quality):
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()


def items_digest(items: Sequence[Item]) -> str:
    """A digest of the ``(image_id, sha256)`` pairs, order-free."""
    h = hashlib.sha256()
    for image_id, sha in sorted((i, s or "") for i, _, s in items):
        h.update(f"{image_id}\t{sha}\n".encode())
    return h.hexdigest()


def with_notes(table: pa.Table, notes: dict[str, str]) -> pa.Table:
    """`table` carrying `notes` as schema metadata, for `write_table` to store."""
    return table.replace_schema_metadata({k.encode(): v.encode() for k, v in notes.items()})


@dataclass(frozen=True)
class Reuse:
    """The rows a run takes from the last one, and the images it still has to compute.

    Attributes:
        hashes: reused `hashes` rows (the schema's columns, any order).
        quality: reused `quality` rows, the same image ids.
        todo: items without reusable rows, in input order.
        notes: the metadata both new tables carry (`with_notes`).
    """

    hashes: pa.Table | None
    quality: pa.Table | None
    todo: list[Item]
    notes: dict[str, str]

    @property
    def reused(self) -> int:
        return 0 if self.hashes is None else self.hashes.num_rows


def _stored(root: DataRoot, fp: str) -> tuple[pa.Table, pa.Table] | None:
    """Both tables of the last run, when they were made with `fp` from the same items."""
    try:
        notes = [table_metadata(root, name) for name in TABLES]
        if any(n.get(FINGERPRINT_KEY) != fp for n in notes):
            return None
        if len({n.get(ITEMS_KEY) for n in notes}) != 1:
            return None
        return read_table(root, "hashes"), read_table(root, "quality")
    except (FileNotFoundError, CorruptTableError):
        return None  # nothing to reuse: the images are computed, the tables rewritten


def plan_reuse(root: DataRoot, items: Sequence[Item], fp: str) -> Reuse:
    """Split `items` into reused rows and images to compute (module docstring)."""
    notes = {FINGERPRINT_KEY: fp, ITEMS_KEY: items_digest(items)}
    stored = _stored(root, fp)
    if stored is None:
        return Reuse(None, None, list(items), notes)
    hashes, qual = stored
    ok_hash: dict[str, Any] = {
        r["image_id"]: r["sha256"]
        for r in hashes.select(["image_id", "sha256", "status"]).to_pylist()
        if r["status"] == "ok"
    }
    ok_quality = set(
        qual.filter(pc.equal(qual.column("status"), "ok")).column("image_id").to_pylist()
    )
    keep: list[str] = []
    todo: list[Item] = []
    for item in items:
        image_id, _, sha = item
        if sha is not None and ok_hash.get(image_id) == sha and image_id in ok_quality:
            keep.append(image_id)
        else:
            todo.append(item)
    ids = pa.array(keep, pa.string())
    return Reuse(
        hashes.filter(pc.is_in(hashes.column("image_id"), ids)),
        qual.filter(pc.is_in(qual.column("image_id"), ids)),
        todo,
        notes,
    )


def merged(reused: pa.Table | None, computed: pa.Table, notes: dict[str, str]) -> pa.Table:
    """Reused and computed rows as one table sorted by image_id (the order of a cold run,
    whose items come sorted), with `notes` attached."""
    parts = [computed] if reused is None else [reused.select(computed.column_names), computed]
    table = pa.concat_tables([p.cast(computed.schema) for p in parts])
    return with_notes(table.sort_by([("image_id", "ascending")]), notes)
