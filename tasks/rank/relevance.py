"""Relevance: which images found for a series show that series (table `relevance`).

Image search for ``"<series> TV Series"`` also returns stills and posters of *other* series
and images of *no* series (logos, banners, news thumbnails, stock photos). An irrelevant image
cannot be recognised zero-shot, so left in, it makes its series look unseen; it must go
before zero-shot ranking (`tv100.tasks.rank.zeroshot`). `score_relevance` finds both kinds on
the rank stage's own CLIP vectors (unit length, table `embeddings`), labelled with the series
each image was searched for, among *all* candidate series:

1. **Out-of-fold predicted probabilities** from a prototype classifier: images are split into
   `RelevanceConfig.folds` folds, stratified per series; an image's probabilities are
   ``softmax(logit_scale * cos(image, centroid))`` over the candidates' centroids computed
   *without its fold* (normalised class sums less the fold's sums: one pass over the vectors).
2. **cleanlab** finds the label issues on them: ``cleanlab.experimental.label_issues_batched.
   LabelInspector``, the batched form of ``cleanlab.filter.find_label_issues(labels,
   pred_probs, filter_by="low_normalized_margin")`` (per-class confident thresholds in a
   first pass, label quality and the number of issues in a second). The probabilities are computed
   chunk by chunk in each pass and never held whole: a million images among 800 series would
   be 3.2 GB of float32. The suspected series is the most probable one.
3. **kNN fit with FAISS**: an image's fit to a series is its mean cosine similarity to its
   `neighbours` nearest images labelled with that series (an exact ``IndexFlatIP`` per
   series, itself left out), and its *outlier score* is how far that fit falls below the
   series' typical fit, in robust standard deviations: ``(median - fit) / (1.4826 * MAD)``
   over the series' own images. A kNN fit, unlike the distance to a centroid, follows a series
   with several looks (sets, characters).

Decisions (`RelevanceScores.decision`): an image is an *outlier* in its own series when its
outlier score passes a bar set by the embedding's own tail (`outlier_threshold`: a multiple
of a high quantile of the confidently labelled images' scores, at least `outlier_z`). It is
``other_series`` when cleanlab flags its label, it fits its most probable series like that
series' own images do (outlier score there at most `fit_z`) and it strays from its own
series (beyond `other_share` of the bar); else ``offtopic`` when it is an outlier, or when
cleanlab flags it and it strays beyond `stray_share` of the bar; else kept.
(Also calling an outlier ``other_series`` when it merely fits another series mislabels
off-topic images of a kind every query returns, such as a logo, found a few times in most
series: at 800 series a tenth of the ``other_series`` calls.)
A series with fewer than `min_series_images` images is not judged (its images are kept) and
no image is moved to it: a median and a MAD of a handful of fits say little.
Thresholds are `RelevanceConfig` fields whose defaults were measured on the sandbox demo's
vectors and on `tv100.sandbox.labelnoise` (see `RelevanceConfig`).

Memory is bounded by the vectors themselves plus ``chunk * n_classes`` probabilities and the
largest series' kNN results. `relevance_rows` turns the arrays into the `relevance` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task

from tv100.storage.root import DataRoot
from tv100.storage.schemas import RELEVANCE
from tv100.storage.tables import column_pairs
from tv100.tasks.rank.config import RelevanceConfig
from tv100.tasks.rank.embed import load_embeddings
from tv100.tasks.rank.zeroshot import RANK_CACHE

#: `RelevanceScores.decision` codes and the table's reasons.
KEEP, OTHER_SERIES, OFFTOPIC = 0, 1, 2
REASONS = (None, "other_series", "offtopic")
#: The `relevance.method` of scored rows (``<METHOD>:<model_key>``) and of unscored ones.
METHOD = "cleanlab+knn"
METHOD_OFF = "off"
#: The robust scale's floor: a series whose images are all alike has a MAD near 0.
MIN_SCALE = 1e-3
#: Fewest confidently labelled images that set the outlier bar (`outlier_threshold`).
MIN_CONFIDENT = 50
#: Decimals kept of the stored scores: BLAS may differ in the last bits between machines.
DECIMALS = 6


@dataclass(frozen=True)
class RelevanceScores:
    """Per image (in input order), what `score_relevance` found.

    Attributes:
        label_score: the out-of-fold probability of the labelled series (0..1; higher: more
            likely an image of it; low for both kinds of irrelevant image).
        outlier_score: robust z of the image's kNN fit in its labelled series (higher: more
            unlike the series' own images).
        suspected: the most probable series' index (may be the label itself).
        label_issue: cleanlab flags the label.
        decision: `KEEP`, `OTHER_SERIES` or `OFFTOPIC`.
    """

    label_score: np.ndarray
    outlier_score: np.ndarray
    suspected: np.ndarray
    label_issue: np.ndarray
    decision: np.ndarray


def _faiss():  # type: ignore[no-untyped-def]
    from tv100.tasks.clean.pairs import faiss  # the import that names the extra when missing

    return faiss


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of each image: a seeded permutation within each series, dealt round-robin, so
    every series with at least `folds` images has images in every fold."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(labels)), labels))
    starts = np.searchsorted(labels[order], labels[order], side="left")
    out = np.empty(len(labels), np.int8)
    out[order] = (np.arange(len(labels)) - starts) % folds
    return out


def fold_centroids(
    vectors: np.ndarray, labels: np.ndarray, fold: np.ndarray, n_classes: int, folds: int,
    chunk: int,
) -> np.ndarray:
    """``(folds, n_classes, dim)`` float32: each series' unit centroid without each fold."""
    sums = np.zeros((folds, n_classes, vectors.shape[1]), np.float64)
    for start in range(0, len(vectors), chunk):
        s = slice(start, start + chunk)
        np.add.at(sums, (fold[s], labels[s]), vectors[s])
    out = sums.sum(axis=0, keepdims=True) - sums
    norms = np.linalg.norm(out, axis=2, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32)


