"""The dataset card as a datasheet (Gebru et al.) under a Hugging Face YAML header: each
section's numbers against the synthetic root's tables, and the header parsed back."""

from __future__ import annotations

import csv
import re
from typing import Any

import pyarrow as pa
import pytest
import yaml

from tests.support.synthetic_root import (
    DATASHEET_TABLES,
    SERIES_ROWS,
    write_synthetic_root,
)
from tv100.storage.catalog import connect
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SERIES
from tv100.storage.tables import read_table, write_table
from tv100.tasks.report.config import CARD, METRICS_CSV, ReportConfig
from tv100.tasks.report.datasheet import (
    DATASHEET_QUERIES,
    read_datasheet,
    size_category,
    to_yaml,
    tv100_version,
)
from tv100.tasks.report.named_queries import load_query
from tv100.tasks.report.report import write_report

#: num_votes per series, written over the synthetic root's (all 1000) for the popularity skew.
VOTES = {"tt01": 100, "tt02": 200, "tt03": 300, "tt04": 400, "tt05": 5000, "tt06": 9000}

# ---- the datasheet root, by hand (tests/support/synthetic_root.py) --------------------------
#
# images: the 259 rows of the synthetic root, and tt06's 4 opt-out rows: 263 (bing 133, google
# 130; downloaded ok: bing 128, google 127).
# relevance: the cleaned images (tt01 135, tt02 58, tt03 28, tt04 10, tt05 5 = 236; even ranks
# on bing: 118 each); flagged: tt01 k15 (google), k16 (bing), k17 (google), tt03 k2 (bing),
# tt05 k0 (bing); rejected by a human: tt01-0020 (bing), tt01-0021 (google).
# after cleaning: tt01 130, tt02 58, tt03 27, tt04 10 = 225.
FUNNEL = [
    ("found", 0, 263),
    ("download", 8, 255),
    ("quality", 7, 248),
    ("exact_duplicates", 10, 238),
    ("near_duplicates", 2, 236),
    ("relevance", 7, 229),
    ("too_few_images", 0, 229),
    ("classes", 4, 225),
]


def _card(root: DataRoot) -> str:
    with open(root.path("report", CARD), encoding="utf-8") as f:
        return f.read()


def _header(card: str) -> dict:
    m = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert m, card[:200]
    header = yaml.safe_load(m.group(1))
    assert isinstance(header, dict)
    return header


def _tables_stand_apart(card: str) -> bool:
    """Whether every Markdown table has a blank line before it (else it renders as text)."""
    lines = card.splitlines()
    return all(
        lines[i - 1] == "" or lines[i - 1].startswith("|")
        for i, line in enumerate(lines) if line.startswith("|") and i
    )


def _section(card: str, heading: str) -> str:
    """The text of a section: from its heading to the next heading of its level or above."""
    level = heading.split(" ")[0]
    start = card.index(f"\n{heading}\n")
    ends = [
        m.start() for m in re.finditer(r"\n(#+) ", card[start + 1:])
        if len(m.group(1)) <= len(level)
    ]
    return card[start : start + 1 + ends[0]] if ends else card[start:]


@pytest.fixture(scope="module")
def datasheet_root(tmp_path_factory):
    root = write_synthetic_root(
        str(tmp_path_factory.mktemp("datasheet") / "data"), DATASHEET_TABLES, opt_outs=True
    )
    series = read_table(root, "series").to_pylist()
    assert set(VOTES) == {r[0] for r in SERIES_ROWS}
    for r in series:
        r["num_votes"] = VOTES[r["series_id"]]
    write_table(root, "series", pa.Table.from_pylist(series, schema=SERIES), schema=SERIES)
    write_report(root)
    return root


@pytest.fixture(scope="module")
def card(datasheet_root):
    return _card(datasheet_root)


