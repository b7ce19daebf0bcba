"""The report's relevance and review: the per-class query, the human overrules example, the
figure, the card section and ``metrics.csv``, on a hand-made root."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from PIL import Image

from tests.support.synthetic_root import ALL_TABLES, write_synthetic_root
from tv100.storage.catalog import connect, query
from tv100.storage.root import DataRoot
from tv100.storage.schemas import RELEVANCE
from tv100.storage.tables import write_table
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.report import analysis, figures
from tv100.tasks.report.config import CARD, FIGURES, METRICS_CSV, OPTIONAL_FIGURES
from tv100.tasks.report.named_queries import load_query
from tv100.tasks.report.report import write_report
from tv100.tasks.review.decisions import apply_reviews, latest_reviews, record_review

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
#: Every table the report reads but `relevance` and `reviews`.
CLASS_TABLES = ALL_TABLES

# ---- the hand-made case -------------------------------------------------------------------
#
# The synthetic root's clean images: tt01 135, tt02 58, tt03 28, tt04 10 (the dataset's
# classes) and tt05 5 (not kept). The scorer flags, per series, the first images:
#   tt01: 10 other_series, then 5 offtopic; tt02: 4 offtopic; tt04: 1 offtopic;
#   tt05: 2 other_series; tt03: nothing, and its last 3 images are unscored.
# Humans (the latest review of an image wins):
#   tt01: reject 3 the scorer kept (k1-k3); k4 rejected, then accepted (kept: no overrule);
#         k5 accepted, then rejected (removed); accept 2 other_series flags (o1, o2);
#         reject 1 offtopic flag (f1: confirms the scorer, no overrule);
#   tt04: accept its offtopic flag; tt05: reject 1 image the scorer kept (not a class).
# Half the reviews come before the rank stage wrote `relevance` (applied there), half after:
# the report applies them all, as the train stage does.
FLAGS = {"tt01": ["other_series"] * 10 + ["offtopic"] * 5, "tt02": ["offtopic"] * 4,
         "tt04": ["offtopic"], "tt05": ["other_series"] * 2}
UNSCORED = {"tt03": 3}
EXPECTED = {
    # n_images, n_scored, n_other_series, n_offtopic, n_human_rejects, n_human_removed,
    # n_human_overruled, n_found_other_series, n_found_offtopic, n_irrelevant, n_kept
    "tt01": (135, 135, 10, 5, 5, 4, 2, 8, 5, 17, 118),
    "tt02": (58, 58, 0, 4, 0, 0, 0, 0, 4, 4, 54),
    "tt03": (28, 25, 0, 0, 0, 0, 0, 0, 0, 0, 28),
    "tt04": (10, 10, 0, 1, 0, 0, 1, 0, 0, 0, 10),
}
COUNT_COLUMNS = (
    "n_images", "n_scored", "n_other_series", "n_offtopic", "n_human_rejects",
    "n_human_removed", "n_human_overruled", "n_found_other_series", "n_found_offtopic",
    "n_irrelevant", "n_kept",
)


def _clean_ids(root: DataRoot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in cleaned_images(root).select(["image_id", "series_id"]).to_pylist():
        out.setdefault(r["series_id"], []).append(r["image_id"])
    return out


def _auto_relevance(ids: dict[str, list[str]], method: str = "cleanlab+knn:RN50") -> pa.Table:
    """The scorer's rows (`FLAGS`, `UNSCORED`), as the rank stage writes them before reviews."""
    rows = []
    for sid, images in sorted(ids.items()):
        flags = FLAGS.get(sid, []) if method != "off" else []
        n_scored = len(images) - UNSCORED.get(sid, 0) if method != "off" else 0
        for k, iid in enumerate(images):
            reason = flags[k] if k < len(flags) else None
            decision = "irrelevant" if reason else "keep"
            rows.append({
                "image_id": iid, "series_id": sid,
                "score": (0.1 if reason else 0.9) if k < n_scored else None,
                "outlier_score": 0.0 if k < n_scored else None,
                "suspected_series_id": "tt02" if reason == "other_series" else None,
                "decision": decision, "reason": reason, "method": method,
                "auto_decision": decision, "auto_reason": reason,
            })
    return pa.Table.from_pylist(rows, schema=RELEVANCE).sort_by("image_id")