def fold_probabilities(
    vectors: np.ndarray, fold: np.ndarray, centroids: np.ndarray, logit_scale: float
) -> np.ndarray:
    """Out-of-fold ``softmax(logit_scale * cos)`` of some images, float32 ``(n, classes)``."""
    out = np.empty((len(vectors), centroids.shape[1]), np.float32)
    for f in np.unique(fold):
        m = fold == f
        logits = np.float32(logit_scale) * (vectors[m] @ centroids[f].T)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        out[m] = logits
    return out


def label_issues(
    vectors: np.ndarray, labels: np.ndarray, n_classes: int, config: RelevanceConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cleanlab on out-of-fold prototype probabilities, chunk by chunk.

    Returns:
        ``(label_score, suspected, label_issue)`` per image: the out-of-fold probability of
        the labelled series, the most probable series, cleanlab's flag.
    """
    from cleanlab.experimental.label_issues_batched import LabelInspector

    fold = stratified_folds(labels, config.folds, config.seed)
    centroids = fold_centroids(vectors, labels, fold, n_classes, config.folds, config.chunk)
    # Ranked by normalised margin (``filter_by="low_normalized_margin"``): an image of another
    # series has a large negative margin, an off-topic one a margin near 0, so the issues
    # cleanlab counts go to the former (self-confidence would spend them on both).
    inspector = LabelInspector(
        num_class=n_classes, verbose=False, n_jobs=1,
        quality_score_kwargs={"method": "normalized_margin"},
    )
    n = len(vectors)
    for start in range(0, n, config.chunk):  # pass 1: confident thresholds
        s = slice(start, start + config.chunk)
        probs = fold_probabilities(vectors[s], fold[s], centroids, config.logit_scale)
        inspector.update_confident_thresholds(labels[s], probs)
    suspected = np.empty(n, np.int32)
    score = np.empty(n, np.float32)
    for start in range(0, n, config.chunk):  # pass 2: label quality, number of issues
        s = slice(start, start + config.chunk)
        probs = fold_probabilities(vectors[s], fold[s], centroids, config.logit_scale)
        inspector.score_label_quality(labels[s], probs)
        suspected[s] = probs.argmax(axis=1)
        score[s] = probs[np.arange(len(probs)), labels[s]]
    issue = np.zeros(n, bool)
    issue[inspector.get_label_issues()] = True
    return score, suspected, issue


def knn_fit(
    vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, n_classes: int,
    neighbours: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Outlier scores of every image in its own series and of some images in another.

    Args:
        vectors: unit vectors ``(n, dim)``.
        labels: series index per image.
        queries: per image, another series to measure its fit to, or -1.
        n_classes: series.
        neighbours: nearest images averaged over.

    Returns:
        ``(own, other)``: robust z of each image's fit in its own series, and in its
        `queries` series (NaN where none).
    """
    faiss = _faiss()
    n = len(vectors)
    own = np.zeros(n, np.float32)
    other = np.full(n, np.nan, np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_classes + 1))
    q_order = np.argsort(queries, kind="stable")
    q_bounds = np.searchsorted(queries[q_order], np.arange(n_classes + 1))
    for c in range(n_classes):
        members = order[bounds[c]: bounds[c + 1]]
        asked = q_order[q_bounds[c]: q_bounds[c + 1]]
        if len(members) < 2:
            continue  # nothing to compare with: kept as fitting
        k = min(neighbours, len(members) - 1)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors[members]))
        sims, _ = index.search(np.ascontiguousarray(vectors[members]), k + 1)
        fit = sims[:, 1:].mean(axis=1)  # the first is the image itself (or an exact copy)
        median = float(np.median(fit))
        scale = max(1.4826 * float(np.median(np.abs(fit - median))), MIN_SCALE)
        own[members] = (median - fit) / scale
        if len(asked):
            sims, _ = index.search(np.ascontiguousarray(vectors[asked]), k)
            other[asked] = (median - sims.mean(axis=1)) / scale
    return own, other


