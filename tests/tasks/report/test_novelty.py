"""Novelty per model: the zeroshot stage's top confusions, the ``novelty_matrix`` and
``unseen_confusions`` named queries on tiny catalogs, and the novelty figure."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.support.synthetic_root import write_synthetic_root
from tv100.storage.catalog import complete_tables, connect, query
from tv100.storage.root import DataRoot
from tv100.storage.schemas import CLASSES, ZEROSHOT
from tv100.storage.tables import write_table
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, SelectConfig, ZeroShotConfig
from tv100.tasks.rank.select import select_classes
from tv100.tasks.rank.zeroshot import series_table
from tv100.tasks.report.named_queries import load_query
from tv100.tasks.report.novelty_figure import draw_novelty, mistaken_for, plot_novelty

TITLES = {"tt01": "Alpha", "tt02": "Bravo", "tt03": "Charlie", "tt04": "Delta"}
#: (model, series) -> (top1, [(confused series, share), ...]); seen threshold 0.2 below.
ZS = {
    ("mA", "tt01"): (0.0, [("tt02", 0.6), ("tt03", 0.4)]),
    ("mB", "tt01"): (0.1, [("tt02", 0.5), ("tt04", 0.4)]),
    ("mA", "tt02"): (0.9, [("tt01", 0.1)]),
    ("mB", "tt02"): (0.1, [("tt04", 0.9)]),
    ("mA", "tt03"): (0.2, [("tt04", 0.8)]),  # at the threshold: unseen
    ("mB", "tt03"): (0.0, [("tt01", 1.0)]),
    ("mA", "tt04"): (0.8, [("tt02", 0.2)]),
    ("mB", "tt04"): (0.9, [("tt03", 0.1)]),
}


def test_series_table_records_the_top_three_confusions():
    ids = ["s1", "s5", "s3", "s4", "s2"]  # class order is not series order
    titles = [i.upper() for i in ids]
    # s1: 10 images, 4 right, 3 taken for s3, one each for s5, s4 and s2 (a tie)
    preds = [0] * 4 + [2] * 3 + [1, 3, 4]
    true = np.array([0] * 10 + [4, 4], np.int64)  # s2: two images, both right
    top = np.array(preds + [4, 4], np.int64)[:, None]
    rows = {r["series_id"]: r for r in series_table(
        "m", ids, titles, true, top, np.full(12, 0.5), ZeroShotConfig()).to_pylist()}
    s1 = rows["s1"]
    assert s1["confusions"] == [
        {"series_id": "s3", "title": "S3", "share": 0.3},
        {"series_id": "s2", "title": "S2", "share": 0.1},  # the tie: lower series ids
        {"series_id": "s4", "title": "S4", "share": 0.1},
    ]
    assert (s1["confused_with"], s1["confused_title"], s1["confused_share"]) == ("s3", "S3", 0.3)
    assert rows["s2"]["confusions"] == [] and rows["s2"]["confused_with"] is None
    assert rows["s5"]["confusions"] is None and rows["s5"]["n_images"] == 0


def _zeroshot_rows() -> list[dict[str, object]]:
    rows = []
    for (model, sid), (top1, conf) in sorted(ZS.items()):
        rows.append(
            {"model_key": model, "series_id": sid, "title": TITLES[sid], "n_images": 10,
             "top1": top1, "top5": 1.0, "mean_true_prob": top1, "confused_with": conf[0][0],
             "confused_title": TITLES[conf[0][0]], "confused_share": conf[0][1],
             "n_classes": len(TITLES), "templates": list(DEFAULT_TEMPLATES),
             "confusions": [{"series_id": s, "title": TITLES[s], "share": v} for s, v in conf]}
        )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> DataRoot:
    root = DataRoot(str(tmp_path_factory.mktemp("novelty") / "data")).ensure()
    zs = pa.Table.from_pylist(_zeroshot_rows(), schema=ZEROSHOT)
    classes = select_classes(zs, SelectConfig(k=2, min_images=1, aggregate="all",
                                              seen_threshold=0.2))  # fmt: skip
    write_table(root, "zeroshot", zs, schema=ZEROSHOT)
    write_table(root, "classes", classes, schema=CLASSES)
    return root


def test_novelty_matrix_orders_series_by_consensus(tiny_root):
    rows = query(tiny_root, load_query("novelty_matrix").sql).to_pylist()
    assert [(r["series_id"], r["model_key"]) for r in rows] == [
        (s, m) for s in ("tt01", "tt03", "tt02", "tt04") for m in ("mA", "mB")
    ]
    by = {(r["series_id"], r["model_key"]): r for r in rows}
    one = by[("tt03", "mA")]
    assert (one["top1"], one["unseen"], one["seen_threshold"]) == (0.2, True, 0.2)
    assert (one["n_models"], one["n_unseen"], one["min_top1"], one["max_top1"]) == (2, 2, 0.0, 0.2)
    assert one["mean_top1"] == pytest.approx(0.1)
    assert one["title"] == "Charlie" and one["aggregate"] == "all"
    assert {s: by[(s, "mA")]["n_unseen"] for s in TITLES} == {
        "tt01": 2, "tt02": 1, "tt03": 2, "tt04": 0}  # fmt: skip
    assert {s for s in TITLES if by[(s, "mB")]["kept"]} == {"tt01", "tt03"}
    assert by[("tt02", "mA")]["reason"] == "seen" and by[("tt02", "mA")]["rank"] == 3


def test_unseen_confusions_lists_what_each_kept_class_is_taken_for(tiny_root):
    rows = query(tiny_root, load_query("unseen_confusions").sql).to_pylist()
    got = [(r["series_id"], r["model_key"], r["position"], r["confused_with"], r["share"],
            r["confused_kept"]) for r in rows]  # fmt: skip
    assert got == [
        ("tt01", "mA", 1, "tt02", 0.6, False),
        ("tt01", "mA", 2, "tt03", 0.4, True),  # mistaken for another kept class
        ("tt01", "mB", 1, "tt02", 0.5, False),
        ("tt01", "mB", 2, "tt04", 0.4, False),
        ("tt03", "mA", 1, "tt04", 0.8, False),
        ("tt03", "mB", 1, "tt01", 1.0, True),
    ]
    assert rows[0]["title"] == "Alpha" and rows[0]["confused_title"] == "Bravo"
    assert [r["class_index"] for r in rows] == [0, 0, 0, 0, 1, 1]


def test_queries_on_the_synthetic_root_fall_back_to_confused_with(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("zeroshot", "classes"))
    matrix = query(root, load_query("novelty_matrix").sql).to_pylist()
    # aggregate max: the default threshold, max(2 / 6 candidates, 0.1)
    assert matrix[0]["seen_threshold"] == pytest.approx(1 / 3)
    order = list(dict.fromkeys(r["series_id"] for r in matrix))
    assert order == ["tt01", "tt03", "tt02", "tt06", "tt04", "tt05"]
    assert {r["series_id"] for r in matrix if not r["kept"]} == {"tt05", "tt06"}
    confusions = query(root, load_query("unseen_confusions").sql).to_pylist()
    assert len(confusions) == 8  # 4 kept classes x 2 models, confused_with only
    assert {(r["position"], r["confused_with"], r["confused_title"]) for r in confusions} == {
        (1, "tt01", "TT01")}  # fmt: skip


def test_queries_read_tables_written_before_the_new_columns(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    old_zs = pa.schema([f for f in ZEROSHOT if f.name != "confusions"])
    new_cols = {"seen_threshold", "min_unseen", "n_unseen"}
    old_classes = pa.schema([f for f in CLASSES if f.name not in new_cols])
    zs = pa.Table.from_pylist(_zeroshot_rows(), schema=ZEROSHOT)
    classes = select_classes(zs, SelectConfig(k=2, min_images=1))
    write_table(root, "zeroshot", zs.select(old_zs.names), schema=old_zs)
    write_table(root, "classes", classes.select(old_classes.names), schema=old_classes)
    con = connect(root)
    try:
        complete_tables(con, ("zeroshot", "classes"))  # as the report's connection does
        rows = con.sql(load_query("unseen_confusions").sql).to_arrow_table().to_pylist()
        matrix = con.sql(load_query("novelty_matrix").sql).to_arrow_table().to_pylist()
    finally:
        con.close()
    assert {r["position"] for r in rows} == {1}  # confused_with only
    assert matrix[0]["seen_threshold"] == 0.5  # max(2 / 4, 0.1)


def test_mistaken_for_averages_shares_over_the_models():
    rows = [
        {"series_id": "x", "model_key": "m1", "confused_with": "y", "confused_title": "Y",
         "share": 0.6},
        {"series_id": "x", "model_key": "m1", "confused_with": "z", "confused_title": "Z",
         "share": 0.2},
        {"series_id": "x", "model_key": "m2", "confused_with": "z", "confused_title": "Z",
         "share": 0.4},
    ]  # fmt: skip
    got = mistaken_for(rows, top=2)["x"]
    assert [t for t, _ in got] == ["Y", "Z"]
    assert [v for _, v in got] == pytest.approx([0.3, 0.3])  # a tie: by title


def test_novelty_figure_marks_kept_classes_and_their_confusions(tiny_root, tmp_path):
    matrix = query(tiny_root, load_query("novelty_matrix").sql)
    confusions = query(tiny_root, load_query("unseen_confusions").sql)
    fig = plot_novelty(matrix, confusions)
    heat, notes = fig.axes[0], fig.axes[1]
    labels = heat.get_yticklabels()
    assert [t.get_text() for t in labels] == [
        "Alpha  2/2", "Charlie  2/2", "Bravo  1/2", "Delta  0/2"]  # fmt: skip
    assert [t.get_fontweight() for t in labels] == ["bold", "bold", "normal", "normal"]
    assert [t.get_text() for t in heat.get_xticklabels()] == ["mA", "mB"]
    assert [t.get_text() for t in notes.texts] == [
        "→ Bravo 55% · Charlie 20%",  # Charlie and Delta tie at 20%: by title
        "→ Alpha 50% · Delta 40%",
    ]
    assert "2 kept" in heat.get_title()
    short = plot_novelty(matrix, confusions, max_series=2)
    assert "2 most novel of 4 shown" in short.axes[0].get_title()
    out = tmp_path / "novelty.png"
    assert draw_novelty(matrix, confusions, out) == str(out)
    first = out.read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    draw_novelty(matrix.to_pylist(), confusions.to_pylist(), out)
    assert out.read_bytes() == first  # nothing depends on the clock
    with pytest.raises(ValueError, match="no novelty_matrix rows"):
        plot_novelty([], [])