def _reviews(root: DataRoot, ids: dict[str, list[str]], after_rank: bool) -> None:
    a, d, e = ids["tt01"], ids["tt04"], ids["tt05"]
    k1, k2, k3, k4, k5 = a[20:25]  # kept by the scorer (after its 15 flags)
    o1, o2, f1 = a[0], a[1], a[10]
    t = T0 + timedelta(hours=1 if after_rank else 0)
    if not after_rank:
        record_review(root, [k1, k2], "reject", "ann", now=t)
        record_review(root, [k4], "reject", "ann", now=t + timedelta(seconds=1))
        record_review(root, [k5], "accept", "ann", now=t + timedelta(seconds=2))
        record_review(root, [o1], "accept", "ann", now=t + timedelta(seconds=3))
        record_review(root, ["tt99-0000"], "reject", "ann", now=t)  # no such image: ignored
    else:
        record_review(root, [k3], "reject", "bob", now=t)
        record_review(root, [k4], "accept", "bob", now=t + timedelta(seconds=1))
        record_review(root, [k5], "reject", "bob", now=t + timedelta(seconds=2))
        record_review(root, [o2, d[0]], "accept", "bob", now=t + timedelta(seconds=3))
        record_review(root, [f1], "reject", "bob", now=t + timedelta(seconds=4))
        record_review(root, [e[3]], "reject", "bob", now=t + timedelta(seconds=5))


def _overruled(ids: dict[str, list[str]]) -> dict[str, tuple[str, str | None, str, str]]:
    """image_id -> (auto_decision, auto_reason, human decision, reviewer)."""
    a = ids["tt01"]
    return {
        a[20]: ("keep", None, "reject", "ann"),
        a[21]: ("keep", None, "reject", "ann"),
        a[22]: ("keep", None, "reject", "bob"),
        a[24]: ("keep", None, "reject", "bob"),
        a[0]: ("irrelevant", "other_series", "accept", "ann"),
        a[1]: ("irrelevant", "other_series", "accept", "bob"),
        ids["tt04"][0]: ("irrelevant", "offtopic", "accept", "bob"),
        ids["tt05"][3]: ("keep", None, "reject", "bob"),
    }


def _reviewed_root(
    path: str, reviews: bool = True, method: str = "cleanlab+knn:RN50"
) -> DataRoot:
    root = write_synthetic_root(path, tables=CLASS_TABLES)
    ids = _clean_ids(root)
    auto = _auto_relevance(ids, method)
    if reviews:
        _reviews(root, ids, after_rank=False)
        auto = apply_reviews(auto, latest_reviews(root))  # what the rank stage writes
    write_table(root, "relevance", auto.cast(RELEVANCE), schema=RELEVANCE)
    if reviews:
        _reviews(root, ids, after_rank=True)
    return root


def _card(root: DataRoot) -> str:
    with open(root.path("report", CARD), encoding="utf-8") as f:
        return f.read()


def _metrics(root: DataRoot) -> dict[tuple[str, str, str], str]:
    with open(root.path("report", METRICS_CSV), newline="") as f:
        return {(r["section"], r["key"], r["metric"]): r["value"] for r in csv.DictReader(f)}


def _per_class(root: DataRoot) -> list[dict]:
    con = connect(root)
    try:
        analysis.prepare(con)
        return analysis.relevance_per_class(con).to_pylist()
    finally:
        con.close()


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    root = _reviewed_root(str(tmp_path_factory.mktemp("relevance") / "data"))
    return root, write_report(root)


# ---- the named queries ---------------------------------------------------------------------


def test_relevance_per_class_counts_the_hand_made_case(reviewed):
    root, _ = reviewed
    rows = _per_class(root)
    assert [r["series_id"] for r in rows] == ["tt01", "tt02", "tt03", "tt04"]  # noisiest first
    got = {r["series_id"]: tuple(r[c] for c in COUNT_COLUMNS) for r in rows}
    assert got == EXPECTED
    share = {r["series_id"]: r["noise_share"] for r in rows}
    assert share == pytest.approx({"tt01": 17 / 135, "tt02": 4 / 58, "tt03": 0.0, "tt04": 0.0})
    assert rows[0]["title"] == "Alpha"
    totals = analysis.relevance_totals(pa.Table.from_pylist(rows))
    assert (totals.classes, totals.images, totals.irrelevant) == (4, 231, 21)