def outlier_threshold(
    own: np.ndarray, score: np.ndarray, judged: np.ndarray, cfg: RelevanceConfig
) -> float:
    """The robust z above which an image is an outlier in its own series.

    How far a series' own images stray depends on the embedding: a CLIP's vectors have heavy
    tails (on the sandbox, 1% of relevant images sit beyond z = 12), Gaussian ones do not
    (beyond 4: almost none). So the bar is set by the images cleanlab is confident about
    (out-of-fold probability of their series at least `RelevanceConfig.confident_score`):
    `tail_factor` times their `tail_quantile` quantile, never below `outlier_z`. With fewer
    than `MIN_CONFIDENT` such images, `outlier_z` alone.
    """
    confident = judged & (score >= cfg.confident_score)
    if int(confident.sum()) < MIN_CONFIDENT:
        return cfg.outlier_z
    tail = float(np.quantile(own[confident], cfg.tail_quantile))
    return max(cfg.outlier_z, cfg.tail_factor * tail)


def score_relevance(
    vectors: np.ndarray, labels: np.ndarray, n_classes: int, config: RelevanceConfig | None = None
) -> RelevanceScores:
    """Score every image's relevance to its labelled series (see the module docstring).

    Args:
        vectors: ``(n, dim)`` unit vectors (float32).
        labels: ``(n,)`` series index of each image, in ``0..n_classes-1``.
        n_classes: candidate series (those without images count: an image may look like one).
        config: `RelevanceConfig`.

    Raises:
        ValueError: shapes that do not match, or a label outside the candidates.
    """
    cfg = config or RelevanceConfig()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int32)
    if vectors.ndim != 2 or len(vectors) != len(labels):
        raise ValueError(
            f"vectors {vectors.shape} and labels {labels.shape}; expected (n, dim) and (n,)"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels outside 0..{n_classes - 1}; expected candidate indices")
    n = len(labels)
    if n == 0 or n_classes < 2:
        zeros = np.zeros(n, np.float32)
        return RelevanceScores(zeros + 1, zeros, labels.copy(), np.zeros(n, bool),
                               np.zeros(n, np.int8))
    score, suspected, issue = label_issues(vectors, labels, n_classes, cfg)
    elsewhere = np.where(suspected != labels, suspected, -1).astype(np.int32)
    own, other = knn_fit(vectors, labels, elsewhere, n_classes, cfg.neighbours)
    # A series' robust statistics need images: a small one is not judged, nor judged by.
    judged = np.bincount(labels, minlength=n_classes) >= cfg.min_series_images
    outlier_z = outlier_threshold(own, score, judged[labels], cfg)
    outlier = (own > outlier_z) & judged[labels]
    fits_other = (
        (elsewhere >= 0) & judged[np.maximum(elsewhere, 0)] & judged[labels]
        & (np.nan_to_num(other, nan=np.inf) <= cfg.fit_z)
    )
    decision = np.zeros(n, np.int8)
    strays = issue & (own > cfg.stray_share * outlier_z) & judged[labels]
    decision[outlier | strays] = OFFTOPIC
    decision[fits_other & issue & (own > cfg.other_share * outlier_z)] = OTHER_SERIES
    return RelevanceScores(score, own, suspected, issue, decision)


def relevance_rows(
    image_ids: Sequence[str],
    series_ids: Sequence[str],
    class_ids: Sequence[str],
    scores: RelevanceScores | None,
    method: str,
) -> pa.Table:
    """The `relevance` table of scored images (`scores` None: all kept, unscored).

    Args:
        image_ids: the images, sorted.
        series_ids: each one's labelled series.
        class_ids: the candidates, in the index order of `scores.suspected`.
        scores: `score_relevance`'s result for these images, or None.
        method: the `method` column.
    """
    n = len(image_ids)
    if scores is None:
        return pa.table({
            "image_id": pa.array(image_ids, pa.string()),
            "series_id": pa.array(series_ids, pa.string()),
            "score": pa.nulls(n, pa.float64()),
            "outlier_score": pa.nulls(n, pa.float64()),
            "suspected_series_id": pa.nulls(n, pa.string()),
            "decision": pa.array(["keep"] * n, pa.string()),
            "reason": pa.nulls(n, pa.string()),
            "method": pa.array([method] * n, pa.string()),
            "auto_decision": pa.array(["keep"] * n, pa.string()),
            "auto_reason": pa.nulls(n, pa.string()),
        }, schema=RELEVANCE)
    suspect = [
        class_ids[c] if class_ids[c] != own else None
        for c, own in zip(scores.suspected.tolist(), series_ids, strict=True)
    ]
    decision = pa.array(
        np.where(scores.decision == KEEP, "keep", "irrelevant").tolist(), pa.string()
    )
    reason = pa.array([REASONS[d] for d in scores.decision.tolist()], pa.string())
    return pa.table({
        "image_id": pa.array(image_ids, pa.string()),
        "series_id": pa.array(series_ids, pa.string()),
        "score": pa.array(np.round(scores.label_score.astype(np.float64), DECIMALS)),
        "outlier_score": pa.array(np.round(scores.outlier_score.astype(np.float64), DECIMALS)),
        "suspected_series_id": pa.array(suspect, pa.string()),
        "decision": decision,
        "reason": reason,
        "method": pa.array([method] * n, pa.string()),
        "auto_decision": decision,
        "auto_reason": reason,
    }, schema=RELEVANCE)


def relevance_table(
    root: DataRoot,
    model_key: str,
    images: pa.Table,
    candidates: pa.Table,
    config: RelevanceConfig | None = None,
) -> pa.Table:
    """Score the relevance of every image with one model's vectors: the `relevance` rows.

    Args:
        root: the data root holding the `embeddings` of `model_key`.
        model_key: the model whose vectors are scored.
        images: image_id, series_id of the cleaned images.
        candidates: series_id of every candidate series (title not needed).
        config: `RelevanceConfig`; ``enabled=False`` keeps every image unscored.

    Returns:
        One row per image, sorted by image_id. Images without an ``ok`` vector are kept,
        unscored (null `score`): nothing says they are irrelevant.

    Raises:
        ValueError: an image labelled with a series that is not a candidate.
    """
    cfg = config or RelevanceConfig()
    pairs = sorted(column_pairs(images, "image_id", "series_id", "relevance images"))
    image_ids = [str(i) for i, _ in pairs]
    series_ids = [str(s) for _, s in pairs]
    if not cfg.enabled:
        return relevance_rows(image_ids, series_ids, [], None, METHOD_OFF)
    class_ids = sorted({str(s) for s in candidates.column("series_id").to_pylist()})
    index = {sid: i for i, sid in enumerate(class_ids)}
    strangers = sorted(set(series_ids) - set(index))
    if strangers:
        raise ValueError(
            f"{len(strangers)} series label images but are not candidates (e.g. "
            f"{strangers[0]!r}); expected every image's series among the candidate series"
        )
    ids, vectors = load_embeddings(root, model_key, image_ids)
    series_of = dict(pairs)
    labels = np.array([index[series_of[i]] for i in ids], np.int32)
    scores = score_relevance(vectors.reshape(len(ids), -1), labels, len(class_ids), cfg)
    scored = relevance_rows(ids, [class_ids[c] for c in labels], class_ids, scores,
                            f"{METHOD}:{model_key}")
    missing = sorted(set(image_ids) - set(ids))
    if missing:
        unscored = relevance_rows(missing, [series_of[i] for i in missing], [], None,
                                  f"{METHOD}:{model_key}")
        scored = pa.concat_tables([scored, unscored]).sort_by("image_id")
    return scored


def relevant_images(images: pa.Table, relevance: pa.Table) -> pa.Table:
    """`images` less the ones `relevance` decides are ``irrelevant``."""
    irrelevant = relevance.filter(pc.equal(relevance.column("decision"), "irrelevant"))
    drop = irrelevant.column("image_id")
    return images.filter(pc.invert(pc.is_in(images.column("image_id"), value_set=drop)))


@task(name="relevance", cache_policy=RANK_CACHE)
def relevance_task(
    root: DataRoot,
    model_key: str,
    images: pa.Table,
    candidates: pa.Table,
    embeddings_sha256: str,
    config: RelevanceConfig | None = None,
) -> pa.Table:
    """`relevance_table`, cached on the labels, the candidates, the config and the vectors'
    hash (`embeddings_sha256`, only part of the cache key)."""
    del embeddings_sha256
    return relevance_table(root, model_key, images, candidates, config)