def test_the_yaml_header_parses_with_the_hugging_face_fields(card):
    assert _tables_stand_apart(card) and "\n\n\n" not in card
    h = _header(card)
    assert h["task_categories"] == ["image-classification"]
    assert h["task_ids"] == ["multi-class-image-classification"]
    assert h["size_categories"] == ["n<1K"]  # 225 images
    assert h["license"] == "other" and h["license_name"] and "research" in h["license_details"]
    assert h["annotations_creators"] == ["found", "machine-generated", "expert-generated"]
    assert h["source_datasets"] == ["original"] and h["language"] == ["en"]
    assert "TV100" in h["pretty_name"] and "unseen-classes" in h["tags"]
    info = h["dataset_info"]
    assert info["features"][0] == {"name": "image", "dtype": "image"}
    names = info["features"][1]["dtype"]["class_label"]["names"]
    assert names == {"0": "TT01", "1": "TT02", "2": "TT03", "3": "TT04"}
    assert info["splits"] == [
        {"name": "train", "num_examples": 116},
        {"name": "val", "num_examples": 56},
        {"name": "test", "num_examples": 58},
    ]


def test_motivation_names_the_paper_and_the_version(card):
    text = _section(card, "## Motivation")
    assert "arXiv 2404.12407" in text and "has not seen" in text
    assert f"tv100 {tv100_version()}" in text


def test_composition_lists_each_class_and_country(card):
    text = _section(card, "## Composition")
    assert "4 classes and 225 images after cleaning" in text
    for line in (
        "| 0 | tt01 | Alpha | 2022 | CN | 68 | 33 | 34 | 130 | many |",
        "| 1 | tt02 | Bravo | 2022 | CN | 28 | 14 | 15 | 58 | medium |",
        "| 2 | tt03 | Charlie | 2023 | JP | 14 | 7 | 7 | 27 | medium |",
        "| 3 | tt04 | Delta | 2023 | KR | 6 | 2 | 2 | 10 | few |",
        "| China (CN) | 2 | 50.00% | 188 | 83.56% | 2 |",
        "| Japan (JP) | 1 | 25.00% | 27 | 12.00% | 1 |",
        "| Korea (KR) | 1 | 25.00% | 10 | 4.44% | 1 |",
        "| imbalance ratio (max/min) | 30 | 13 |",
    ):
        assert line in text, line
    assert "Thailand" not in text  # a candidate country without a class
    assert "Images moved to train as near duplicates across splits (they stay in the " \
        "dataset): 1." in text


def test_collection_process_states_engines_dates_filters_rank_and_review(card):
    text = _section(card, "## Collection process")
    for line in (
        "| bing | 6 | 7 | 6 | 0 | 1 | 0 | 2024-04-30T10:00:00+00:00 | "
        "2024-04-30T10:00:00+00:00 | 133 | 133 | 128 |",
        "| google | 6 | 8 | 6 | 0 | 0 | 2 | 2024-04-30T11:00:00+00:00 | "
        "2024-04-30T11:00:00+00:00 | 130 | 130 | 127 |",
        "| discover requests | 3 | 2024-04-29T08:00:00+00:00 | 2024-04-29T08:02:00+00:00 |",
        "| search requests | 15 | 2024-04-30T10:00:00+00:00 | 2024-04-30T11:00:00+00:00 |",
        "| human reviews | 4 | 2024-05-01T13:00:00+00:00 | 2024-05-01T16:00:00+00:00 |",
        "| snapshots | 2 | 2024-05-01T12:00:00+00:00 | 2024-05-02T12:00:00+00:00 |",
        "| true | hardest | 4 | 15.00% |",
        "| false | too_easy | 1 | 90.00% |",
    ):
        assert line in text, line
    assert "No rows yet" not in text and "No `search_pages`" not in text
    funnel = [line for line in text.splitlines() if line.startswith("| ")]
    for step, removed, left in FUNNEL:
        cell = "–" if step == "found" else str(removed)
        assert any(line.endswith(f" | {cell} | {left} |") for line in funnel), step
    assert (
        "among all 6 candidates by RN50@openai, ViT-B-16@openai (prompts: a photo of the TV "
        "series {}); a series' accuracy is the max over the models, and the K = 4 series "
        "recognised worst of the 5 ranked were kept (the easiest kept: 50.00% top-1; the "
        "hardest dropped as too easy: 90.00%)." in text
    )
    assert (
        "4 decisions by 2 reviewer(s) on 3 images (the latest decision on each: 1 accepted, "
        "2 rejected), 2024-05-01T13:00:00+00:00 to 2024-05-01T16:00:00+00:00" in text
    )


