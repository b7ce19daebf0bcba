"""Duplicate groups: which images match, how they are grouped, which one each group keeps.

Signals, strongest first (a pair's ``kind`` is the strongest one that holds):

- ``exact``: equal sha256 (distance 0).
- ``phash``: pHash Hamming distance <= `NearDupConfig.phash_threshold`.
- ``dhash``: pHash misses (distance > t) but is still within a grey zone
  (<= `NearDupConfig.dhash_phash_max`) *and* dHash distance <= `NearDupConfig.dhash_threshold`.
  dHash is used only to confirm, never alone: on flat, low-texture images most dHash bits
  compare near-equal neighbours and flip on noise, so dHash alone links unrelated graphics;
  two independent hashes both being close is much stronger evidence than either. On 150
  generated 640x480 photos it added 14% of 10% centre crops to the 47% pHash catches at
  t=10, and linked none of the 11,175 distinct pairs (dHash alone at <= 12 linked two).
- ``clip``: cosine similarity of L2-normalised CLIP embeddings > `NearDupConfig.clip_threshold`;
  catches crops and flips the hashes cannot.

Exact copies are collapsed first (one row per sha256), then identical pHash codes (one per
code), so a thousand copies of one placeholder cost one index entry, not a million pairs;
the remaining codes go to the pair searches of `tv100.tasks.clean.pairs`. Given a
`PairCache` (the last run's pairs by code value, `tv100.tasks.clean.pairstore`), the pHash
and dHash searches look only at the codes it lacks, and the table is the same.

Groups are the connected components of all pairs (union-find). One representative per
group: largest resolution (w*h), then colour over grayscale (``chroma_score`` of the
`quality` table below `GRAY_CHROMA`, when the input has it: a grayscale copy of a still is
no longer the series' colours), then best search rank (lowest), then image_id. Every other
member is a row of the `duplicates` table. A group whose members come from several series
has an ambiguous label: with ``drop_cross_series`` (default) every member is dropped, the
representative included, with ``kept_id = null`` (nothing is kept; ``group_id`` still names
the representative). ``matched_id``/``kind``/``distance`` describe one concrete pair: the
kept image when the dropped one matches it directly, else its strongest neighbour in the
group (a transitive member, e.g. A~B~C with A, C far apart).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tv100.storage.schemas import DUPLICATES
from tv100.tasks.clean.config import HASH_BITS, NearDupConfig
from tv100.tasks.clean.hashing import codes_array
from tv100.tasks.clean.pairs import (
    PairArrays,
    ValuePairs,
    cosine_pairs,
    hamming_pairs,
    incremental_hamming_pairs,
    normalize,
)

#: Pair kinds, strongest first.
KINDS = ("exact", "phash", "dhash", "clip")
#: Kind -> strength (0 = strongest), for ordering pairs by kind.
KIND_RANK = {k: r for r, k in enumerate(KINDS)}
#: Mean channel spread (`quality.chroma_score`, 0..255) below which a picture is grayscale:
#: a JPEG saved from grey pixels measures 0-2 (chroma subsampling noise), colour stills 20+.
GRAY_CHROMA = 4.0
#: Value pairs per Hamming search (``"phash"``, ``"dhash"``): `match_edges` reads the last
#: run's and leaves this run's in their place.
PairCache = dict[str, ValuePairs]


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra

    def groups(self) -> list[list[int]]:
        """Sets of two or more, each sorted, ordered by their smallest member."""
        by_root: dict[int, list[int]] = defaultdict(list)
        for a in range(len(self.parent)):
            by_root[self.find(a)].append(a)
        return sorted((m for m in by_root.values() if len(m) > 1), key=lambda m: m[0])


@dataclass
class ImageMeta:
    """The columns near-duplicate search reads, one list entry per input row.

    Hashes are also kept as ints (`pint`, `dint`) and embeddings as unit vectors (`vec`),
    keyed by row, for the rows that have them.
    """

    ids: list[str]
    series: list[str | None]
    split: list[str | None] | None
    sha: list[str | None]
    phash: list[str | None]
    dhash: list[str | None]
    area: list[int]
    rank: list[float]
    gray: list[bool] = field(default_factory=list)  # chroma below `GRAY_CHROMA` (if known)
    pint: dict[int, int] = field(default_factory=dict)  # row -> pHash as int
    dint: dict[int, int] = field(default_factory=dict)
    vec: dict[int, np.ndarray] = field(default_factory=dict)  # row -> unit embedding

    def __len__(self) -> int:
        return len(self.ids)


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * len(table)


def image_meta(table: pa.Table, embeddings: tuple[Sequence[str], np.ndarray] | None) -> ImageMeta:
    """Validate a `find_duplicates` input table and read it into an `ImageMeta`.

    Raises:
        ValueError: naming a missing column, a repeated image_id, a malformed hash or
            embeddings whose ids and vectors differ in number.
    """
    for required in ("image_id", "sha256", "phash"):
        if required not in table.column_names:
            raise ValueError(
                f"near-duplicate input lacks column {required!r}; expected image_id, series_id, "
                "sha256, phash, dhash, width, height, rank (and optionally split)"
            )
    ids = [str(i) for i in table.column("image_id").to_pylist()]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise ValueError(f"near-duplicate input has image_id {dup!r} twice; expected unique ids")
    widths, heights = _column(table, "width"), _column(table, "height")
    ranks = _column(table, "rank")
    meta = ImageMeta(
        ids=ids,
        series=_column(table, "series_id"),
        split=table.column("split").to_pylist() if "split" in table.column_names else None,
        sha=_column(table, "sha256"),
        phash=_column(table, "phash"),
        dhash=_column(table, "dhash"),
        area=[(w or 0) * (h or 0) for w, h in zip(widths, heights, strict=True)],
        rank=[float(r) if r is not None else float("inf") for r in ranks],
        gray=[c is not None and c < GRAY_CHROMA for c in _column(table, "chroma_score")],
    )
    for name, values, ints in (("phash", meta.phash, meta.pint), ("dhash", meta.dhash, meta.dint)):
        for row, h in enumerate(values):
            if h is None:
                continue
            if len(h) != HASH_BITS // 4:
                raise ValueError(
                    f"{name} {h!r} of image {ids[row]!r} is invalid; expected 16 hex digits"
                )
            ints[row] = int(h, 16)
    if embeddings is not None:
        emb_ids, vectors = embeddings
        unit = normalize(vectors)
        if len(emb_ids) != len(unit):
            raise ValueError(
                f"embeddings have {len(emb_ids)} ids and {len(unit)} vectors; expected equal"
            )
        row_of = {image_id: r for r, image_id in enumerate(ids)}
        for image_id, v in zip(emb_ids, unit, strict=True):
            r = row_of.get(str(image_id))
            if r is not None and np.any(v):
                meta.vec[r] = v
    return meta


Edges = dict[tuple[int, int], tuple[int, float]]  # (a < b) -> (kind rank, distance)


def _add_edge(edges: Edges, a: int, b: int, kind: str, distance: float) -> None:
    key = (a, b) if a < b else (b, a)
    new = (KIND_RANK[kind], float(distance))
    old = edges.get(key)
    if old is None or new < old:
        edges[key] = new


def _hamming(
    codes: np.ndarray, kind: str, threshold: int, cfg: NearDupConfig, cache: PairCache | None
) -> PairArrays:
    """`hamming_pairs`, through `incremental_hamming_pairs` when there is a `cache`."""
    if cache is None:
        return hamming_pairs(codes, threshold, cfg.flat_max, cfg.use_gpu)
    found, cache[kind] = incremental_hamming_pairs(
        codes, threshold, cache.get(kind), cfg.flat_max, cfg.use_gpu
    )
    return found


def match_edges(meta: ImageMeta, cfg: NearDupConfig, cache: PairCache | None = None) -> Edges:
    """A sparse edge set with the same connected components as all matching pairs.

    `cache`: the last run's value pairs, replaced by this run's (see `PairCache`); the
    edges are the same with or without it.
    """
    edges: Edges = {}
    # Exact: a star per sha256 connects a copy set as well as all its pairs would.
    first_of_sha: dict[str, int] = {}
    for row, sha in enumerate(meta.sha):
        if sha is None:
            continue
        first = first_of_sha.setdefault(sha, row)
        if first != row:
            _add_edge(edges, first, row, "exact", 0.0)
    distinct = [r for r, s in enumerate(meta.sha) if s is None or first_of_sha[s] == r]

    # pHash: one entry per distinct code; identical codes joined by a star.
    by_code: dict[int, list[int]] = defaultdict(list)
    for row in distinct:
        if row in meta.pint:
            by_code[meta.pint[row]].append(row)
    code_firsts = [rows[0] for rows in by_code.values()]
    for rows in by_code.values():
        for row in rows[1:]:
            _add_edge(edges, rows[0], row, "phash", 0.0)
    pcodes = codes_array([meta.phash[r] or "" for r in code_firsts])
    for i, j, d in zip(*_hamming(pcodes, "phash", cfg.phash_threshold, cfg, cache), strict=True):
        _add_edge(edges, code_firsts[i], code_firsts[j], "phash", d)

    # dHash confirms pairs pHash puts in its grey zone (see the module docstring).
    if cfg.dhash_threshold is not None:
        firsts = [r for r in code_firsts if r in meta.dint]
        dcodes = codes_array([meta.dhash[r] or "" for r in firsts])
        i_s, j_s, d_s = _hamming(dcodes, "dhash", cfg.dhash_threshold, cfg, cache)
        if len(i_s):
            p = np.array([meta.pint[r] for r in firsts], dtype=np.uint64)
            pd = np.bitwise_count(p[i_s] ^ p[j_s])
            keep = (pd > cfg.phash_threshold) & (pd <= cfg.dhash_phash_max)
            for i, j, d in zip(i_s[keep], j_s[keep], d_s[keep], strict=True):
                _add_edge(edges, firsts[i], firsts[j], "dhash", d)
    elif cache is not None:
        cache.pop("dhash", None)  # what the cache holds is this run's searches alone

    # CLIP: cosine on unit embeddings of one row per sha256.
    if meta.vec:
        rows = [r for r in distinct if r in meta.vec]
        if len(rows) > 1:
            x = np.stack([meta.vec[r] for r in rows])
            for i, j, s in zip(*cosine_pairs(x, cfg.clip_threshold, cfg.use_gpu), strict=True):
                _add_edge(edges, rows[i], rows[j], "clip", max(0.0, 1.0 - float(s)))
    return edges


def relation(meta: ImageMeta, a: int, b: int, cfg: NearDupConfig) -> tuple[str, float] | None:
    """The strongest signal linking rows a and b directly, with its distance."""
    if meta.sha[a] is not None and meta.sha[a] == meta.sha[b]:
        return "exact", 0.0
    pa_, pb = meta.pint.get(a), meta.pint.get(b)
    if pa_ is not None and pb is not None:
        pd = (pa_ ^ pb).bit_count()
        if pd <= cfg.phash_threshold:
            return "phash", float(pd)
        da, db = meta.dint.get(a), meta.dint.get(b)
        if (
            cfg.dhash_threshold is not None
            and da is not None
            and db is not None
            and pd <= cfg.dhash_phash_max
        ):
            dd = (da ^ db).bit_count()
            if dd <= cfg.dhash_threshold:
                return "dhash", float(dd)
    va, vb = meta.vec.get(a), meta.vec.get(b)
    if va is not None and vb is not None:
        sim = float(np.dot(va, vb))
        if sim > cfg.clip_threshold:
            return "clip", max(0.0, 1.0 - sim)
    return None


def representative(meta: ImageMeta, members: Iterable[int]) -> int:
    """The member a group keeps: largest w*h, then colour over grayscale, then best search
    rank, then image_id."""
    gray = meta.gray or [False] * len(meta)
    return min(members, key=lambda r: (-meta.area[r], gray[r], meta.rank[r], meta.ids[r]))


def _best_neighbour(
    adjacency: dict[int, list[tuple[int, int, float]]], row: int
) -> tuple[int, str, float] | None:
    """The neighbour `row` is linked to by the strongest signal, then smallest distance."""
    best: tuple[int, float, int] | None = None
    for other, rank, dist in adjacency.get(row, ()):
        cand = (rank, dist, other)
        if best is None or cand < best:
            best = cand
    if best is None:
        return None
    return best[2], KINDS[best[0]], best[1]


def _adjacency(edges: Edges) -> dict[int, list[tuple[int, int, float]]]:
    adj: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    for (a, b), (rank, dist) in edges.items():
        adj[a].append((b, rank, dist))
        adj[b].append((a, rank, dist))
    return adj


@dataclass(frozen=True)
class Group:
    """One connected component of matching images."""

    members: list[int]
    rep: int
    kept: int | None
    scope: str
    # (row, matched row, kind, distance) per dropped member, in row order
    dropped: list[tuple[int, int, str, float]]


def duplicate_groups(
    meta: ImageMeta, cfg: NearDupConfig, cache: PairCache | None = None
) -> list[Group]:
    """Connected components, their representative, scope and one row per dropped member
    (`cache`: see `match_edges`)."""
    edges = match_edges(meta, cfg, cache)
    uf = UnionFind(len(meta))
    for a, b in edges:
        uf.union(a, b)
    adj = _adjacency(edges)
    out = []
    for members in uf.groups():
        rep = representative(meta, members)
        cross_series = len({meta.series[r] for r in members}) > 1
        splits = {meta.split[r] for r in members} - {None} if meta.split is not None else set()
        if cross_series:
            scope = "cross_series"
        elif len(splits) > 1:
            scope = "cross_split"
        else:
            scope = "within_series"
        kept = None if cross_series and cfg.drop_cross_series else rep
        dropped = []
        for row in members:
            if row == kept:
                continue
            rel = relation(meta, row, rep, cfg) if row != rep else None
            if rel is not None:
                dropped.append((row, rep, rel[0], rel[1]))
                continue
            nb = _best_neighbour(adj, row)
            if nb is None:  # cannot happen: every member of a group has an edge
                raise AssertionError(f"group member {meta.ids[row]!r} has no edge")
            dropped.append((row, nb[0], nb[1], nb[2]))
        out.append(Group(members, rep, kept, scope, dropped))
    return out


def find_duplicates(
    meta_hashes: pa.Table,
    config: NearDupConfig | None = None,
    embeddings: tuple[Sequence[str], np.ndarray] | None = None,
    cache: PairCache | None = None,
) -> pa.Table:
    """Group duplicates and record every image to drop.

    Args:
        meta_hashes: one row per image: image_id, series_id, sha256, phash, dhash, width,
            height, rank (optional: split). image_id, sha256 and phash are required; other
            missing columns count as null. Rows with a null hash (decode errors) take part
            only through the hashes they have.
        config: thresholds and policies.
        embeddings: optional ``(image_ids, vectors)``, vectors ``(n, dim)``; ids absent
            from `meta_hashes` are ignored.
        cache: the last run's pHash/dHash value pairs, replaced by this run's (a refresh
            searches only new codes; the table is the same without it).

    Returns:
        The `duplicates` table (`DUPLICATES`), rows in input order, ``action="drop"``.
    """
    cfg = config or NearDupConfig()
    meta = image_meta(meta_hashes, embeddings)
    groups = duplicate_groups(meta, cfg, cache)
    rows: list[tuple[int, dict[str, Any]]] = []
    for g in groups:
        for row, matched, kind, dist in g.dropped:
            rows.append(
                (
                    row,
                    {
                        "image_id": meta.ids[row],
                        "kept_id": meta.ids[g.kept] if g.kept is not None else None,
                        "group_id": meta.ids[g.rep],
                        "matched_id": meta.ids[matched],
                        "kind": kind,
                        "distance": dist,
                        "scope": g.scope,
                        "series_id": meta.series[row],
                        "action": "drop",
                    },
                )
            )
    rows.sort(key=lambda r: r[0])
    return pa.Table.from_pylist([r for _, r in rows], schema=DUPLICATES)


def kept_ids(meta_hashes: pa.Table, duplicates: pa.Table) -> list[str]:
    """Image ids of `meta_hashes` (in order) that no ``action="drop"`` row removes."""
    actions = duplicates.column("action").to_pylist()
    dropped = {
        i
        for i, a in zip(duplicates.column("image_id").to_pylist(), actions, strict=True)
        if a == "drop"
    }
    return [i for i in meta_hashes.column("image_id").to_pylist() if i not in dropped]

