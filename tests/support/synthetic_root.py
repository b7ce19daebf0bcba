"""A synthetic data root whose every figure is known by hand (the report-stage tests).

`write_synthetic_root` writes the tables below under a new root; the constants are the
figures the tests expect back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.storage.schemas import (
    ANALYSIS_TABLES,
    CLASSES,
    DISCOVER_FETCHES,
    DUPLICATES,
    IMAGES,
    METRICS,
    QUALITY,
    RANK_MODELS,
    RELEVANCE,
    REVIEWS,
    SEARCH_HITS,
    SEARCH_PAGES,
    SERIES,
    SNAPSHOTS,
    SPLITS,
    ZEROSHOT,
)
from tv100.storage.tables import write_table

# ---- a synthetic data root whose every figure is known by hand ------------------------
#
# series  country year  ok  failed       junk                    dropped dups     class
# tt01    CN      2022  150 3 http_error 5 blank                 10 exact         kept
# tt02    CN      2022   60 1 timeout    2 low_entropy,too_small (1 clip moved)   kept
# tt03    JP      2023   30              -                       2 phash cross    kept
# tt04    KR      2023   10              -                       -                kept
# tt05    TH      2024    5              -                       -                not kept
# tt06    US      2024    0              -                       -                (unranked)
# after cleaning: tt01 135, tt02 58, tt03 28, tt04 10 (tt05 removed by the class filter)

SERIES_ROWS = [
    ("tt01", "Alpha", "CN", 2022, 150, 3, "http_error"),
    ("tt02", "Bravo", "CN", 2022, 60, 1, "timeout"),
    ("tt03", "Charlie", "JP", 2023, 30, 0, None),
    ("tt04", "Delta", "KR", 2023, 10, 0, None),
    ("tt05", "Echo", "TH", 2024, 5, 0, None),
    ("tt06", "Foxtrot", "US", 2024, 0, 0, None),
]
JUNK = {"tt01": (5, "blank"), "tt02": (2, "low_entropy,too_small")}
DROPPED = {"tt01": (10, "exact", "within_series"), "tt03": (2, "phash", "cross_series")}
MOVED = {"tt02": (1, "clip", "cross_split")}
KEPT = {"tt01": True, "tt02": True, "tt03": True, "tt04": True, "tt05": False}
BEFORE = [150, 60, 30, 10, 5]
AFTER = {"tt01": 135, "tt02": 58, "tt03": 28, "tt04": 10}
# model -> recipe -> [(run_id, val top1, test top1)]
RUNS = {
    "RN50": {
        "zeroshot": [("rn-zs", 0.03, 0.0208)],
        "finetune": [("rn-ft-a", 0.40, 0.4308), ("rn-ft-b", 0.35, 0.47)],
    },
    "ViT-B-16": {"finetune": [("vb-ft", 0.5, 0.5505)], "linear": [("vb-lin", 0.3, 0.31)]},
}
# zero-shot table: per series and model (n_images, top1); ViT-B-16 has no metrics zeroshot
ZEROSHOT_TOP1 = {"tt01": 0.0, "tt02": 0.1, "tt03": 0.0, "tt04": 0.5, "tt05": 0.9, "tt06": 0.2}
TS = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

#: Every table the report's analysis reads: the synthetic root writes them all by default.
ALL_TABLES = ANALYSIS_TABLES

# The real schemas, so a query that names a column the pipeline does not write fails here.
QUALITY_SCHEMA = QUALITY
DUPLICATES_SCHEMA = DUPLICATES
ZEROSHOT_SCHEMA = ZEROSHOT
CLASSES_SCHEMA = CLASSES
SPLITS_SCHEMA = SPLITS
METRICS_SCHEMA = METRICS


# ---- tables of the dataset card's datasheet (written only when named) ----------------------
#
# discover_fetches: 2 dataset files fetched ok, 1 refused by robots.txt.
# search_pages: per engine (bing, google), one result page per series (6 each); bing also
#   met a captcha (tt01 page 2); google timed out (tt02 page 2) and was refused by robots.txt
#   (tt03 page 2). bing's requests at SEARCH_TS, google's an hour later.
# search_hits: one per `images` row, same engine and URL.
# relevance: every cleaned image (after junk and dropped duplicates, tt05 included); the
#   scorer flags RELEVANCE_FLAGS; the reviews below were applied (rejects: irrelevant).
# reviews: tt01-0020 rejected; tt01-0021 accepted then rejected; tt02-0010 accepted.
# snapshots: two; rank_models: RN50, ViT-B-16.
# With `opt_outs`: tt06 gets OPT_OUT_ROWS images (three opted out, one robots.txt refusal).
DISCOVER_TS = datetime(2024, 4, 29, 8, 0, tzinfo=UTC)
SEARCH_TS = datetime(2024, 4, 30, 10, 0, tzinfo=UTC)
DISCOVER_FETCH_ROWS = [
    ("dataset", "https://datasets.imdbws.com/title.basics.tsv.gz", "ok", 6),
    ("dataset", "https://datasets.imdbws.com/title.ratings.tsv.gz", "ok", 6),
    ("dataset", "https://datasets.imdbws.com/title.akas.tsv.gz", "robots_disallowed", None),
]
SEARCH_EXTRA = [
    ("bing", "tt01", 2, "blocked"),
    ("google", "tt02", 2, "timeout"),
    ("google", "tt03", 2, "robots_disallowed"),
]
RELEVANCE_FLAGS = {"tt01": (3, "other_series"), "tt03": (1, "offtopic"), "tt05": (1, "offtopic")}
REVIEW_ROWS = [
    ("tt01-0020", "reject", "ann", TS + timedelta(hours=1)),
    ("tt01-0021", "accept", "ann", TS + timedelta(hours=2)),
    ("tt01-0021", "reject", "bob", TS + timedelta(hours=3)),
    ("tt02-0010", "accept", "bob", TS + timedelta(hours=4)),
]
SNAPSHOT_ROWS = [
    ("20240501T120000Z-aaaaaaaa", TS, 6, 255, 236, 4),
    ("20240502T120000Z-bbbbbbbb", TS + timedelta(days=1), 6, 255, 229, 4),
]
RANK_MODEL_ROWS = [(0, "RN50@openai", "RN50"), (1, "ViT-B-16@openai", "ViT-B-16")]
OPT_OUT_ROWS = [
    ("opted_out", "X-Robots-Tag: noai"),
    ("opted_out", "X-Robots-Tag: noai"),
    ("opted_out", 'source page: <meta name="robots"> noimageai'),
    ("robots_disallowed", "robots.txt disallows this URL"),
]
#: Every table the synthetic root can write: the analysis tables and the datasheet's.
DATASHEET_TABLES = ALL_TABLES + (
    "discover_fetches",
    "search_pages",
    "search_hits",
    "relevance",
    "reviews",
    "rank_models",
    "snapshots",
)


def _image_id(sid: str, k: int) -> str:
    return f"{sid}-{k:04d}"


def write_synthetic_root(
    path: str, tables: tuple[str, ...] = ALL_TABLES, opt_outs: bool = False
) -> DataRoot:
    """Write the synthetic tables above (only those named) under a new data root; with
    `opt_outs`, the `OPT_OUT_ROWS` images too."""
    root = DataRoot(path).ensure()
    if "series" in tables:
        rows = [
            {
                "series_id": sid,
                "title": title,
                "original_title": title,
                "kind": "tvSeries",
                "start_year": year,
                "end_year": None,
                "genres": ["Drama"],
                "countries": [c],
                "languages": ["xx"],
                "rating": 7.0,
                "num_votes": 1000,
                "source": "imdb-datasets",
                "discovered_at": TS,
            }
            for sid, title, c, year, *_ in SERIES_ROWS
        ]
        write_table(root, "series", pa.Table.from_pylist(rows, schema=SERIES))
    images, quality, dups, splits = [], [], [], []
    for sid, _t, _c, _y, n_ok, n_bad, bad_status in SERIES_ROWS:
        junk_n, junk_reason = JUNK.get(sid, (0, None))
        drop_n, drop_kind, drop_scope = DROPPED.get(sid, (0, None, None))
        move_n, move_kind, move_scope = MOVED.get(sid, (0, None, None))
        for k in range(n_ok + n_bad):
            iid = _image_id(sid, k)
            ok = k < n_ok
            images.append(
                {
                    "image_id": iid,
                    "series_id": sid,
                    "engine": ["bing", "google"][k % 2],
                    "rank": k + 1,
                    "url": f"http://host{k % 3}.example/{iid}.jpg",
                    "final_url": None,
                    "status": "ok" if ok else bad_status,
                    "http_status": 200 if ok else 503,
                    "error_message": None if ok else "failed",
                    "source_sha256": None,
                    "sha256": None,
                    "bytes": 1000,
                    "width": 256,
                    "height": 256,
                    "format": "jpeg",
                    "path": None,
                    "downloaded_at": TS,
                }
            )
            if not ok:
                continue
            junk = k < junk_n
            quality.append(
                {
                    "image_id": iid,
                    "is_junk": junk,
                    "reason": junk_reason if junk else None,
                    "status": "ok",
                }
            )
            # duplicates come after the junk images, so each image is removed once
            j = k - junk_n
            if 0 <= j < drop_n:
                dups.append(
                    {
                        "image_id": iid,
                        "kept_id": _image_id(sid, n_ok - 1),
                        "kind": drop_kind,
                        "distance": 0.0,
                        "scope": drop_scope,
                        "action": "drop",
                    }
                )
            elif drop_n <= j < drop_n + move_n:
                dups.append(
                    {
                        "image_id": iid,
                        "kept_id": _image_id(sid, n_ok - 1),
                        "kind": move_kind,
                        "distance": 0.01,
                        "scope": move_scope,
                        "action": "move_to_train",
                    }
                )
            elif j >= 0 and KEPT.get(sid):
                splits.append(
                    {
                        "image_id": iid,
                        "series_id": sid,
                        "class_index": int(sid[2:]) - 1,
                        "split": ("train", "train", "val", "test")[k % 4],
                    }
                )
    if opt_outs:
        for k, (status, message) in enumerate(OPT_OUT_ROWS):
            iid = _image_id("tt06", k)
            images.append({
                "image_id": iid, "series_id": "tt06", "engine": ["bing", "google"][k % 2],
                "rank": k + 1, "url": f"http://host{k % 3}.example/{iid}.jpg",
                "status": status, "error_message": message, "downloaded_at": TS,
            })
    extra = {
        "images": (images, IMAGES),
        "quality": (quality, QUALITY_SCHEMA),
        "duplicates": (dups, DUPLICATES_SCHEMA),
        "splits": (splits, SPLITS_SCHEMA),
        "zeroshot": (
            [
                {
                    "series_id": sid,
                    "model_key": m,
                    "n_images": AFTER.get(sid, 5),
                    "top1": ZEROSHOT_TOP1[sid],
                    "top5": min(1.0, ZEROSHOT_TOP1[sid] * 2 + 0.1),
                    "mean_true_prob": 0.01,
                    "confused_with": "tt01",
                    "n_classes": len(ZEROSHOT_TOP1),
                    "templates": ["a photo of the TV series {}"],
                }
                for m in ("RN50", "ViT-B-16")
                for sid in ZEROSHOT_TOP1
            ],
            ZEROSHOT_SCHEMA,
        ),
        "classes": (
            [
                {
                    "series_id": sid,
                    "title": sid.upper(),
                    "class_index": i if kept else None,
                    "kept": kept,
                    "reason": "hardest" if kept else "too_easy",
                    "accuracy": ZEROSHOT_TOP1[sid],
                    "n_images": AFTER.get(sid, 5),
                    "aggregate": "max",
                    "models": ["RN50", "ViT-B-16"],
                }
                for i, (sid, kept) in enumerate(KEPT.items())
            ],
            CLASSES_SCHEMA,
        ),
        "metrics": (
            [
                {
                    "run_id": run,
                    "model_key": m,
                    "recipe": r,
                    "hyperparameters": "{}",
                    "split": split,
                    "metric": "top1",
                    "value": v,
                }
                for m, recipes in RUNS.items()
                for r, runs in recipes.items()
                for run, val, test in runs
                for split, v in (("val", val), ("test", test))
            ],
            METRICS_SCHEMA,
        ),
    }
    extra.update(_datasheet_tables(images, quality, dups))
    for name, (rows_, schema) in extra.items():
        if name in tables:
            write_table(root, name, pa.Table.from_pylist(rows_, schema=schema), schema=schema)
    return root


def _datasheet_tables(
    images: list[dict], quality: list[dict], dups: list[dict]
) -> dict[str, tuple[list[dict], pa.Schema]]:
    """The datasheet's tables (see the comment above `DATASHEET_TABLES`)."""
    pages = [(e, sid, 1, "results") for e in ("bing", "google") for sid, *_ in SERIES_ROWS]
    removed = {q["image_id"] for q in quality if q["is_junk"]}
    removed |= {d["image_id"] for d in dups if d["action"] == "drop"}
    cleaned = [i for i in images if i["status"] == "ok" and i["image_id"] not in removed]
    reviewed = {iid: d for iid, d, _, _ in REVIEW_ROWS}  # in time order: the latest wins
    relevance = []
    for i in cleaned:
        n_flagged, reason = RELEVANCE_FLAGS.get(i["series_id"], (0, None))
        first = next(j for j in cleaned if j["series_id"] == i["series_id"])["rank"]
        auto_reason = reason if i["rank"] - first < n_flagged else None
        auto = "irrelevant" if auto_reason else "keep"
        human = reviewed.get(i["image_id"])
        decision = "irrelevant" if human == "reject" else "keep" if human else auto
        relevance.append({
            "image_id": i["image_id"], "series_id": i["series_id"],
            "score": 0.1 if auto_reason else 0.9, "decision": decision,
            "reason": "review" if human and decision != auto else auto_reason,
            "method": "cleanlab+knn:RN50", "auto_decision": auto, "auto_reason": auto_reason,
        })
    return {
        "discover_fetches": (
            [{"source": "imdb-datasets", "kind": kind, "url": url, "status": status,
              "http_status": 200 if status == "ok" else None, "records": records,
              "fetched_at": DISCOVER_TS + timedelta(minutes=n)}
             for n, (kind, url, status, records) in enumerate(DISCOVER_FETCH_ROWS)],
            DISCOVER_FETCHES,
        ),
        "search_pages": (
            [{"series_id": sid, "engine": e, "query": f"{sid} TV Series", "kind": "results",
              "page": page, "url": f"http://{e}.example/?q={sid}&p={page}", "status": status,
              "hits": 1 if status == "results" else None,
              "fetched_at": SEARCH_TS + timedelta(hours=e == "google")}
             for e, sid, page, status in pages + SEARCH_EXTRA],
            SEARCH_PAGES,
        ),
        "search_hits": (
            [{"series_id": i["series_id"], "engine": i["engine"], "query": "q", "page": 1,
              "rank": i["rank"], "image_url": i["url"],
              "fetched_at": SEARCH_TS + timedelta(hours=i["engine"] == "google")}
             for i in images],
            SEARCH_HITS,
        ),
        "relevance": (sorted(relevance, key=lambda r: r["image_id"]), RELEVANCE),
        "reviews": (
            [{"image_id": iid, "decision": d, "reviewer": who, "decided_at": at}
             for iid, d, who, at in REVIEW_ROWS],
            REVIEWS,
        ),
        "rank_models": (
            [{"position": p, "model": m, "model_key": k} for p, m, k in RANK_MODEL_ROWS],
            RANK_MODELS,
        ),
        "snapshots": (
            [{"snapshot_id": sid, "created_at": at, "state_sha256": sid[-8:] * 8,
              "table_hashes": "{}", "n_series": s, "n_images_ok": ok, "n_cleaned": cl,
              "n_kept": kept}
             for sid, at, s, ok, cl, kept in SNAPSHOT_ROWS],
            SNAPSHOTS,
        ),
    }