def test_human_overrules_lists_exactly_the_overruled_images(reviewed):
    root, _ = reviewed
    ids = _clean_ids(root)
    q = load_query("human_overrules")
    assert q.example and not q.params
    assert not set('"$`\\') & set(q.sql)  # the card quotes it for the shell as it is
    table = query(root, q.sql)  # what `tv100 sql` runs
    assert table.column_names == [
        "image_id", "series_id", "title", "auto_decision", "auto_reason", "human_decision",
        "reviewer", "decided_at", "path",
    ]
    got = {
        r["image_id"]: (r["auto_decision"], r["auto_reason"], r["human_decision"], r["reviewer"])
        for r in table.to_pylist()
    }
    assert got == _overruled(ids)
    # after a rebuild (reviews applied by the rank stage), the overrules are the rows whose
    # final decision differs from the scorer's
    final = apply_reviews(_auto_relevance(ids), latest_reviews(root)).to_pylist()
    assert {r["image_id"] for r in final if r["decision"] != r["auto_decision"]} == set(got)


def test_human_overrules_runs_with_tv100_sql(reviewed):
    from typer.testing import CliRunner

    from tv100.flows.cli import app

    root, _ = reviewed
    out = CliRunner().invoke(
        app, ["sql", "--data", root.url, "--format", "csv", load_query("human_overrules").sql]
    )
    assert out.exit_code == 0, out.output
    assert len([line for line in out.output.splitlines() if line.strip()]) == 1 + 8


def test_old_relevance_rows_without_auto_columns_count_the_decision(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=CLASS_TABLES)
    old = _auto_relevance(_clean_ids(root)).drop_columns(["auto_decision", "auto_reason"])
    write_table(root, "relevance", old, schema=old.schema)  # written before the columns
    rows = {r["series_id"]: r for r in _per_class(root)}
    assert rows["tt01"]["n_other_series"] == 10 and rows["tt01"]["n_irrelevant"] == 15
    assert rows["tt02"]["n_offtopic"] == 4


# ---- the report ------------------------------------------------------------------------------


def test_report_draws_the_relevance_figure(reviewed):
    root, result = reviewed
    assert result.skipped == {}
    path = result.files["relevance"]
    assert path == root.path("report", FIGURES["relevance"])
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.width >= 500 and img.height >= 200
    again = write_report(root)
    with open(path, "rb") as f:
        assert f.read() == data  # same tables, same bytes
    assert again.files["relevance"] == path


def test_card_states_the_relevance_totals_and_per_class_table(reviewed):
    root, _ = reviewed
    card = _card(root)
    headings = [line for line in card.splitlines() if line.startswith("#")]
    assert headings.index("### Relevance and review") == (
        headings.index("### Removals by reason") + 1
    )
    for line in (
        "| images judged for relevance | 231 |",
        "| scored by the relevance scorer | 228 |",
        "| flagged by the scorer: another series (`other_series`) | 10 |",
        "| flagged by the scorer: off-topic (`offtopic`) | 10 |",
        "| rejected by a human | 5 |",
        "| removed by a human (the scorer kept them) | 4 |",
        "| overruled by a human (accepted though flagged) | 3 |",
        "| irrelevant in the end | 21 |",
        "| kept in the end | 210 |",
        "| irrelevant share in the end | 9.09% |",
        "| Alpha (tt01) | 135 | 10 | 5 | 4 | 2 | 17 | 118 | 12.59% |",
        "| Delta (tt04) | 10 | 0 | 1 | 0 | 1 | 0 | 10 | 0.00% |",
    ):
        assert line in card, line
    assert "Figure: [Relevance and review per class](relevance.png)." in card
    assert "![Relevance and review per class](relevance.png)" in card
    assert f"tv100 sql --data {root.url} \"\n{load_query('human_overrules').sql}\n\"" in card
    assert "No image was scored automatically" not in card
    assert "## Notes" not in card and "\n\n\n" not in card


def test_metrics_csv_holds_the_relevance_totals(reviewed):
    root, _ = reviewed
    m = _metrics(root)
    got = {k[2]: v for k, v in m.items() if k[:2] == ("relevance", "total")}
    assert got == {
        "classes": "4", "images": "231", "scored": "228", "other_series": "10",
        "offtopic": "10", "human_rejects": "5", "human_removed": "4", "human_overruled": "3",
        "irrelevant": "21", "kept": "210", "irrelevant_share": "0.0909091",
    }


