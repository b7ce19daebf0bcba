"""One pyarrow schema per table, declared once.

Every stage writes through `tv100.storage.tables`, which validates against these schemas, so a
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
        pa.field("parsed_from", pa.string()),  # next_data | json_ld (imdb-web); null: datasets
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
        # image_url | og_image | thumbnail | source_page (tv100.tasks.collect.shards.SOURCES);
        # null in rows written before the column
        pa.field("source", pa.string()),
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
        # runs that have tried this image, this row's included; null in rows written before
        # the column (read as 1)
        pa.field("attempts", pa.int32()),
        # the failure may pass (timeout, 429, 5xx, connection error): a later run tries again
        # (tv100.tasks.collect.shards.is_transient); null in rows written before the column
        pa.field("is_transient", pa.bool_()),
    ]
)
"""Table `images`: one row per distinct image URL per series (`tv100.tasks.collect.shards`).

`url` is the hit's `image_url` (the thumbnail, for a thumbnail-only hit); `final_url` the URL
of the stored bytes (after redirects) or of the response that decided `status`. `source` is
what the row is about: ``image_url`` (the hit's own URL), ``og_image`` (a thumbnail-only
hit's source page named the image, which was stored or opted out itself), ``thumbnail`` (the
thumbnail, stored when the page's image could not be: `error_message` gives the page's reason
only when the thumbnail failed too) or ``source_page`` (the page opted out of AI use:
``opted_out``, nothing downloaded).

A transient failure (`is_transient`) is tried again by a later run, once its backoff since
`downloaded_at` has passed, until `attempts` reaches `DownloadConfig.max_attempts`; the new
row replaces the old one. Every other status is final.
"""

SEARCH_HITS = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("image_url", pa.string(), nullable=False),
        pa.field("thumb_url", pa.string()),
        pa.field("page_url", pa.string()),
        pa.field("title", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("thumbnail_only", pa.bool_()),
        pa.field("fetched_at", UTC_TS, nullable=False),
    ]
)
"""Table `search_hits`: one row per distinct image (canonical URL) per series and engine.

