"""Near-duplicate pair cache: the last run's pairs by code value, so a refresh searches new codes.

One Parquet file under the data root (`PAIRS_PATH`), outside ``tables/``: it is no table
of the dataset, only what makes the next run faster. Rows per search ``kind`` (``phash``,
``dhash``) with its ``threshold``: a value row (``b`` null) per distinct code searched, a
pair row ``(a, b, distance)`` per pair of codes within the threshold. Each kind is used
only by a search with the same threshold (`tv100.tasks.clean.pairs.incremental_hamming_pairs`
checks). A missing, unreadable or inconsistent file means a full search, never an error.

The file's bytes are a function of the run's codes and thresholds alone (rows sorted,
`to_parquet_bytes` deterministic), and equal bytes are not rewritten: re-running a finished
build writes nothing.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tv100.storage.root import DataRoot, write_bytes_atomic
from tv100.storage.tables import read_parquet, to_parquet_bytes
from tv100.tasks.clean.groups import PairCache
from tv100.tasks.clean.pairs import ValuePairs

log = logging.getLogger(__name__)

PAIRS_PATH = "cache/clean/neardup_pairs.parquet"
#: Bumped when the file's layout or meaning changes: other versions are ignored.
PAIRS_FORMAT = b"1"
_FORMAT_KEY = b"tv100.neardup_pairs_format"
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("threshold", pa.int16(), nullable=False),
        pa.field("a", pa.uint64(), nullable=False),
        pa.field("b", pa.uint64()),  # null: a value row
        pa.field("distance", pa.uint8()),
    ],
    metadata={_FORMAT_KEY: PAIRS_FORMAT},
)


def pairs_table(cache: PairCache) -> pa.Table:
    """`cache` as rows of `PAIRS_SCHEMA`: kinds in name order, value rows, then pair rows."""
    parts = []
    for kind in sorted(cache):
        p = cache[kind]
        nv, npairs = len(p.values), len(p.a)
        parts.append(
            pa.table(
                {
                    "kind": pa.repeat(pa.scalar(kind, pa.string()), nv + npairs),
                    "threshold": pa.array(np.full(nv + npairs, p.threshold, np.int16)),
                    "a": pa.array(np.concatenate([p.values, p.a]).astype(np.uint64)),
                    "b": pa.array(
                        np.concatenate([np.zeros(nv, np.uint64), p.b.astype(np.uint64)]),
                        mask=np.arange(nv + npairs) < nv,
                    ),
                    "distance": pa.array(
                        np.concatenate([np.zeros(nv, np.uint8), p.distance.astype(np.uint8)]),
                        mask=np.arange(nv + npairs) < nv,
                    ),
                },
                schema=PAIRS_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else PAIRS_SCHEMA.empty_table()


def _value_pairs(kind: str, rows: pa.Table) -> ValuePairs:
    """One kind's rows as `ValuePairs`.

    Raises:
        ValueError: the rows are not what `pairs_table` writes.
    """
    thresholds = np.unique(rows.column("threshold").to_numpy())
    if len(thresholds) != 1:
        raise ValueError(f"{kind} rows have thresholds {thresholds.tolist()}; expected one")
    is_pair = rows.column("b").is_valid().to_numpy(zero_copy_only=False)
    a = rows.column("a").to_numpy()
    values = a[~is_pair]
    pairs = rows.filter(pa.array(is_pair))
    pa_, pb = pairs.column("a").to_numpy(), pairs.column("b").to_numpy()
    dist = pairs.column("distance").to_numpy(zero_copy_only=False).astype(np.uint8)
    t = int(thresholds[0])
    found = ValuePairs(t, values, pa_, pb, dist)
    # Cheap checks against a damaged file: sorted distinct values, true distances.
    if len(values) > 1 and not bool(np.all(values[1:] > values[:-1])):
        raise ValueError(f"{kind} values are not sorted and distinct")
    if not bool(np.all(pa_ < pb)) or not bool(np.all(dist <= t)):
        raise ValueError(f"{kind} pairs are not a < b within the threshold")
    if not np.array_equal(np.bitwise_count(pa_ ^ pb), dist):
        raise ValueError(f"{kind} pair distances are wrong")
    pos = np.searchsorted(values, np.concatenate([pa_, pb]))
    if len(pos) and (pos.max() >= len(values) or not np.array_equal(
            values[pos], np.concatenate([pa_, pb]))):
        raise ValueError(f"{kind} pairs name values that are not in its value rows")
    return found


def read_pairs(root: DataRoot) -> PairCache:
    """The cache the last run left under `root`; empty when there is none or it cannot be
    used (logged, never raised: the search then looks at every code)."""
    path = root.path(PAIRS_PATH)
    try:
        if not root.fs.exists(path):
            log.debug("near-dup pair cache %s absent: searching all codes", path)
            return {}
        with root.fs.open(path, "rb") as f:
            table = read_parquet(f)
        if (table.schema.metadata or {}).get(_FORMAT_KEY) != PAIRS_FORMAT:
            raise ValueError(f"format is not {PAIRS_FORMAT.decode()}")
        table = table.replace_schema_metadata(None).cast(PAIRS_SCHEMA.remove_metadata())
        kinds = table.column("kind")
        return {
            kind: _value_pairs(kind, table.filter(pc.equal(kinds, kind)))
            for kind in sorted(pc.unique(kinds).to_pylist())  # not 1 M Python strings
        }
    except Exception as err:  # any damage only costs a full search
        log.info("near-dup pair cache %s unusable (%s): searching all codes", path,
                 " ".join(str(err).split()) or type(err).__name__)
        return {}


def write_pairs(root: DataRoot, cache: PairCache) -> bool:
    """Store `cache` under `root` (atomically) unless the same bytes are there; return
    whether it wrote."""
    data = to_parquet_bytes(pairs_table(cache))
    path = root.path(PAIRS_PATH)
    if root.fs.exists(path):
        with root.fs.open(path, "rb") as f:
            if f.read() == data:
                return False
    write_bytes_atomic(root, PAIRS_PATH, data)
    return True
