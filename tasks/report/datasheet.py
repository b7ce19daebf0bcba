"""The dataset card's datasheet: the figures of its "Datasheets for Datasets" sections.

The dataset card (`tv100.tasks.report.card`) follows "Datasheets for Datasets" (Gebru et
al., 2021) under a YAML header with the Hugging Face dataset card fields. `read_datasheet`
runs the named queries behind those sections (the ``card_*`` files of ``queries/``, and
the ``kept_classes`` and ``duplicates_by_kind`` examples) on a catalog connection, whatever
stage the build reached: each table of `DATASHEET_TABLES` that is missing reads as empty.
`yaml_header` and `to_yaml` write the header; `datasheet_rows` lists the datasheet's
numbers for ``metrics.csv``.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from tv100.storage.catalog import complete_tables
from tv100.tasks.report.analysis import DatasetFacts, prepare, run_query
from tv100.tasks.report.config import ReportConfig

#: Tables the datasheet reads besides `ANALYSIS_TABLES` (any may be missing: an empty view).
DATASHEET_TABLES = (
    "discover_fetches",
    "search_pages",
    "search_hits",
    "relevance",
    "reviews",
    "rank_models",
    "snapshots",
)
#: `Datasheet` field -> the named query filling it (``card_*`` files and two examples).
DATASHEET_QUERIES = {
    "classes": "card_classes",
    "countries": "card_countries",
    "engines": "card_engines",
    "timeline": "card_timeline",
    "funnel": "card_funnel",
    "selection": "kept_classes",
    "duplicates": "duplicates_by_kind",
    "rank": "card_rank",
    "optouts": "card_optouts",
    "reviews": "card_reviews",
    "popularity": "card_popularity",
    "noise": "card_noise",
    "snapshots": "card_snapshots",
    "formats": "card_formats",
}
#: The filters of ``card_funnel``, as the card names them.
FUNNEL_LABELS = {
    "found": "image rows found by search",
    "download": "download failed or refused (status not `ok`)",
    "quality": "junk (quality filters)",
    "exact_duplicates": "exact duplicates (same sha256)",
    "near_duplicates": "near duplicates (pHash, dHash or CLIP)",
    "relevance": "irrelevant to their series (scorer or human)",
    "too_few_images": "images of series with too few (relevant) images",
    "classes": "images of series not kept (too easy for CLIP, or not ranked)",
}
#: Hugging Face ``size_categories`` buckets: (upper bound, label), the last unbounded.
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
LICENCE_DETAILS = (
    "The images remain the copyright of their owners, collected from public web pages for "
    "non-commercial research use only; series metadata is IMDb's, under its terms for "
    "personal and non-commercial use."
)


@dataclass(frozen=True)
class Datasheet:
    """The datasheet's figures: one result per `DATASHEET_QUERIES` entry (`read_datasheet`).

    Attributes:
        present: the tables of `DATASHEET_TABLES` that exist under the root.
        classes, countries, engines, timeline, funnel, selection, duplicates, optouts,
            popularity, noise, snapshots, formats: the named queries' results.
        rank, reviews: the one row of ``card_rank`` and ``card_reviews``.
    """

    present: frozenset[str]
    classes: pa.Table
    countries: pa.Table
    engines: pa.Table
    timeline: pa.Table
    funnel: pa.Table
    selection: pa.Table
    duplicates: pa.Table
    rank: Mapping[str, Any]
    optouts: pa.Table
    reviews: Mapping[str, Any]
    popularity: pa.Table
    noise: pa.Table
    snapshots: pa.Table
    formats: pa.Table


def read_datasheet(con: duckdb.DuckDBPyConnection, config: ReportConfig) -> Datasheet:
    """Run the datasheet's named queries on a catalog connection (whatever stage the build
    reached: a missing table reads as empty).

    Args:
        con: a connection from `tv100.storage.catalog.connect`.
        config: the report's knobs (the tiers of ``card_classes``).
    """
    prepare(con)
    present = complete_tables(con, DATASHEET_TABLES)
    tiers = {"many": config.tiers.many, "few": config.tiers.few}
    out: dict[str, Any] = {"present": present}
    for key, name in DATASHEET_QUERIES.items():
        table = run_query(con, name, **tiers)
        out[key] = table.to_pylist()[0] if key in ("rank", "reviews") else table
    return Datasheet(**out)


def empty_datasheet(config: ReportConfig) -> Datasheet:
    """The datasheet of a data root with no table (what a card without one states)."""
    con = duckdb.connect(":memory:")
    try:
        return read_datasheet(con, config)
    finally:
        con.close()


def size_category(n_images: int) -> str:
    """The Hugging Face ``size_categories`` value of a dataset of `n_images` images."""
    for bound, label in SIZE_CATEGORIES:
        if n_images < bound:
            return label
    return "n>1T"


_PLAIN_YAML = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return ".nan" if math.isnan(v) else ".inf" if v > 0 else "-.inf"
        text = repr(v)
        # YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent
        return text if "." in text else text.replace("e", ".0e", 1)
    s = str(v)
    if _PLAIN_YAML.fullmatch(s) and s.lower() not in _YAML_WORDS:
        return s
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:  # controls, line and paragraph separators, format characters: escaped
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML lines of nested mappings, lists and scalars (str, int, float, bool,
    None; strings quoted where YAML would read them otherwise): ``yaml.safe_load`` reads
    back the same values."""
    pad, lines = "  " * indent, []
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = _yaml_scalar(str(k))
            if isinstance(v, Mapping | list) and v:
                lines.append(f"{pad}{key}:")
                lines += to_yaml(v, indent + 1)
            else:
                lines.append(f"{pad}{key}: {_yaml_value(v)}")
    else:
        for item in value:
            if isinstance(item, Mapping | list) and item:
                sub = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_yaml_value(item)}")
    return lines


