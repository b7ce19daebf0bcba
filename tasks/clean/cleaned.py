"""The cleaned set: images downloaded ok, not junk, not dropped as a duplicate.

The clean stage's tasks (`tv100.tasks.clean.steps`) write the `quality` and `duplicates`
tables; this module defines what is left once they are applied.
"""

from __future__ import annotations

from importlib.resources import files

import duckdb
import pyarrow as pa

from tv100.storage.catalog import complete_tables, connect
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import table_exists

#: The view `add_cleaning_view` creates from ``cleaned.sql``: the clean stage's verdict on
#: every `images` row (``removed_by`` NULL: cleaned).
CLEANING_VIEW = "image_cleaning"
#: Columns of `cleaned_images`, typed as in the `images` schema.
CLEANED_COLUMNS = ("image_id", "series_id", "path", "sha256", "width", "height")


def add_cleaning_view(con: duckdb.DuckDBPyConnection) -> None:
    """Create the `CLEANING_VIEW` view (``cleaned.sql``) on a catalog connection.

    The tables it reads (images, quality, duplicates) must exist: see
    `tv100.storage.catalog.complete_tables`.
    """
    sql = files("tv100.tasks.clean").joinpath("cleaned.sql").read_text(encoding="utf-8")
    con.execute(f"CREATE VIEW IF NOT EXISTS {CLEANING_VIEW} AS {sql}")


def cleaned_images(root: DataRoot) -> pa.Table:
    """Images downloaded ok, not junk, not dropped as duplicates (``cleaned.sql``).

    Columns `CLEANED_COLUMNS`, sorted by image_id. Stages after clean read their inputs
    from here.

    Raises:
        FileNotFoundError: the root has no `images` table.
    """
    if not table_exists(root, "images"):
        raise FileNotFoundError(f"table 'images' not found under {root.url!r}")
    con = connect(root)
    try:
        complete_tables(con, ("images", "quality", "duplicates"))
        add_cleaning_view(con)
        cols = ", ".join(CLEANED_COLUMNS)
        rel = con.sql(
            f"select {cols} from {CLEANING_VIEW} where removed_by is null order by image_id"
        )
        table = rel.to_arrow_table()
    finally:
        con.close()
    return table.cast(pa.schema([IMAGES.field(c) for c in CLEANED_COLUMNS]))
