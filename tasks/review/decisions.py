"""Human review decisions (table `reviews`) and how the stages honour them.

`record_review` appends decisions the moment they are made: each call writes one shard of
the `reviews` table (data first, done-marker last, both atomic; `tv100.storage.tables`), so a
decision acknowledged to the reviewer survives the review server being killed, and nothing is
ever rewritten. `latest_reviews` reads every shard and keeps each image's latest decision
(by `decided_at`, ties broken by write order). `apply_reviews` turns the scorer's `relevance`
rows into final ones: a ``reject`` removes the image (``irrelevant``, reason ``review``); an
``accept`` keeps it, overriding an automatic ``irrelevant``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from tv100.storage.root import DataRoot
from tv100.storage.schemas import REVIEWS
from tv100.storage.tables import live_shards, read_table, table_exists, write_shard

REVIEWS_TABLE = "reviews"
#: What a reviewer may decide about an image.
DECISIONS = ("accept", "reject")
#: The reason a human decision gives in the `relevance` table.
REVIEW_REASON = "review"
#: How long a build paused for review (`tv100.flows.review`) waits for "Done" by default.
REVIEW_TIMEOUT_S = 3600.0

_write_clock_lock = threading.Lock()
_last_write_ns = 0


def _write_clock_ns() -> int:
    """Wall-clock nanoseconds, strictly increasing within this process."""
    global _last_write_ns
    with _write_clock_lock:
        _last_write_ns = max(time.time_ns(), _last_write_ns + 1)
        return _last_write_ns


def record_review(
    root: DataRoot,
    image_ids: Sequence[str],
    decision: str,
    reviewer: str,
    now: datetime | None = None,
) -> pa.Table:
    """Append one decision on `image_ids` to the `reviews` table (one new shard).

    Returns:
        The rows written (the caller acknowledges them once this returns).

    Raises:
        ValueError: an unknown decision, no image, or an empty reviewer name.
    """
    if decision not in DECISIONS:
        raise ValueError(f"review decision {decision!r} is invalid; expected one of {DECISIONS}")
    if not image_ids or not all(isinstance(i, str) and i for i in image_ids):
        raise ValueError(f"review of {list(image_ids)!r}; expected one or more image ids")
    if not reviewer.strip():
        raise ValueError("reviewer is empty; expected a name")
    at = now or datetime.now(UTC)
    rows = pa.table({
        "image_id": pa.array(list(image_ids), pa.string()),
        "decision": pa.array([decision] * len(image_ids), pa.string()),
        "reviewer": pa.array([reviewer.strip()] * len(image_ids), pa.string()),
        "decided_at": pa.array([at] * len(image_ids), REVIEWS.field("decided_at").type),
    }, schema=REVIEWS)
    # Shard ids sort by decision time, then write order (a strictly increasing write clock),
    # then a random tail against collisions between processes.
    shard = f"{int(at.timestamp() * 1e9):020d}-{_write_clock_ns():020d}-{secrets.token_hex(4)}"
    write_shard(root, REVIEWS_TABLE, shard, rows, schema=REVIEWS)
    return rows


def all_reviews(root: DataRoot) -> pa.Table:
    """Every decision ever recorded, in write order (empty when none)."""
    if not table_exists(root, REVIEWS_TABLE) and not live_shards(root, REVIEWS_TABLE):
        return REVIEWS.empty_table()
    return read_table(root, REVIEWS_TABLE).cast(REVIEWS)


def latest_reviews(root: DataRoot) -> pa.Table:
    """Each reviewed image's latest decision: image_id, decision, reviewer, decided_at,
    sorted by image_id."""
    rows = all_reviews(root)
    latest: dict[str, dict[str, object]] = {}
    for i, r in enumerate(rows.to_pylist()):
        key = (r["decided_at"], i)
        old = latest.get(r["image_id"])
        if old is None or key >= old["_key"]:  # type: ignore[operator]
            latest[r["image_id"]] = {**r, "_key": key}
    out = [{k: v for k, v in r.items() if k != "_key"} for _, r in sorted(latest.items())]
    return pa.Table.from_pylist(out, schema=REVIEWS)


def apply_reviews(relevance: pa.Table, reviews: pa.Table) -> pa.Table:
    """The `relevance` rows with human decisions applied (see the module docstring).

    `auto_decision` and `auto_reason` keep the scorer's decision; rows already carrying them
    (a table read back) are re-decided from those, so applying twice changes nothing.
    """
    names = relevance.column_names
    auto_d = relevance.column("auto_decision") if "auto_decision" in names else None
    auto_r = relevance.column("auto_reason") if "auto_reason" in names else None
    if auto_d is None or auto_d.null_count == len(auto_d):
        auto_d, auto_r = relevance.column("decision"), relevance.column("reason")
    human = dict(zip(reviews.column("image_id").to_pylist(),
                     reviews.column("decision").to_pylist(), strict=True))
    decisions, reasons = [], []
    for image_id, d, r in zip(relevance.column("image_id").to_pylist(), auto_d.to_pylist(),
                              auto_r.to_pylist() if auto_r is not None else [None] * len(auto_d),
                              strict=True):
        h = human.get(image_id)
        if h == "reject":
            d, r = "irrelevant", REVIEW_REASON
        elif h == "accept" and d == "irrelevant":
            d, r = "keep", REVIEW_REASON
        decisions.append(d)
        reasons.append(r)
    out = relevance
    for name, values in (("decision", decisions), ("reason", reasons),
                         ("auto_decision", auto_d), ("auto_reason", auto_r)):
        column = pa.array(values, pa.string()) if isinstance(values, list) else values
        if name in out.column_names:
            out = out.set_column(out.column_names.index(name), name, column)
        else:
            out = out.append_column(name, column)
    return out


def rejected_ids(reviews: pa.Table) -> pa.Array:
    """Image ids whose latest decision is ``reject``."""
    return reviews.filter(pc.equal(reviews.column("decision"), "reject")).column("image_id")


def reviewed_images(root: DataRoot, images: pa.Table, relevance: pa.Table | None) -> pa.Table:
    """`images` less the irrelevant ones, with the latest human reviews applied on top of
    `relevance` (None: no scores, only the human rejections leave out images)."""
    from tv100.tasks.rank.relevance import relevant_images  # torch and faiss: only when needed

    reviews = latest_reviews(root)
    if relevance is None:
        drop = rejected_ids(reviews)
        return images.filter(pc.invert(pc.is_in(images.column("image_id"), value_set=drop)))
    return relevant_images(images, apply_reviews(relevance, reviews))
