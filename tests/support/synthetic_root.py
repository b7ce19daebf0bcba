"""A synthetic data root whose every figure is known by hand (the report-stage tests).

`write_synthetic_root` writes the tables below under a new root; the constants are the
figures the tests expect back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.storage.schemas import (
    ANALYSIS_TABLES,
    CLASSES,
    DUPLICATES,
    IMAGES,
    METRICS,
    QUALITY,
    SERIES,
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


def _image_id(sid: str, k: int) -> str:
    return f"{sid}-{k:04d}"


def write_synthetic_root(path: str, tables: tuple[str, ...] = ALL_TABLES) -> DataRoot:
    """Write the synthetic tables above (only those named) under a new data root."""
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
    for name, (rows_, schema) in extra.items():
        if name in tables:
            write_table(root, name, pa.Table.from_pylist(rows_, schema=schema), schema=schema)
    return root