`page` is the 1-based result page the hit was first seen on; `rank` is 1-based within
(series_id, engine) after deduplication; `width`/`height` are what the engine reported.
`thumbnail_only` is true when the engine gave only a thumbnail (Google's basic-HTML layout):
`image_url` is then that thumbnail and the full image is to be looked for on `page_url`
(its ``og:image``); false (or null in tables written before the column) for full images.
"""

SEARCH_PAGES = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("error_message", pa.string()),
        pa.field("hits", pa.int32()),
        pa.field("new_hits", pa.int32()),
        pa.field("fetched_at", UTC_TS, nullable=False),
    ]
)
"""Table `search_pages`: one row per request made by the fetchers, failed ones included.

`kind` is ``results`` (a result page, `page` 1, 2, …) or ``token`` (DuckDuckGo's HTML page
read for the vqd token, `page` 0). `status` of a request that got no page is the
`tv100.tasks.web.config.Fetched` status (``http_error``, ``timeout``, ``too_large``,
``blocked`` with a null `http_status`: an address the HTTP layer refused, ``error``). A page
that was fetched gets its page class (`tv100.tasks.collect.pages`): ``results`` (the
engine's results, one at least readable), ``no_results`` (the engine's explicit "nothing matched"),
``blocked`` (a captcha, a JavaScript challenge, a consent wall or a WAF challenge instead of
results; `error_message` reads ``"<kind>: <what the page showed>"``) or ``unknown_layout``
(a page the engine's parser does not understand; `error_message` says what it lacked). A
token page read is ``ok``; one without a token is ``blocked`` or ``unknown_layout``.
`hits` counts the valid hits parsed on the page, `new_hits` those not seen before (after
the cap); both are null for failed, blocked and unknown-layout requests and token pages.
"""

QUALITY = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("blank_score", pa.float64()),
        pa.field("is_blank", pa.bool_()),
        pa.field("low_entropy_score", pa.float64()),
        pa.field("is_low_entropy", pa.bool_()),
        pa.field("too_small_score", pa.int32()),
        pa.field("is_too_small", pa.bool_()),
        pa.field("extreme_aspect_score", pa.float64()),
        pa.field("is_extreme_aspect", pa.bool_()),
        pa.field("is_excluded", pa.bool_()),
        pa.field("exclude_reason", pa.string()),
        pa.field("is_junk", pa.bool_()),
        pa.field("reason", pa.string()),
        pa.field("status", pa.string()),  # ok | decode_error
        pa.field("error_message", pa.string()),
        # mean spread of a pixel's channels (max - min, 0..255): ~0 for a grayscale picture;
        # duplicate groups keep a colour member over a grayscale copy (tv100.tasks.clean.groups)
        pa.field("chroma_score", pa.float64()),
    ]
)

HASHES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.string()),  # 16 hex digits, 64 bits
        pa.field("dhash", pa.string()),  # 16 hex digits, 64 bits
        pa.field("width", pa.int32()),  # of the full image, not of the drafted one
        pa.field("height", pa.int32()),
        pa.field("status", pa.string()),  # ok | decode_error
        pa.field("error_message", pa.string()),
    ]
)

DUPLICATES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),  # the dropped (or moved) image
        pa.field("kept_id", pa.string()),  # null when the whole group is dropped
        pa.field("group_id", pa.string()),  # the group's representative
        pa.field("matched_id", pa.string()),  # the image the pair kind/distance refer to
        pa.field("kind", pa.string()),  # exact | phash | dhash | clip
        pa.field("distance", pa.float64()),  # Hamming bits, or 1 - cosine for clip
        pa.field("scope", pa.string()),  # within_series | cross_series | cross_split
        pa.field("series_id", pa.string()),  # of image_id
        pa.field("action", pa.string()),  # drop | move_to_train
    ]
)

SPLITS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("class_index", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train | val | test
    ]
)

EMBEDDINGS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32())),  # unit length; null unless status is ok
        pa.field("status", pa.string(), nullable=False),  # ok | read_error | decode_error
        pa.field("error_message", pa.string()),
    ]
)
"""Table `embeddings`: one row per (image, model)."""

ZEROSHOT = pa.schema(
    [
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("n_images", pa.int64(), nullable=False),  # images classified
        pa.field("top1", pa.float64()),  # null when n_images is 0
        pa.field("top5", pa.float64()),  # true series among the 5 most probable
        pa.field("mean_true_prob", pa.float64()),  # mean softmax probability of the truth
        pa.field("confused_with", pa.string()),  # most frequent wrong top-1 series
        pa.field("confused_title", pa.string()),
        pa.field("confused_share", pa.float64()),  # share of the images predicted as it
        pa.field("n_classes", pa.int32(), nullable=False),  # candidates classified among
        pa.field("templates", pa.list_(pa.string()), nullable=False),
        pa.field(  # the TOP_CONFUSIONS most frequent wrong top-1 series, most frequent first;
            "confusions",  # [] when no image is mistaken, null when n_images is 0
            pa.list_(pa.struct([
                pa.field("series_id", pa.string()),
                pa.field("title", pa.string()),
                pa.field("share", pa.float64()),  # share of the series' images predicted as it
            ])),
        ),
    ]
)
"""Table `zeroshot`: one row per (model, candidate series); sorted by model_key, series_id."""

CLASSES = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("class_index", pa.int32()),  # 0..K-1 by series_id among the kept; else null
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        # hardest | too_easy | too_few_images | too_few_relevant | seen
        pa.field("rank", pa.int32()),  # 1 = hardest among the eligible; null if too few images
        pa.field("accuracy", pa.float64()),  # the accuracy ranked on (aggregate over models)
        pa.field("n_images", pa.int64(), nullable=False),
        pa.field("aggregate", pa.string(), nullable=False),  # max | mean | all | vote
        pa.field("models", pa.list_(pa.string()), nullable=False),
        # all | vote: top-1 above which a model has seen it; else null
        pa.field("seen_threshold", pa.float64()),
        pa.field("min_unseen", pa.int32()),  # all | vote: models that had to find it unseen
        pa.field("n_unseen", pa.int32()),  # all | vote: models at or below seen_threshold
    ]
)
"""Table `classes`: one row per candidate series; sorted by series_id."""

RELEVANCE = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("series_id", pa.string(), nullable=False),  # the series it was found for
        pa.field("score", pa.float64()),  # label quality 0..1, higher: relevant; null: unscored
        pa.field("outlier_score", pa.float64()),  # robust z of its kNN fit in its series
        pa.field("suspected_series_id", pa.string()),  # most probable series, if another
        pa.field("decision", pa.string(), nullable=False),  # keep | irrelevant
        pa.field("reason", pa.string()),  # other_series | offtopic; null when kept
        pa.field("method", pa.string(), nullable=False),  # cleanlab+knn:<model_key> | off
        pa.field("auto_decision", pa.string()),  # keep | irrelevant: the scorer's, before review
        pa.field("auto_reason", pa.string()),  # the scorer's reason
    ]
)
"""Table `relevance`: one row per cleaned image (`tv100.tasks.rank.relevance`); sorted by
image_id. The rank and train stages leave out the `irrelevant` ones. `decision` and `reason`
are final: a human review (table `reviews`) overrides the scorer's `auto_decision` (a
``reject`` gives ``irrelevant`` with reason ``review``; an ``accept`` gives ``keep``, reason
``review`` where the scorer said ``irrelevant``)."""

REVIEWS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),  # accept | reject
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("decided_at", UTC_TS, nullable=False),
    ]
)
"""Table `reviews`: human decisions on images (`tv100 review`), append-only: one shard per
decision as it is made, never rewritten. An image's latest decision (by `decided_at`) wins."""

RANK_MODELS = pa.schema(
    [
        pa.field("position", pa.int32(), nullable=False),  # order the models were given in
        pa.field("model", pa.string(), nullable=False),  # ARCH@WEIGHTS or local-dir:FOLDER
        pa.field("model_key", pa.string(), nullable=False),
    ]
)
"""Table `rank_models`: the CLIPs of the last rank run, one row per model, in their order
(`tv100.tasks.rank.recorded`); the default models of rank, train and rerank. Local paths are
absolute. Replaced by each rank run."""

#: Table ``metrics``: one scalar metric of one run on one split (long format; the scalars
#: of `tv100.tasks.train.metrics.metric_rows`: top1, top5, balanced_accuracy, many, medium, few).
#: `hyperparameters` is the run's knobs plus what it chose on val, as sorted JSON.
METRICS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("hyperparameters", pa.string()),
        pa.field("split", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("created_at", UTC_TS),
    ]
)

