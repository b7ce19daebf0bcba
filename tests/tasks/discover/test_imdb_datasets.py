"""The IMDb TSV reader: hand-written fixtures, malformed files, sandbox round trips."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from tv100.sandbox.imdb import render_title_page
from tv100.sandbox.imdb_datasets import build_datasets, write_datasets
from tv100.sandbox.world import build_world
from tv100.storage.schemas import SERIES
from tv100.tasks.discover.imdb_datasets import read_datasets
from tv100.tasks.discover.imdb_pages import parse_title_page

FIXTURES = Path(__file__).parents[2] / "fixtures" / "imdb"
WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world():
    return build_world(seed=0)


def _fixture_paths(tmp_path: Path, gz: bool) -> tuple[Path, Path, Path]:
    out = []
    for name in ("title.basics.tsv", "title.ratings.tsv", "title.akas.tsv"):
        src = FIXTURES / name
        if gz:
            dst = tmp_path / (name + ".gz")
            dst.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
        else:
            dst = tmp_path / name
            shutil.copy(src, dst)
        out.append(dst)
    return out[0], out[1], out[2]


@pytest.mark.parametrize("gz", [True, False])
def test_read_datasets_fixture(tmp_path, gz):
    basics, ratings, akas = _fixture_paths(tmp_path, gz)
    table = read_datasets(basics, ratings, akas, since=2021, discovered_at=WHEN)
    assert table.schema == SERIES
    rows = table.to_pylist()
    # Excluded: 2005 and 2021 starts, the episode, the movie, the adult series, no year.
    assert [r["series_id"] for r in rows] == [
        "tt27740241", "tt2788316", "tt30000001", "tt30000004", "tt3581920",
    ]  # fmt: skip
    by_id = {r["series_id"]: r for r in rows}
    quoted = by_id["tt30000001"]
    assert quoted["title"] == 'The "Perfect" Match'
    assert quoted["original_title"] == '"Wanbyeokhan" maechi'
    assert quoted["countries"] == ["KR"] and quoted["languages"] == ["ko"]
    assert by_id["tt2788316"]["end_year"] is None  # \N
    assert by_id["tt2788316"]["title"] == "Shōgun"
    assert by_id["tt2788316"]["rating"] == pytest.approx(8.6)
    assert by_id["tt30000004"]["rating"] is None and by_id["tt30000004"]["num_votes"] is None
    # akas rules: an original-title row with a region wins (rank 1) ...
    assert by_id["tt27740241"]["countries"] == ["KR"]
    # ... else rows carrying the original title (rank 2), in akas order ...
    assert by_id["tt2788316"]["countries"] == ["US", "JP"]
    assert by_id["tt2788316"]["languages"] == ["en", "ja"]
    assert by_id["tt3581920"]["countries"] == ["US", "GB"]
    # ... else every ISO region (XWW is not one); cmn and yue are Chinese.
    assert by_id["tt30000004"]["countries"] == ["CN", "HK"]
    assert by_id["tt30000004"]["languages"] == ["zh", "en"]
    assert by_id["tt27740241"]["genres"] == ["Drama", "Fantasy", "Romance"]
    assert set(table.column("source").to_pylist()) == {"imdb-datasets"}
    assert set(table.column("discovered_at").to_pylist()) == {WHEN}


def test_read_datasets_detects_gzip_by_content(tmp_path):
    basics, ratings, akas = _fixture_paths(tmp_path, gz=True)
    renamed = basics.rename(tmp_path / "basics.download")
    table = read_datasets(renamed, ratings, akas, discovered_at=WHEN)
    assert table.num_rows == 5


def test_read_datasets_filters(tmp_path):
    basics, ratings, akas = _fixture_paths(tmp_path, gz=True)
    ids = read_datasets(basics, ratings, akas, since=2020, discovered_at=WHEN).column("series_id")
    assert "tt10919420" in ids.to_pylist()  # started 2021 > 2020
    voted = read_datasets(basics, ratings, akas, min_votes=1000, discovered_at=WHEN)
    assert voted.column("series_id").to_pylist() == ["tt2788316", "tt3581920"]
    none = read_datasets(basics, ratings, akas, since=2024, discovered_at=WHEN)
    assert none.num_rows == 0 and none.schema == SERIES


def _write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return path


def test_short_row_names_file_and_line(tmp_path):
    basics, ratings, akas = _fixture_paths(tmp_path, gz=True)
    lines = (FIXTURES / "title.basics.tsv").read_text().splitlines()
    lines[4] = "\t".join(lines[4].split("\t")[:5])  # line 5 loses four fields
    bad = _write_gz(tmp_path / "bad.basics.tsv.gz", "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.basics\.tsv\.gz: line 5\b"):
        read_datasets(bad, ratings, akas, discovered_at=WHEN)


def test_long_row_in_akas_names_file_and_line(tmp_path):
    basics, ratings, akas = _fixture_paths(tmp_path, gz=False)
    lines = akas.read_text().splitlines()
    lines[7] += "\textra"
    akas.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"title\.akas\.tsv: line 8\b"):
        read_datasets(basics, ratings, akas, discovered_at=WHEN)


def test_bad_value_names_file_and_line(tmp_path):
    basics, ratings, akas = _fixture_paths(tmp_path, gz=True)
    text = (FIXTURES / "title.ratings.tsv").read_text().replace("8.6\t238010", "8.6\tmany")
    bad = _write_gz(tmp_path / "r.tsv.gz", text)
    with pytest.raises(ValueError, match=r"r\.tsv\.gz: line 6\b"):
        read_datasets(basics, bad, akas, discovered_at=WHEN)


def test_wrong_header_and_garbage_file(tmp_path):
    basics, ratings, akas = _fixture_paths(tmp_path, gz=True)
    swapped = _write_gz(tmp_path / "swapped.tsv.gz", "numVotes\taverageRating\ttconst\n")
    with pytest.raises(ValueError, match=r"swapped\.tsv\.gz: line 1: header"):
        read_datasets(basics, swapped, akas)
    junk = tmp_path / "junk.tsv.gz"
    junk.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match=r"junk\.tsv\.gz"):
        read_datasets(basics, ratings, junk)
    with pytest.raises(ValueError, match="no such file"):
        read_datasets(tmp_path / "missing.tsv.gz", ratings, akas)


def test_sandbox_datasets_round_trip(world, tmp_path):
    paths = write_datasets(world, tmp_path)
    table = read_datasets(
        paths["title.basics.tsv.gz"],
        paths["title.ratings.tsv.gz"],
        paths["title.akas.tsv.gz"],
        discovered_at=WHEN,
    )
    assert isinstance(table, pa.Table) and table.schema == SERIES
    for row in table.to_pylist():
        t = world.by_id[row["series_id"]]
        assert row["title"] == t.title and row["original_title"] == t.original_title
        assert row["kind"] == t.kind
        assert (row["start_year"], row["end_year"]) == (t.start_year, t.end_year)
        assert row["genres"] == list(t.genres)
        assert row["num_votes"] == t.num_votes
        assert (row["rating"] is None) == (t.rating is None)
        if t.rating is not None:
            assert row["rating"] == pytest.approx(t.rating, abs=1e-5)
    # Raw TSV: every title is there, negatives included, quotes unescaped.
    basics = gzip.decompress(build_datasets(world)["title.basics.tsv.gz"]).decode()
    assert len(basics.splitlines()) == len(world.titles) + 1
    assert any('"' in line for line in basics.splitlines())


def test_web_and_datasets_agree_on_countries_and_languages(world, tmp_path):
    paths = write_datasets(world, tmp_path)
    table = read_datasets(
        paths["title.basics.tsv.gz"],
        paths["title.ratings.tsv.gz"],
        paths["title.akas.tsv.gz"],
        discovered_at=WHEN,
    )
    rows = {r["series_id"]: r for r in table.to_pylist()}
    assert set(rows) == {t.series_id for t in world.titles if t.expected}
    for t in world.candidates():
        web = parse_title_page(render_title_page(t, locale="de"))
        assert web is not None
        row = rows[t.series_id]
        assert row["countries"] == list(web.countries) == list(t.countries), t.series_id
        assert row["languages"] == list(web.languages) == list(t.languages), t.series_id
        assert row["num_votes"] == web.num_votes == t.num_votes
        assert row["end_year"] == web.end_year == t.end_year
    # Co-productions and a series without languages exist, so the lists are really compared.
    assert any(len(t.countries) > 1 for t in world.candidates())
    assert any(not t.languages for t in world.candidates())
