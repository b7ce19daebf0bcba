"""`bench/analysis.py` at a tiny scale: its generated root is consistent, and its last line is
the JSON summary with every key (no timing is asserted)."""

from __future__ import annotations

import json

from tests.bench import load_bench
from tv100.storage.catalog import connect
from tv100.storage.root import DataRoot
from tv100.tasks.report import analysis
from tv100.tasks.report.named_queries import query_names

KEYS = {"bench", "images", "series", "max_query_s", "slowest", "over_1s", "report_s",
        "prepare_s", "queries"}




def test_generated_root_is_consistent(tmp_path):
    bench = load_bench("analysis")
    gen = bench.generate_root(str(tmp_path / "root"), 3000, 30, seed=1, kept=5)
    assert gen.rows["images"] == gen.rows["search_hits"] == 3000
    assert gen.rows["series"] == 30
    con = connect(DataRoot(str(tmp_path / "root")))
    try:
        present = analysis.prepare(con)
        assert {"images", "quality", "duplicates", "classes", "relevance"} <= present
        # the dataset's images are exactly the split rows: cleaned, relevant, of kept classes
        n_clean = analysis.run_query(con, "clean_images").num_rows
        assert n_clean == gen.rows["splits"] > 0
        assert analysis.run_query(con, "dataset_series").num_rows == 5
        removed = sum(analysis.removals_by_stage(con).values())
        assert removed + n_clean == 3000
        found = analysis.images_per_series(con).column("n_found").to_pylist()
    finally:
        con.close()
    assert sum(found) == 3000 and max(found) > 3 * sorted(found)[len(found) // 2]  # long tail


def test_tiny_run_prints_the_summary_last(capsys):
    bench = load_bench("analysis")
    result = bench.main(["--images", "2000", "--series", "20", "--kept", "5", "--repeats", "1"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary == result
    assert KEYS <= set(summary)
    assert summary["bench"] == "analysis"
    assert (summary["images"], summary["series"]) == (2000, 20)
    labels = set(summary["queries"])
    assert {n for n in query_names() if n != "class_distribution"} <= labels
    assert {"class_distribution:before", "class_distribution:after"} <= labels
    assert summary["slowest"] in labels
    assert summary["max_query_s"] == max(summary["queries"].values())
    assert set(summary["over_1s"]) <= labels
    assert summary["report_s"] > 0