def test_preprocessing_states_removals_and_relevance(card):
    text = _section(card, "## Preprocessing, cleaning and labelling")
    assert "longer side at most 256 px stored; source formats: jpeg (255)" in text
    for line in (
        "| exact | within_series | drop | 10 |",
        "| clip | cross_split | move_to_train | 1 |",
        "| download | opted_out | 3 | 1 |",
        "| download | robots_disallowed | 1 | 1 |",
        "| relevance | other_series | 3 | 1 |",
        "| relevance | review | 2 | 1 |",
        "| classes | too_easy | 4 | 1 |",
    ):
        assert line in text, line
    assert "### Relevance and review" in text


def test_distribution_counts_the_opt_outs_honoured(card):
    text = _section(card, "## Distribution and licences")
    assert "copyright of their owners" in text
    assert (
        "Opt-outs honoured: requests never made because robots.txt disallows them, 3; images "
        "not kept because they or their source page opt out of AI use" in text
    )
    assert "…), 3.\n\n| step | refused by | requests or images |\n" in text
    for line in (
        "| discover requests | robots.txt | 1 |",
        "| search requests | robots.txt | 1 |",
        "| image downloads | robots.txt | 1 |",
        "| image downloads | image: noai | 2 |",
        "| image downloads | source page: noimageai | 1 |",
    ):
        assert line in text, line
    assert "No `discover_fetches`" not in text


def test_biases_state_the_country_popularity_and_noise_skews(card):
    text = _section(card, "## Known biases and limitations")
    assert (
        "China (CN) has 50.00% of the classes (2 of 4) and 83.56% of their images; among the "
        "6 candidate series, China (CN) has the most, 33.33%." in text
    )
    # votes: classes 100, 200, 300, 400; every candidate adds 5000 and 9000
    assert "median 250 for the dataset's classes against 350 for every candidate" in text
    assert "| all candidates | 6 | 6 | 100 | 225 | 350 | 3850 | 9000 | 2500 |" in text
    assert "| dataset classes | 4 | 4 | 100 | 175 | 250 | 325 | 400 | 250 |" in text
    assert "of the 236 cleaned images judged for relevance, 7 (2.97%) are irrelevant" in text
    assert "| bing | 118 | 118 | 3 | 4 | 3.39% |" in text
    assert "| google | 118 | 118 | 2 | 3 | 2.54% |" in text
    assert "| all engines | 236 | 236 | 5 | 7 | 2.97% |" in text


def test_maintenance_lists_the_snapshots_and_how_to_refresh(card, datasheet_root):
    text = _section(card, "## Maintenance")
    assert "the latest, `20240502T120000Z-bbbbbbbb`, is 2024-05-02T12:00:00+00:00" in text
    assert "| 20240501T120000Z-aaaaaaaa | 2024-05-01T12:00:00+00:00 | 6 | 255 | 236 | 4 |" in text
    assert f"tv100 build --data {datasheet_root.url} --refresh" in text
    assert f"tv100 diff --data {datasheet_root.url}" in text