#: Table ``class_metrics``: top-1 accuracy of one run on one class of one split, with the
#: class's training-image count and long-tail tier (`tv100.tasks.train.metrics.Tiers`).
CLASS_METRICS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("class_index", pa.int32(), nullable=False),
        pa.field("series_id", pa.string()),
        pa.field("n", pa.int64()),
        pa.field("accuracy", pa.float64()),
        pa.field("train_count", pa.int64()),
        pa.field("tier", pa.string()),
    ]
)

#: Table ``snapshots``: one row per distinct finished build state
#: (`tv100.tasks.snapshots.snapshots`).
#: `snapshot_id` is ``<created_at as YYYYMMDDTHHMMSSZ>-<state_sha256[:8]>`` (time-ordered,
#: content-tagged); `state_sha256` hashes `table_hashes` (``{table: sha256 of its Parquet
#: bytes}`` as sorted JSON), `parameters` is the build's resolved parameters as sorted JSON.
#: The counts are null when the table they count is missing. Sorted by created_at.
SNAPSHOTS = pa.schema(
    [
        pa.field("snapshot_id", pa.string(), nullable=False),
        pa.field("created_at", UTC_TS, nullable=False),
        pa.field("state_sha256", pa.string(), nullable=False),
        pa.field("parameters", pa.string()),
        pa.field("table_hashes", pa.string(), nullable=False),
        pa.field("n_series", pa.int64()),
        pa.field("n_images_ok", pa.int64()),
        pa.field("n_cleaned", pa.int64()),
        pa.field("n_kept", pa.int64()),
        pa.field("flow_run_id", pa.string()),
    ]
)