def _yaml_value(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{}"
    return "[]" if isinstance(v, list) else _yaml_scalar(v)


def tv100_version() -> str:
    """The installed tv100's version (``unknown`` outside an installed package)."""
    try:
        return importlib.metadata.version("tv100")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def yaml_header(facts: DatasetFacts, splits: pa.Table, ds: Datasheet) -> dict[str, Any]:
    """The card's YAML header: the Hugging Face dataset card fields, from the tables.

    ``dataset_info`` (the image and label features, the class names by class index, and
    the examples per split) is there once the classes have indices.
    """
    reviewed = bool(ds.reviews["n_decisions"])
    header: dict[str, Any] = {
        "pretty_name": "TV100: TV series a pre-trained CLIP has not seen",
        "license": "other",
        "license_name": "third-party-images-research-only",
        "license_details": LICENCE_DETAILS,
        "language": ["en"],
        "task_categories": ["image-classification"],
        "task_ids": ["multi-class-image-classification"],
        "size_categories": [size_category(facts.n_images_clean)],
        "annotations_creators": ["found", "machine-generated"]
        + (["expert-generated"] if reviewed else []),
        "source_datasets": ["original"],
        "tags": ["tv-series", "unseen-classes", "clip", "long-tail", "incremental-learning",
                 "novel-class-discovery"],
    }
    classes = sorted(
        (r["class_index"], r["class_name"] or r["series_id"]) for r in ds.classes.to_pylist()
        if r["class_index"] is not None
    )
    if classes and len(classes) == ds.classes.num_rows:
        label = {"class_label": {"names": {str(i): name for i, name in classes}}}
        info: dict[str, Any] = {
            "features": [{"name": "image", "dtype": "image"}, {"name": "label", "dtype": label}]
        }
        if splits.num_rows:
            info["splits"] = [
                {"name": r["split"], "num_examples": r["n_images"]} for r in splits.to_pylist()
            ]
        header["dataset_info"] = info
    return header


def datasheet_rows(ds: Datasheet) -> list[tuple[str, str, str, Any]]:
    """The datasheet's numbers as ``metrics.csv`` rows ``(section, key, metric, value)``."""
    rows: list[tuple[str, str, str, Any]] = []
    for r in ds.classes.to_pylist():
        for k in ("n_train", "n_val", "n_test", "n_images"):
            rows.append(("class", r["series_id"], k.removeprefix("n_"), r[k]))
    for r in ds.countries.to_pylist():
        for k in ("n_candidates", "n_images"):
            rows.append(("countries", r["country"], k.removeprefix("n_"), r[k]))
    for r in ds.engines.to_pylist():
        for k in ("n_series", "n_requests", "n_result_pages", "n_blocked", "n_failed",
                  "n_hits", "n_images", "n_downloaded"):
            rows.append(("engines", r["engine"], k.removeprefix("n_"), r[k]))
    for r in ds.funnel.to_pylist():
        rows.append(("funnel", r["step"], "removed", r["n_removed"]))
        rows.append(("funnel", r["step"], "left", r["n_left"]))
    for r in ds.optouts.to_pylist():
        rows.append(("opt_outs", r["step"], r["directive"], r["n"]))
    for key in ("n_candidates", "n_kept", "n_classified_among"):
        rows.append(("rank", "", key.removeprefix("n_"), ds.rank[key]))
    for key in ("n_decisions", "n_images", "n_accepted", "n_rejected", "n_reviewers"):
        rows.append(("reviews", "", key.removeprefix("n_"), ds.reviews[key]))
    for r in ds.popularity.to_pylist():
        for k in ("n_series", "median_votes", "mean_votes"):
            rows.append(("popularity", r["series_group"], k, r[k]))
    for r in ds.noise.to_pylist():
        if not r["n_judged"]:
            continue
        engine = r["engine"] or "all"
        rows.append(("noise", engine, "judged", r["n_judged"]))
        rows.append(("noise", engine, "irrelevant", r["n_irrelevant"]))
        rows.append(("noise", engine, "irrelevant_share", r["irrelevant_share"]))
    rows.append(("snapshots", "", "count", ds.snapshots.num_rows))
    return rows