def test_metrics_csv_holds_the_datasheet_numbers(datasheet_root):
    with open(datasheet_root.path("report", METRICS_CSV), newline="") as f:
        m = {(r["section"], r["key"], r["metric"]): r["value"] for r in csv.DictReader(f)}
    expected = {
        ("class", "tt01", "train"): "68",
        ("class", "tt03", "images"): "27",
        ("countries", "CN", "images"): "188",
        ("countries", "TH", "candidates"): "1",
        ("engines", "google", "failed"): "2",
        ("funnel", "relevance", "removed"): "7",
        ("funnel", "classes", "left"): "225",
        ("opt_outs", "image downloads", "image: noai"): "2",
        ("rank", "", "kept"): "4",
        ("reviews", "", "decisions"): "4",
        ("reviews", "", "rejected"): "2",
        ("popularity", "all candidates", "median_votes"): "350",
        ("noise", "all", "irrelevant_share"): "0.029661",
        ("noise", "bing", "judged"): "118",
        ("snapshots", "", "count"): "2",
    }
    assert {k: m.get(k) for k in expected} == expected


def test_each_datasheet_query_is_a_named_query_of_the_tables_it_reads(datasheet_root):
    con = connect(datasheet_root)
    try:
        ds = read_datasheet(con, ReportConfig())
    finally:
        con.close()
    assert ds.present == {
        "discover_fetches", "search_pages", "search_hits", "relevance", "reviews",
        "rank_models", "snapshots",
    }
    assert ds.classes.num_rows == 4 and ds.snapshots.num_rows == 2
    for name in DATASHEET_QUERIES.values():
        q = load_query(name)
        assert q.description and q.tables, name


def test_a_root_without_the_datasheet_tables_says_so_in_one_line(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"))
    write_report(root)
    card = _card(root)
    assert _tables_stand_apart(card)
    assert _header(card)["annotations_creators"] == ["found", "machine-generated"]
    for line in (
        "No `search_pages` or `search_hits` table: no search recorded",
        "No review was made (no `reviews` table).",
        "No snapshot yet (no `snapshots` table)",
        "No `relevance` table: relevance was not scored",
        "(X-Robots-Tag or a robots meta tag: `noai`, `noimageai`, …), 0. No "
        "`discover_fetches` table: the discover requests are not known.\n\n| step |",
        "| engine | image rows | downloaded |",
        "| bing | 131 | 128 |",
        "No rows yet for: discover requests, search requests, search hits, human reviews, "
        "snapshots.",
    ):
        assert line in card, line


def test_an_empty_root_renders_every_section(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    write_report(root)
    card = _card(root)
    h = _header(card)
    assert h["size_categories"] == ["n<1K"] and "dataset_info" not in h
    for heading in ("## Motivation", "## Composition", "## Collection process",
                    "## Preprocessing, cleaning and labelling", "## Uses",
                    "## Distribution and licences", "## Known biases and limitations",
                    "## Maintenance"):
        assert f"\n{heading}\n" in card, heading
    assert "No image found yet." in card and "Country skew: no classes yet." in card
    assert "\n\n\n" not in card and _tables_stand_apart(card)


@pytest.mark.parametrize(
    ("n", "label"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (9999, "1K<n<10K"),
     (10_000, "10K<n<100K"), (999_999, "100K<n<1M"), (10**9, "1B<n<10B"),
     (10**12, "n>1T")],
)
def test_size_category_follows_the_hugging_face_buckets(n, label):
    assert size_category(n) == label


def test_to_yaml_reads_back_awkward_strings():
    value: dict[str, Any] = {
        "names": {str(i): s for i, s in enumerate([
            'He said "no"', "a: b", "yes", "0", "- dash", "# hash", "C:\\path", "tab\there",
            "line\nbreak", "Ñoño 東京", "\u2028sep", "{braces}", "emoji 😀", "", " lead",
        ])},
        "list": [1, True, None, [], {}, {"a": ["x", {"b": "c"}]}],
        "floats": [0.5, 1e-05, 1e20, -2.5e-300, float("inf"), float("-inf")],
        "empty": [],
    }
    text = "\n".join(to_yaml(value))
    assert yaml.safe_load(text) == value
