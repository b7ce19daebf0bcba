"""tasks/rank/select.py: consensus selection (``all``, ``vote``) over three models, its knobs,
and ``max``/``mean`` left as they were."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tv100.storage.schemas import CLASSES, ZEROSHOT
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, SelectConfig
from tv100.tasks.rank.select import (
    default_seen_threshold,
    novelty,
    seen_threshold,
    select_classes,
)

MODELS = ("mA", "mB", "mC")
#: top-1 per series and model (None: the model classified no image of it). With 40
#: candidates the default seen threshold is 0.1 (at or below: unseen).
TOP1: dict[str, tuple[float | None, ...]] = {
    "a": (0.0, 0.0, 0.0),  # unseen by 3, mean 0
    "b": (0.1, 0.05, 0.0),  # unseen by 3 (0.1 is at the threshold), mean 0.05
    "c": (0.0, 0.0, 0.5),  # unseen by 2, mean 1/6
    "d": (0.9, 0.0, 0.0),  # unseen by 2, mean 0.3
    "e": (0.2, 0.3, 0.0),  # unseen by 1, mean 1/6
    "f": (0.9, 0.8, 0.95),  # seen by all
    "g": (0.0, 0.0, 0.0),  # unseen by 3, but too few images
    "h": (0.0, 0.0, None),  # unseen by both models that classified it, mean 0
    "i": (0.0, 0.0, 0.5),  # ties with c: same votes, same mean
}
FEW = {"g": 3}


def _zeroshot(top1: dict[str, tuple[float | None, ...]] = TOP1, n_classes: int = 40) -> pa.Table:
    rows = []
    for j, model in enumerate(MODELS):
        for sid, accs in top1.items():
            acc = accs[j]
            n = 0 if acc is None else FEW.get(sid, 20)
            rows.append(
                {"model_key": model, "series_id": sid, "title": sid.upper(), "n_images": n,
                 "top1": acc, "top5": acc, "mean_true_prob": acc, "confused_with": None,
                 "confused_title": None, "confused_share": None, "n_classes": n_classes,
                 "templates": list(DEFAULT_TEMPLATES)}  # fmt: skip
            )
    return pa.Table.from_pylist(rows, schema=ZEROSHOT)


def _select(**kwargs: object) -> dict[str, dict[str, object]]:
    cfg = SelectConfig(**{"k": 10, "min_images": 10, **kwargs})  # type: ignore[arg-type]
    table = select_classes(_zeroshot(), cfg)
    assert table.schema.equals(CLASSES)
    return {r["series_id"]: r for r in table.to_pylist()}


def _kept(rows: dict[str, dict[str, object]]) -> list[str]:
    return sorted(s for s, r in rows.items() if r["kept"])


def _by_rank(rows: dict[str, dict[str, object]]) -> list[str]:
    ranked = [(r["rank"], s) for s, r in rows.items() if r["rank"] is not None]
    return [s for _, s in sorted(ranked)]  # type: ignore[type-var]


def test_novelty_counts_the_models_that_find_a_series_unseen():
    rows = {r.series_id: r for r in novelty(_zeroshot(), "all")}
    assert {s: (r.n_models, r.n_unseen) for s, r in rows.items()} == {
        "a": (3, 3), "b": (3, 3), "c": (3, 2), "d": (3, 2), "e": (3, 1), "f": (3, 0),
        "g": (3, 3), "h": (2, 2), "i": (3, 2),
    }  # fmt: skip
    assert rows["b"].accuracy == pytest.approx(0.05) and rows["h"].accuracy == 0.0
    assert all(r.n_unseen is None for r in novelty(_zeroshot(), "max"))
    strict = {r.series_id: r.n_unseen for r in novelty(_zeroshot(), "vote", threshold=0.0)}
    assert strict["b"] == 1 and strict["e"] == 1 and strict["a"] == 3


def test_all_keeps_only_series_every_model_finds_unseen():
    rows = _select(aggregate="all")
    assert _kept(rows) == ["a", "b", "h"]  # h: every model that classified it
    # qualifying first, then by models finding it unseen, then mean top-1, then series_id
    assert _by_rank(rows) == ["a", "b", "h", "c", "i", "d", "e", "f"]
    assert {s: rows[s]["reason"] for s in "cdefi"} == dict.fromkeys("cdefi", "seen")
    assert rows["g"]["reason"] == "too_few_images" and rows["g"]["rank"] is None
    assert [rows[s]["class_index"] for s in "abh"] == [0, 1, 2]
    assert rows["a"]["aggregate"] == "all" and rows["a"]["models"] == list(MODELS)
    assert rows["a"]["seen_threshold"] == 0.1
    assert (rows["a"]["min_unseen"], rows["h"]["min_unseen"]) == (3, 2)
    assert (rows["a"]["n_unseen"], rows["c"]["n_unseen"]) == (3, 2)
    assert rows["c"]["accuracy"] == pytest.approx(1 / 6)  # the mean top-1
    two = _select(aggregate="all", k=2)
    assert _kept(two) == ["a", "b"] and two["h"]["reason"] == "too_easy"


@pytest.mark.parametrize(
    ("votes", "k", "kept", "too_easy"),
    [
        (1, 4, ["a", "b", "c", "h"], ["d", "e", "i"]),  # c before i: a tie, by series_id
        (2, 5, ["a", "b", "c", "h", "i"], ["d"]),
        (3, 10, ["a", "b"], []),  # h has two votes only: two models classified it
    ],
)
def test_vote_keeps_series_unseen_by_at_least_k_models(votes, k, kept, too_easy):
    rows = _select(aggregate="vote", min_unseen=votes, k=k)
    assert _kept(rows) == kept
    assert sorted(s for s, r in rows.items() if r["reason"] == "too_easy") == too_easy
    seen = sorted(s for s, r in rows.items() if r["reason"] == "seen")
    assert seen == sorted(set("abcdefhi") - set(kept) - set(too_easy))
    assert {r["min_unseen"] for r in rows.values()} == {votes}
    order = _by_rank(rows)
    assert order[: len(kept)] == sorted(kept, key=order.index)
    assert order.index("c") + 1 == order.index("i")  # the tie: by series_id


def test_vote_defaults_to_a_majority_and_refuses_more_votes_than_models():
    assert _kept(_select(aggregate="vote")) == _kept(_select(aggregate="vote", min_unseen=2))
    with pytest.raises(ValueError, match=r"min_unseen=4; expected 1\.\.3 \(the models ranked\)"):
        _select(aggregate="vote", min_unseen=4)


def test_seen_threshold_is_configurable_and_defaults_to_twice_chance():
    strict = _select(aggregate="all", seen_threshold=0.0)
    assert _kept(strict) == ["a", "h"]  # b: 0.1 and 0.05 are above 0
    assert strict["b"]["reason"] == "seen" and strict["a"]["seen_threshold"] == 0.0
    # 5 candidates: chance 0.2, the default threshold 0.4, so e (0.2, 0.3, 0) is unseen
    small = select_classes(_zeroshot(n_classes=5), SelectConfig(k=10, min_images=10,
                                                                aggregate="all"))  # fmt: skip
    rows = {r["series_id"]: r for r in small.to_pylist()}
    assert rows["e"]["kept"] and rows["e"]["seen_threshold"] == 0.4
    assert default_seen_threshold(40) == 0.1 and default_seen_threshold(5) == 0.4
    assert seen_threshold(_zeroshot(), 0.25) == 0.25
    with pytest.raises(ValueError, match="n_classes=0"):
        default_seen_threshold(0)


def test_max_and_mean_rank_as_before_with_null_consensus_columns():
    by_max = _select(aggregate="max", k=3)
    assert _by_rank(by_max) == ["a", "h", "b", "e", "c", "i", "d", "f"]
    assert _kept(by_max) == ["a", "b", "h"]
    assert {r["reason"] for s, r in by_max.items() if s in "cdefi"} == {"too_easy"}
    by_mean = _select(aggregate="mean", k=3)
    assert _by_rank(by_mean) == ["a", "h", "b", "c", "e", "i", "d", "f"]
    for rows in (by_max, by_mean):
        assert all(r["seen_threshold"] is None and r["min_unseen"] is None
                   and r["n_unseen"] is None for r in rows.values())  # fmt: skip


def test_votes_needed():
    assert SelectConfig(aggregate="all").votes_needed(3) == 3
    assert [SelectConfig(aggregate="vote").votes_needed(n) for n in (1, 2, 3, 4)] == [1, 2, 2, 3]
    assert SelectConfig(aggregate="vote", min_unseen=1).votes_needed(3) == 1
    assert SelectConfig(aggregate="max", min_unseen=5).votes_needed(3) is None  # ignored
    assert SelectConfig(aggregate="mean").votes_needed(2) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aggregate": "median"}, "SelectConfig.aggregate='median'; expected one of"),
        ({"min_unseen": 0}, "SelectConfig.min_unseen=0; expected an integer 1..100"),
        ({"min_unseen": 101}, "SelectConfig.min_unseen=101; expected an integer 1..100"),
        ({"min_unseen": 1.5}, "SelectConfig.min_unseen=1.5; expected an integer"),
        ({"min_unseen": True}, "SelectConfig.min_unseen=True; expected an integer"),
        ({"seen_threshold": -0.1}, "SelectConfig.seen_threshold=-0.1; expected 0..1"),
        ({"seen_threshold": 1.5}, "SelectConfig.seen_threshold=1.5; expected 0..1"),
        ({"seen_threshold": "0.1"}, "SelectConfig.seen_threshold='0.1'; expected 0..1"),
        ({"seen_threshold": float("nan")}, "SelectConfig.seen_threshold=nan; expected 0..1"),
    ],
)
def test_bad_knobs_are_refused_with_one_line(kwargs, message):
    with pytest.raises(ValueError) as err:
        SelectConfig(**{"aggregate": "vote", **kwargs})  # type: ignore[arg-type]
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
