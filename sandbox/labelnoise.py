"""Synthetic CLIP-like embeddings with planted label noise: the ground truth that relevance
scoring (`tv100.tasks.rank.relevance`) is measured against, in tests and `bench/relevance.py`.

`noisy_embeddings` draws unit vectors the way search results for ``"<series> TV Series"``
look to a CLIP: every image shares a common direction (CLIP vectors sit in a narrow cone);
a series has its own direction, near the others of its genre, and a few modes (its sets,
its main characters); class sizes follow a long tail (about 11:1 from the largest to the
smallest, as in TV100's figure (c)). Each series then gets a noise rate drawn between
`noise_low` and `noise_high`, long-tailed (most series little, a few much), and that share
of its images is replaced by:

- ``other_series``: an image drawn from another series' distribution, half the time one of
  the same genre (posters and stills of similar shows);
- ``offtopic``: an image of no series: half from a few dozen generic clusters shared by
  every query (logos, text banners, news thumbnails), half from nowhere in particular.

Everything comes from one seeded stream and is generated in chunks, so a million 512-d
vectors need little more than their own 2 GB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: `NoisyEmbeddings.kind` codes.
CLEAN, OTHER_SERIES, OFFTOPIC = 0, 1, 2
KINDS = ("clean", "other_series", "offtopic")
STRENGTH = (0.35, 0.8)
SPREAD = 0.9


@dataclass(frozen=True)
class NoisyEmbeddings:
    """Vectors with their labels and the truth.

    Attributes:
        vectors: ``(n, dim)`` float32, unit rows.
        labels: ``(n,)`` int32: the series each image was found for (its label).
        truth: ``(n,)`` int32: the series it really shows; -1 for off-topic images.
        kind: ``(n,)`` int8: `CLEAN`, `OTHER_SERIES` or `OFFTOPIC`.
        noise_rate: ``(n_classes,)`` the planted noise share of each series.
    """

    vectors: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    kind: np.ndarray
    noise_rate: np.ndarray


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def class_sizes(n: int, n_classes: int, ratio: float = 11.0) -> np.ndarray:
    """Long-tailed sizes summing to `n`: geometric from the largest down, ``ratio`` to 1."""
    w = np.exp(-np.log(ratio) * np.arange(n_classes) / max(1, n_classes - 1))
    sizes = np.floor(w / w.sum() * n).astype(np.int64)
    sizes[: n - int(sizes.sum())] += 1
    return sizes


def noisy_embeddings(
    n: int = 20_000,
    dim: int = 512,
    n_classes: int = 100,
    seed: int = 0,
    noise_low: float = 0.05,
    noise_high: float = 0.35,
    offtopic_share: float = 0.5,
    chunk: int = 65_536,
) -> NoisyEmbeddings:
    """Draw `n` labelled unit vectors of `n_classes` series with planted noise.

    Args:
        n: images.
        dim: vector width.
        n_classes: series.
        seed: the one seed of every draw.
        noise_low: smallest per-series noise share.
        noise_high: largest per-series noise share.
        offtopic_share: the share of the noise that is off-topic (the rest: other series).
        chunk: rows drawn at a time.
    """
    rng = np.random.default_rng(seed)
    n_genres = max(1, n_classes // 20)
    modes = 3
    shared = _unit(rng.standard_normal(dim))
    genre = _unit(rng.standard_normal((n_genres, dim)))
    genre_of = rng.integers(0, n_genres, n_classes)
    centre = _unit(0.6 * genre[genre_of] + 0.8 * _unit(rng.standard_normal((n_classes, dim))))
    mode = _unit(centre[:, None, :] + 0.6 * _unit(rng.standard_normal((n_classes, modes, dim))))
    strength = rng.uniform(STRENGTH[0], STRENGTH[1], n_classes)  # how distinct each series looks
    generic = _unit(rng.standard_normal((40, dim)))
    by_genre = [np.flatnonzero(genre_of == g) for g in range(n_genres)]

    sizes = class_sizes(n, n_classes)
    labels = np.repeat(np.arange(n_classes, dtype=np.int32), sizes)
    rate = noise_low + (noise_high - noise_low) * rng.random(n_classes) ** 2
    noisy = rng.random(n) < rate[labels]
    offtopic = noisy & (rng.random(n) < offtopic_share)
    other = noisy & ~offtopic
    truth = labels.copy()
    # Another series: half the time one of the same genre.
    pick = rng.integers(1, n_classes, n)  # uniform among the other series
    uniform_other = (labels + pick) % n_classes
    same = np.array([
        by_genre[genre_of[c]][rng.integers(0, len(by_genre[genre_of[c]]))] for c in labels[other]
    ], dtype=np.int32) if other.any() else np.zeros(0, np.int32)
    chosen = uniform_other[other].astype(np.int32)
    use_same = (rng.random(len(chosen)) < 0.5) & (same != labels[other])
    chosen[use_same] = same[use_same]
    truth[other] = chosen
    truth[offtopic] = -1
    kind = np.zeros(n, np.int8)
    kind[other] = OTHER_SERIES
    kind[offtopic] = OFFTOPIC

    mode_of = rng.integers(0, modes, n)
    generic_of = np.where(rng.random(n) < 0.5, rng.integers(0, len(generic), n), -1)
    vectors = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        s = slice(start, min(n, start + chunk))
        t = truth[s]
        eps = rng.standard_normal((len(t), dim)) / np.sqrt(dim)
        signal = np.empty((len(t), dim))
        series = t >= 0
        signal[series] = strength[t[series], None] * mode[t[series], mode_of[s][series]]
        off = ~series
        g = generic_of[s][off]
        elsewhere = _unit(rng.standard_normal((int(off.sum()), dim)))
        signal[off] = 0.85 * np.where((g >= 0)[:, None], generic[np.maximum(g, 0)], elsewhere)
        vectors[s] = _unit(0.75 * shared + signal + SPREAD * eps)
    return NoisyEmbeddings(vectors, labels, truth, kind, rate)
