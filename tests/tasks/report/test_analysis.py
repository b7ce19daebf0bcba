"""Class-imbalance statistics and the named queries, on hand-computed synthetic tables."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from tests.support.synthetic_root import (
    AFTER,
    ALL_TABLES,
    BEFORE,
    DUPLICATES_SCHEMA,
    write_synthetic_root,
)
from tv100.storage.catalog import connect, query
from tv100.storage.root import DataRoot
from tv100.storage.schemas import (
    IMAGES,
)
from tv100.storage.tables import write_table
from tv100.tasks.clean.cleaned import CLEANED_COLUMNS, CLEANING_VIEW, cleaned_images
from tv100.tasks.report import analysis
from tv100.tasks.report.imbalance import cumulative_share, gini
from tv100.tasks.report.named_queries import HELPER_VIEWS, example_queries, load_query
from tv100.tasks.train.metrics import Tiers


@pytest.fixture(scope="module")
def full_root(tmp_path_factory) -> DataRoot:
    return write_synthetic_root(str(tmp_path_factory.mktemp("full") / "data"))


@pytest.fixture
def con(full_root):
    c = connect(full_root)
    yield c
    c.close()


# ---- the queries on the synthetic root -------------------------------------------------


def test_prepare_reports_present_tables_and_is_idempotent(con):
    present = analysis.prepare(con)
    assert present == frozenset(ALL_TABLES)
    assert analysis.prepare(con) == present


def test_images_per_series_before_and_after_cleaning(con):
    rows = {r["series_id"]: r for r in analysis.images_per_series(con).to_pylist()}
    assert {s: r["n_downloaded"] for s, r in rows.items()} == {
        "tt01": 150,
        "tt02": 60,
        "tt03": 30,
        "tt04": 10,
        "tt05": 5,
        "tt06": 0,
    }
    assert rows["tt01"]["n_found"] == 153
    assert {s: r["n_clean"] for s, r in rows.items() if r["n_clean"]} == AFTER
    assert {s for s, r in rows.items() if r["in_dataset"]} == set(AFTER)


def test_imbalance_summary_before_and_after(con):
    summary = analysis.imbalance_summary(con)
    before, after = summary.before, summary.after
    assert before.classes == 5 and before.images == sum(BEFORE)
    assert before.imbalance_ratio == pytest.approx(150 / 5)
    assert before.gini == pytest.approx(gini(BEFORE))
    assert after.classes == 4 and after.images == 231
    assert after.imbalance_ratio == pytest.approx(13.5)
    assert after.gini == pytest.approx(405 / 924)
    assert (after.many, after.medium, after.few) == (1, 2, 1)
    tight = analysis.imbalance_summary(con, Tiers(many=50, few=30)).after
    assert (tight.many, tight.medium, tight.few) == (2, 0, 2)


def test_class_distribution_is_sorted_with_cumulative_share_and_tiers(con):
    d = analysis.class_distribution(con, "after").to_pylist()
    assert [r["series_id"] for r in d] == ["tt01", "tt02", "tt03", "tt04"]
    assert [r["rank"] for r in d] == [1, 2, 3, 4]
    assert [r["cumulative_share"] for r in d] == pytest.approx(
        cumulative_share(AFTER.values())
    )
    assert [r["tier"] for r in d] == ["many", "medium", "medium", "few"]
    custom = analysis.class_distribution(con, "after", Tiers(many=27, few=27))
    assert custom.column("tier").to_pylist() == ["many", "many", "many", "few"]
    with pytest.raises(ValueError, match="stage"):
        analysis.class_distribution(con, "during")


def test_removals_by_reason_count_each_image_once(con):
    rows = {(r["stage"], r["reason"]): r["n_images"] for r in analysis.removals(con).to_pylist()}
    assert rows == {
        ("download", "http_error"): 3,
        ("download", "timeout"): 1,
        ("quality", "blank"): 5,
        ("quality", "low_entropy,too_small"): 2,
        ("duplicates", "exact duplicate, within_series"): 10,
        ("duplicates", "phash duplicate, cross_series"): 2,
        ("classes", "too_easy"): 5,
    }
    by_stage = analysis.removals_by_stage(con)
    assert by_stage == {"download": 4, "quality": 7, "duplicates": 12, "relevance": 0,
                        "classes": 5}
    found = sum(r["n_found"] for r in analysis.images_per_series(con).to_pylist())
    assert found - sum(by_stage.values()) == sum(AFTER.values())


def test_countries_and_start_years_of_the_dataset_classes(con):
    assert analysis.countries(con).to_pylist() == [
        {"country": "CN", "n_series": 2, "share": 0.5},
        {"country": "JP", "n_series": 1, "share": 0.25},
        {"country": "KR", "n_series": 1, "share": 0.25},
    ]
    assert analysis.start_years(con).to_pylist() == [
        {"start_year": 2022, "n_series": 2},
        {"start_year": 2023, "n_series": 2},
    ]


def test_model_accuracy_picks_the_run_best_on_val_and_falls_back_to_zeroshot(con):
    rows = [
        (r["model_key"], r["recipe"], r["value"], r["run_id"], r["source"])
        for r in analysis.model_accuracy(con).to_pylist()
    ]
    # ViT-B-16 zero-shot: image-weighted mean top1 over kept classes (AFTER weights)
    vit_zs = (135 * 0.0 + 58 * 0.1 + 28 * 0.0 + 10 * 0.5) / 231
    assert rows[0][:4] == ("RN50", "zeroshot", 0.0208, "rn-zs")
    # rn-ft-a is better on val (0.40 > 0.35) although rn-ft-b is better on test
    assert rows[1][:4] == ("RN50", "finetune", 0.4308, "rn-ft-a")
    assert rows[2][:2] == ("ViT-B-16", "zeroshot") and rows[2][4] == "zeroshot"
    assert rows[2][2] == pytest.approx(vit_zs)
    assert [r[1] for r in rows[3:]] == ["linear", "finetune"]
    assert len(rows) == 5


def test_dataset_facts(con):
    facts = analysis.dataset_facts(con)
    assert facts.n_series == 6 and facts.n_classes == 4
    assert facts.n_images_found == 259 and facts.n_images_downloaded == 255
    assert facts.n_images_clean == 231 and facts.n_image_hosts == 3
    assert (facts.min_start_year, facts.max_start_year) == (2022, 2024)
    src = {(r["what"], r["source"]): r["n"] for r in analysis.sources(con).to_pylist()}
    assert src[("series", "imdb-datasets")] == 6
    assert src[("images", "bing")] + src[("images", "google")] == 259


def test_run_query_errors_name_the_problem(con):
    with pytest.raises(KeyError, match="unknown query"):
        analysis.run_query(con, "nope")
    with pytest.raises(TypeError, match="stage"):
        analysis.run_query(con, "class_distribution", many=100, few=20)


# ---- a root that only reached the collect stage -----------------------------------------


@pytest.fixture(scope="module")
def early_root(tmp_path_factory) -> DataRoot:
    return write_synthetic_root(
        str(tmp_path_factory.mktemp("early") / "data"), tables=("series", "images")
    )


def test_missing_tables_become_empty_stand_ins(early_root):
    con = connect(early_root)
    try:
        assert analysis.prepare(con) == {"series", "images"}
        rows = {r["series_id"]: r for r in analysis.images_per_series(con).to_pylist()}
        # no cleaning tables: after cleaning = downloaded; every series with images counts
        assert {s: r["n_clean"] for s, r in rows.items()} == dict(
            zip(["tt01", "tt02", "tt03", "tt04", "tt05", "tt06"], BEFORE + [0], strict=True)
        )
        assert analysis.removals_by_stage(con) == {
            "download": 4,
            "quality": 0,
            "duplicates": 0,
            "relevance": 0,
            "classes": 0,
        }
        assert analysis.model_accuracy(con).num_rows == 0
        assert analysis.countries(con).column("n_series").to_pylist() == [2, 1, 1, 1]
    finally:
        con.close()


def test_only_series_counts_every_series_in_the_countries(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("series",))
    con = connect(root)
    try:
        assert sum(analysis.countries(con).column("n_series").to_pylist()) == 6
        assert analysis.imbalance_summary(con).after.classes == 0
    finally:
        con.close()


def test_duplicates_without_action_column_are_all_dropped(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("series", "images"))
    schema = pa.schema([f for f in DUPLICATES_SCHEMA if f.name != "action"])
    rows = [
        {
            "image_id": "tt02-0000",
            "kept_id": "tt02-0001",
            "kind": "clip",
            "distance": 0.02,
            "scope": "cross_split",
        }
    ]
    write_table(root, "duplicates", pa.Table.from_pylist(rows, schema=schema), schema=schema)
    con = connect(root)
    try:
        assert analysis.removals_by_stage(con)["duplicates"] == 1
    finally:
        con.close()


# ---- the documented examples run as `tv100 sql` runs them -------------------------------


def test_example_queries_are_documented_and_run_on_real_tables(full_root):
    examples = example_queries()
    assert len(examples) >= 8
    # the synthetic root has no relevance or reviews: human_overrules runs in
    # test_relevance_report.py
    elsewhere = {q.name for q in examples if not set(q.tables) <= set(ALL_TABLES)}
    assert elsewhere == {"human_overrules"}
    for q in (q for q in examples if q.name not in elsewhere):
        assert q.description and q.tables and "$" not in q.sql, q.name
        assert not {*HELPER_VIEWS, CLEANING_VIEW} & set(q.sql.split()), q.name
        table = query(full_root, q.sql)  # what `tv100 sql` calls
        assert table.num_rows > 0, q.name


def test_example_clean_counts_agree_with_the_analysis(full_root, tmp_path):
    got = {
        r["series_id"]: r["n_clean"]
        for r in query(full_root, load_query("clean_images_per_series").sql).to_pylist()
    }
    # without the class filter, tt05 keeps its 5 images
    assert got == {**AFTER, "tt05": 5}
    tiers = query(full_root, load_query("long_tail_tiers").sql).to_pylist()
    assert [(r["tier"], r["n_classes"], r["n_images"]) for r in tiers] == [
        ("many", 1, 135),
        ("medium", 2, 86),
        ("few", 1, 10),
    ]
    pivot = query(full_root, load_query("zero_shot_vs_fine_tuned").sql).to_pylist()
    assert pivot[0]["model_key"] == "RN50" and pivot[0]["finetune"] == 0.47


def test_example_query_on_a_missing_table_fails_cleanly(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("series",))
    with pytest.raises(duckdb.CatalogException, match="quality"):
        query(root, load_query("junk_by_reason").sql)


# ---- one definition of "cleaned": the clean stage's and the report's ------------------------


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param(("series", "images"), id="collected"),
        pytest.param(("series", "images", "quality"), id="junk-only"),
        pytest.param(ALL_TABLES, id="every-table"),
    ],
)
def test_cleaned_images_are_the_report_images_before_class_selection(tmp_path, tables):
    root = write_synthetic_root(str(tmp_path / "data"), tables=tables)
    cleaned = cleaned_images(root)
    assert cleaned.schema == pa.schema([IMAGES.field(c) for c in CLEANED_COLUMNS])
    ids = cleaned.column("image_id").to_pylist()
    assert ids == sorted(ids)
    con = connect(root)
    try:
        analysis.prepare(con)
        verdict = con.sql(f"select image_id from {CLEANING_VIEW} where removed_by is null")
        assert sorted(r[0] for r in verdict.fetchall()) == ids
        fate = con.sql(
            "select image_id from image_fate where stage is null or stage = 'classes'"
        ).fetchall()
        assert sorted(r[0] for r in fate) == ids
    finally:
        con.close()
    # every series' clean images, class filter aside (tt05 keeps its 5 images)
    expected = {**AFTER, "tt05": 5} if "duplicates" in tables else None
    if expected:
        counts: dict[str, int] = {}
        for sid in cleaned.column("series_id").to_pylist():
            counts[sid] = counts.get(sid, 0) + 1
        assert counts == expected


def test_cleaned_images_needs_an_images_table(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("series",))
    with pytest.raises(FileNotFoundError, match="images"):
        cleaned_images(root)


@pytest.mark.parametrize("name", HELPER_VIEWS)
def test_a_helper_view_is_read_from_what_prepare_computed(con, name):
    # run_query reads the temp table `prepare` made (at a million images, computing
    # image_fate again costs a second); it holds exactly the query's rows
    analysis.prepare(con)
    got = analysis.run_query(con, name)
    direct = con.sql(load_query(name).sql).to_arrow_table()
    assert got.num_rows > 0
    assert sorted(map(str, got.to_pylist())) == sorted(map(str, direct.to_pylist()))