def test_a_root_without_reviews_reports_no_human_decision(tmp_path):
    root = _reviewed_root(str(tmp_path / "data"), reviews=False)
    result = write_report(root)
    assert "relevance" in result.files and result.skipped == {}
    rows = {r["series_id"]: r for r in _per_class(root)}
    assert rows["tt01"]["n_irrelevant"] == 15 and rows["tt04"]["n_irrelevant"] == 1
    assert not any(
        r[c] for r in rows.values()
        for c in ("n_human_rejects", "n_human_removed", "n_human_overruled")
    )
    card = _card(root)
    assert "| rejected by a human | 0 |" in card
    assert "| overruled by a human (accepted though flagged) | 0 |" in card
    assert "| irrelevant in the end | 20 |" in card
    assert _metrics(root)[("relevance", "total", "human_removed")] == "0"


def test_a_root_without_relevance_omits_the_section(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"))
    stale = root.path("report", FIGURES["relevance"])
    root.fs.makedirs(root.path("report"), exist_ok=True)
    with open(stale, "wb") as f:
        f.write(b"old")
    result = write_report(root)
    assert "relevance" not in result.files and "relevance" not in result.skipped
    assert not root.fs.exists(stale)
    card = _card(root)
    assert "## Relevance and review" not in card and "relevance.png" not in card
    assert not any(k[0] == "relevance" for k in _metrics(root))
    assert set(OPTIONAL_FIGURES) == {"relevance"}


def test_scoring_off_without_reviews_skips_the_figure_with_a_note(tmp_path):
    root = _reviewed_root(str(tmp_path / "data"), reviews=False, method="off")
    result = write_report(root)
    assert set(result.skipped) == {"relevance"}
    card = _card(root)
    assert "## Relevance and review" in card
    assert "No image was scored automatically" in card
    assert "| scored by the relevance scorer | 0 |" in card
    assert "Figure Relevance and review per class skipped: relevance scoring was off" in card


# ---- the figure ----------------------------------------------------------------------------


def _per_class_table(rows: list[tuple[str, str | None, int, int, int, int, int]]) -> pa.Table:
    """(series_id, title, images, found other, found offtopic, removed, overruled) rows."""
    out = []
    for sid, title, n, fo, ff, rm, ov in rows:
        irrelevant = fo + ff + rm
        out.append({
            "series_id": sid, "title": title, "n_images": n, "n_found_other_series": fo,
            "n_found_offtopic": ff, "n_human_removed": rm, "n_human_overruled": ov,
            "n_irrelevant": irrelevant, "n_kept": n - irrelevant,
            "noise_share": irrelevant / n if n else None,
        })
    return pa.Table.from_pylist(out)


def test_plot_relevance_stacks_the_shares_noisiest_first():
    t = _per_class_table([
        ("tt1", "Alpha", 100, 10, 5, 5, 2),
        ("tt2", "甄嬛传", 50, 0, 5, 0, 0),
        ("tt3", "Charlie", 10, 0, 0, 0, 1),
        ("tt4", "Empty", 0, 0, 0, 0, 0),
    ])
    fig = figures.plot_relevance(t)
    ax = fig.axes[0]
    labels = [x.get_text() for x in ax.get_yticklabels()]
    assert labels == ["Alpha", "tt2", "Charlie"]  # a title the font cannot draw: its id
    legend = [x.get_text() for x in fig.legends[0].get_texts()]
    assert legend == [label for label, _ in figures.RELEVANCE_SEGMENTS.values()]
    widths = [p.get_width() for p in ax.patches]
    # segments in legend order, one bar per class; each class sums to 100%
    n = len(labels)
    per_class = [sum(widths[i::n]) for i in range(n)]
    assert per_class == pytest.approx([100.0] * n)
    assert widths[0] == pytest.approx(10.0) and widths[2 * n] == pytest.approx(5.0)
    assert "20% (20/100)" in [x.get_text() for x in ax.texts]


def test_plot_relevance_shows_only_the_noisiest_classes():
    t = _per_class_table([(f"tt{i:02d}", f"S{i}", 10, 9 - i, 0, 0, 0) for i in range(8)])
    fig = figures.plot_relevance(t, max_classes=3)
    ax = fig.axes[0]
    assert [x.get_text() for x in ax.get_yticklabels()] == ["S0", "S1", "S2"]
    assert "3 noisiest of 8 classes" in ax.get_title()
