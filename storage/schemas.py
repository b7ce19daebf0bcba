"""One pyarrow schema per table, declared once.

Every stage writes through `storage.tables`, which validates against these schemas, so a
column added here is the only change needed for DuckDB views and readers to see it.
"""

from __future__ import annotations

import pyarrow as pa

#: Bumped when a schema changes incompatibly; written into every data root.
SCHEMA_VERSION = 1

UTC_TS = pa.timestamp("us", tz="UTC")

SERIES = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("original_title", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("start_year", pa.int32()),
        pa.field("end_year", pa.int32()),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("countries", pa.list_(pa.string())),
        pa.field("languages", pa.list_(pa.string())),
        pa.field("rating", pa.float32()),
        pa.field("num_votes", pa.int64()),
        pa.field("source", pa.string()),
        pa.field("discovered_at", UTC_TS),
    ]
)



DISCOVER_FETCHES = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("url", pa.string()),
        pa.field("status", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("error_message", pa.string()),
        pa.field("records", pa.int64()),
        pa.field("fetched_at", UTC_TS),
    ]
)

IMAGES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("series_id", pa.string()),
        pa.field("engine", pa.string()),
        pa.field("rank", pa.int32()),
        pa.field("url", pa.string()),
        pa.field("final_url", pa.string()),
        pa.field("status", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("error_message", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("path", pa.string()),
        pa.field("downloaded_at", UTC_TS),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "series": SERIES,
    "discover_fetches": DISCOVER_FETCHES,
    "images": IMAGES,
}

def schema_for(name: str) -> pa.Schema:
    """Return the declared schema of table `name`.

    Raises:
        KeyError: naming the table and the known ones.
    """
    try:
        return SCHEMAS[name]
    except KeyError as err:
        known = ", ".join(sorted(SCHEMAS))
        raise KeyError(f"unknown table {name!r}; expected one of: {known}") from err