#: Table ``rerank``: the kept classes (of the current `classes` or of a snapshot) classified
#: zero-shot again by newer models, one row per (model, kept series); replaced by each
#: rerank run. `old_accuracy` is the accuracy the class was kept on; `threshold` is the
#: accuracy at or below which a class still counts as unseen (default
#: ``max(2 / n_classes, 0.1)``, twice chance); `still_unseen` is null without images.
RERANK = pa.schema(
    [
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("snapshot_id", pa.string()),  # the classes re-ranked; null: current `classes`
        pa.field("old_accuracy", pa.float64()),
        pa.field("new_accuracy", pa.float64()),
        pa.field("n_images", pa.int64()),
        pa.field("n_classes", pa.int32()),  # candidates classified among
        pa.field("threshold", pa.float64()),
        pa.field("still_unseen", pa.bool_()),
    ]
)


#: Table `curves`: one scalar metric of one point of a data-efficiency curve on one split.
#:
#: A point is (model_key, recipe, shots, seed); `mean_shots` is the mean count of training
#: images per class it really had (a class with fewer than `shots` keeps all it has). Rows of
#: one (run_id, shots) are replaced when a point is run again; two shots values may share a
#: run_id (when no class has more training images than the smaller one). Sorted by model_key,
#: recipe, shots (0, all, last), seed, split, metric.
CURVES = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),  # the recipe run (runs/<run_id>/)
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("shots", pa.int32(), nullable=False),  # most train images per class; 0: all
        pa.field("seed", pa.int64(), nullable=False),  # of the draw and of the training
        pa.field("mean_shots", pa.float64(), nullable=False),  # train images per class, mean
        pa.field("split", pa.string(), nullable=False),  # val | test
        pa.field("metric", pa.string(), nullable=False),  # top1 | top5 | balanced_accuracy
        pa.field("value", pa.float64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "series": SERIES,
    "discover_fetches": DISCOVER_FETCHES,
    "search_hits": SEARCH_HITS,
    "search_pages": SEARCH_PAGES,
    "images": IMAGES,
    "quality": QUALITY,
    "hashes": HASHES,
    "duplicates": DUPLICATES,
    "splits": SPLITS,
    "embeddings": EMBEDDINGS,
    "zeroshot": ZEROSHOT,
    "classes": CLASSES,
    "relevance": RELEVANCE,
    "reviews": REVIEWS,
    "rank_models": RANK_MODELS,
    "metrics": METRICS,
    "class_metrics": CLASS_METRICS,
    "snapshots": SNAPSHOTS,
    "rerank": RERANK,
    "curves": CURVES,
}

#: The tables the report's analysis reads (`tv100.tasks.report.analysis`), in the order the
#: dataset card lists the missing ones; each is read with every column of its schema.
ANALYSIS_TABLES = (
    "series",
    "images",
    "quality",
    "duplicates",
    "zeroshot",
    "classes",
    "splits",
    "metrics",
)


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


#: Not a data-root table: the ``--out`` Parquet of ``tv100 dedupe <folder>``
#: (`tv100.tasks.clean.folder.dedupe_folder`), one row per file: its hashes and its group.
DEDUPE_FOLDER = pa.schema(
    [f for f in HASHES if f.name != "image_id"]
    + [
        pa.field("path", pa.string(), nullable=False),
        pa.field("group", pa.int32()),  # null: no duplicate
        pa.field("kept", pa.bool_()),
        pa.field("kept_path", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("distance", pa.float64()),
    ]
)


# -- image file checks (tv100.tasks.collect.verify) --------------------------------------------

IMAGE_FILES = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # as in images.path
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
    ]
)
"""Table `image_files`: stored image files that were modified after their download, hashed
again and found intact, with the size and modification time they had then, sorted by path.

A file whose size and modification time still match its row here is not hashed again
(`tv100.tasks.collect.verify`). A file never modified since its download has no row.
"""

SCHEMAS["image_files"] = IMAGE_FILES
