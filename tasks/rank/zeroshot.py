"""Zero-shot classification: how well a CLIP recognises each candidate series.

`zero_shot` classifies every cleaned image among *all* candidate series with a CLIP's
zero-shot classifier, as the paper does: class weights from
``open_clip.build_zero_shot_classifier`` over the prompt templates (default the paper's
single ``"a photo of the TV series {}"``; template ensembles average the unit prompt
embeddings), probabilities ``softmax(100 * cos(image, class))``, prediction the top-1. It
writes one row per (model, series) to table `zeroshot`: images classified, top-1 and top-5
accuracy, mean probability of the true series, the series its images are most often
mistaken for, and the `TOP_CONFUSIONS` most frequent mistakes with their shares
(``confusions``). `classify_images` runs the embedding and zero-shot tasks for several models
(the rank and rerank flows' common step); `tv100.tasks.rank.select` turns the rows into the
kept classes.

Inputs come from earlier stages by content: the image vectors from `tv100.tasks.rank.embed`
(table `embeddings`, looked up by model key), the labels as ``(image_id, series_id)`` and
the class names as ``(series_id, title)``. Series whose titles coincide get identical text
weights; pass disambiguated titles (e.g. with the year) when that matters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from tv100.storage.root import DataRoot
from tv100.storage.schemas import ZEROSHOT
from tv100.storage.tables import column_pairs
from tv100.tasks.rank.clip import Clip, class_weights, load_clip, set_torch_threads
from tv100.tasks.rank.config import EmbedConfig, EmbedSummary, ZeroShotConfig
from tv100.tasks.rank.embed import embed_task, load_embeddings
from tv100.tasks.rank.models import ModelSpec

ZEROSHOT_SORT_KEYS = ["model_key", "series_id"]
#: The rank stage's cache: the inputs and the task's code (model keys hash the weights).
RANK_CACHE = INPUTS + TASK_SOURCE
#: Wrong top-1 series listed per (model, series) in ``confusions``, most frequent first.
TOP_CONFUSIONS = 3


def softmax_scores(vectors: np.ndarray, weights: np.ndarray, logit_scale: float) -> np.ndarray:
    """``softmax(logit_scale * vectors @ weights.T)`` row-wise, float64 ``(n, classes)``.

    The logits are computed in float32 (as CLIP evaluations do) and the softmax in float64.
    """
    logits = (np.float32(logit_scale) * (vectors @ weights.T)).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores per row, best first; ties to the lower index."""
    k = min(k, scores.shape[1])
    # A stable sort on the negated scores keeps the lower class index first among equals,
    # as torch.topk / argmax do on CPU.
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def classify(
    vectors: np.ndarray,
    weights: np.ndarray,
    true_index: np.ndarray,
    logit_scale: float = 100.0,
    top_k: int = 5,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k predictions and the probability of the truth, per image, in chunks.

    Chunking keeps memory at ``chunk * classes`` scores whatever the number of images.

    Returns:
        ``(top, true_prob)``: class indices ``(n, min(top_k, classes))`` best first, and
        the softmax probability of each image's true class ``(n,)``.
    """
    n = len(vectors)
    k = min(top_k, len(weights))
    top = np.zeros((n, k), dtype=np.int64)
    true_prob = np.zeros(n, dtype=np.float64)
    for start in range(0, n, chunk):
        part = slice(start, min(n, start + chunk))
        scores = softmax_scores(vectors[part], weights, logit_scale)
        top[part] = top_k_indices(scores, k)
        true_prob[part] = scores[np.arange(len(scores)), true_index[part]]
    return top, true_prob


def series_table(
    model_key: str,
    class_ids: Sequence[str],
    titles: Sequence[str | None],
    true_index: np.ndarray,
    top: np.ndarray,
    true_prob: np.ndarray,
    config: ZeroShotConfig,
) -> pa.Table:
    """Per-series metrics of one model from per-image predictions (`classify`).

    Args:
        model_key: the model's key.
        class_ids: the candidate series, in class-weight order.
        titles: their class names.
        true_index: per image, the index of its true series in `class_ids`.
        top: per image, the top-k class indices, best first.
        true_prob: per image, the probability of its true class.
        config: `ZeroShotConfig` (templates).

    Returns:
        The `ZEROSHOT` rows, one per candidate series (``n_images`` 0 and null metrics for
        series without images), sorted by series_id. ``confusions`` lists the
        `TOP_CONFUSIONS` series its images are most often predicted as (top-1), each with
        its share of the series' images, most frequent first, ties to the lower series_id
        (the first is ``confused_with``); empty when no image is mistaken, null without
        images.
    """
    n_classes = len(class_ids)
    top1_hit = top[:, 0] == true_index
    topk_hit = (top == true_index[:, None]).any(axis=1)
    rows: list[dict[str, Any]] = []
    for c in np.argsort(np.asarray(class_ids, dtype=object), kind="stable"):
        mask = true_index == c
        n = int(mask.sum())
        row: dict[str, Any] = {
            "model_key": model_key,
            "series_id": class_ids[c],
            "title": titles[c],
            "n_images": n,
            "top1": None,
            "top5": None,
            "mean_true_prob": None,
            "confused_with": None,
            "confused_title": None,
            "confused_share": None,
            "confusions": None,
            "n_classes": n_classes,
            "templates": list(config.templates),
        }
        if n:
            row["top1"] = float(top1_hit[mask].mean())
            row["top5"] = float(topk_hit[mask].mean())
            row["mean_true_prob"] = float(true_prob[mask].mean())
            wrong = Counter(int(p) for p in top[mask, 0] if p != c)
            # Most frequent wrong predictions first; ties go to the lower series_id.
            mistakes = sorted(wrong, key=lambda j: (-wrong[j], class_ids[j]))
            row["confusions"] = [
                {"series_id": class_ids[j], "title": titles[j], "share": wrong[j] / n}
                for j in mistakes[:TOP_CONFUSIONS]
            ]
            if mistakes:
                best = mistakes[0]
                row["confused_with"] = class_ids[best]
                row["confused_title"] = titles[best]
                row["confused_share"] = wrong[best] / n
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=ZEROSHOT)


def _labels(images: pa.Table | Sequence[tuple[str, str]]) -> dict[str, str]:
    pairs = column_pairs(images, "image_id", "series_id", "zero-shot images")
    out: dict[str, str] = {}
    for image_id, sid in pairs:
        if image_id in out and out[image_id] != sid:
            raise ValueError(f"image {image_id!r} is labelled with two series")
        out[str(image_id)] = str(sid)
    return out


def _classes(series: pa.Table | Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    pairs = column_pairs(series, "series_id", "title", "zero-shot series")
    ids = [str(s) for s, _ in pairs]
    if len(set(ids)) != len(ids):
        dup = next(s for s, n in Counter(ids).items() if n > 1)
        raise ValueError(f"series {dup!r} is listed twice; expected one row per candidate")
    if not ids:
        raise ValueError("no candidate series; expected at least one (series_id, title)")
    for sid, title in pairs:
        if not title:
            raise ValueError(f"series {sid!r} has no title; expected a class name")
    return ids, [str(t) for _, t in pairs]


def zero_shot(
    root: DataRoot,
    model: Clip | ModelSpec | str,
    images: pa.Table | Sequence[tuple[str, str]],
    series: pa.Table | Sequence[tuple[str, str]],
    config: ZeroShotConfig | None = None,
) -> pa.Table:
    """Classify every labelled image among all candidate series with one model.

    Args:
        root: the data root holding the `embeddings` table (run `tv100.tasks.rank.embed` first).
        model: a loaded `tv100.tasks.rank.clip.Clip` or a spec to load.
        images: the cleaned images, ``(image_id, series_id)`` pairs or a table.
        series: every candidate series, ``(series_id, title)``; the title is the class name.
        config: `ZeroShotConfig`.

    Returns:
        `ZEROSHOT` rows, one per candidate series. Images without an ``ok`` embedding are
        not counted in ``n_images``.

    Raises:
        ValueError: an image labelled with a series that is not a candidate, or no
            embedding at all for this model.
    """
    import torch

    cfg = config or ZeroShotConfig()
    clip = model if isinstance(model, Clip) else load_clip(model, cfg.device)
    labels = _labels(images)
    class_ids, titles = _classes(series)
    index = {sid: i for i, sid in enumerate(class_ids)}
    strangers = sorted({s for s in labels.values() if s not in index})
    if strangers:
        raise ValueError(
            f"{len(strangers)} series label images but are not candidates (e.g. "
            f"{strangers[0]!r}); expected every image's series among the candidate series"
        )
    ids, vectors = load_embeddings(root, clip.key, list(labels))
    if labels and not ids:
        raise ValueError(
            f"no embeddings of model {clip.key!r} for these {len(labels)} images under "
            f"{root.url!r}; run tv100.tasks.rank.embed.embed_images first"
        )
    previous = torch.get_num_threads()
    set_torch_threads(cfg.threads)
    try:
        weights = class_weights(clip, titles, cfg.templates, cfg.classes_per_batch)
    finally:
        torch.set_num_threads(previous)
    true_index = np.array([index[labels[i]] for i in ids], dtype=np.int64)
    if ids:
        top, true_prob = classify(vectors, weights, true_index, cfg.logit_scale, cfg.top_k)
    else:
        top, true_prob = np.zeros((0, 1), np.int64), np.zeros(0)
    return series_table(clip.key, class_ids, titles, true_index, top, true_prob, cfg)


def zero_shot_models(
    root: DataRoot,
    models: Sequence[Clip | ModelSpec | str],
    images: pa.Table | Sequence[tuple[str, str]],
    series: pa.Table | Sequence[tuple[str, str]],
    config: ZeroShotConfig | None = None,
) -> pa.Table:
    """`zero_shot` for several models, one table sorted by (model_key, series_id)."""
    if not models:
        raise ValueError("models is empty; expected at least one CLIP")
    parts = [zero_shot(root, m, images, series, config) for m in models]
    return pa.concat_tables(parts).sort_by([(k, "ascending") for k in ZEROSHOT_SORT_KEYS])


def overall_top1(zeroshot: pa.Table, model_key: str | None = None) -> float:
    """Top-1 accuracy over all images (micro average) of one model.

    Args:
        zeroshot: `ZEROSHOT` rows.
        model_key: which model; may be omitted when the table holds one.
    """
    keys = sorted(set(zeroshot.column("model_key").to_pylist()))
    if model_key is None:
        if len(keys) != 1:
            raise ValueError(f"zeroshot holds {len(keys)} models {keys}; pass model_key")
        model_key = keys[0]
    hits = total = 0.0
    for row in zeroshot.to_pylist():
        if row["model_key"] == model_key and row["n_images"]:
            hits += row["top1"] * row["n_images"]
            total += row["n_images"]
    if not total:
        raise ValueError(f"no images classified by model {model_key!r}")
    return hits / total


@task(name="zero-shot", cache_policy=RANK_CACHE)
def zeroshot_task(
    root: DataRoot,
    models: list[str],
    images: pa.Table,
    series: pa.Table,
    embeddings_sha256: str,
    config: ZeroShotConfig | None = None,
) -> pa.Table:
    """`zero_shot_models` (rows with ``confusions``), cached on the labels, the class names
    and the embeddings' hash.

    `embeddings_sha256` (from `tv100.tasks.rank.embed.embed_images`) is not read here; it is
    the cache key of the vectors, whose model keys already hash the weights.
    """
    del embeddings_sha256  # only part of the cache key
    return zero_shot_models(root, [ModelSpec.parse(m) for m in models], images, series, config)


def embed_models(
    root: DataRoot, models: Sequence[str], images: pa.Table, embed: EmbedConfig
) -> list[EmbedSummary]:
    """Run `embed_task` on `images` (image_id, path) for each model; call it from a flow.

    Returns:
        Each model's `EmbedSummary`, in `models` order.
    """
    logger = get_run_logger()
    summaries = []
    for spec in models:
        summary = embed_task(root, images.select(["image_id", "path"]), spec, embed)
        logger.info("embeddings: %s", summary)
        summaries.append(summary)
    return summaries


def embeddings_digest(summaries: Sequence[EmbedSummary]) -> str:
    """The cache key of the vectors of several models (their tables' hashes)."""
    return ",".join(str(s.table_sha256) for s in summaries)


def classify_images(
    root: DataRoot,
    models: Sequence[str],
    images: pa.Table,
    candidates: pa.Table,
    embed: EmbedConfig,
    zeroshot: ZeroShotConfig,
) -> pa.Table:
    """Embed `images` with each model, then classify them zero-shot among `candidates`.

    Runs `embed_models` and one `zeroshot_task`; call it from a flow.

    Args:
        root: the data root.
        models: CLIP specs (``ARCH@WEIGHTS`` or ``local-dir:FOLDER``).
        images: image_id, series_id, path (relative to the root).
        candidates: series_id, title of every series to choose among.
        embed: `EmbedConfig`.
        zeroshot: `ZeroShotConfig`.

    Returns:
        The `zeroshot` rows of every model.
    """
    digest = embeddings_digest(embed_models(root, models, images, embed))
    return zeroshot_task(
        root, list(models), images.select(["image_id", "series_id"]), candidates, digest,
        zeroshot,
    )
