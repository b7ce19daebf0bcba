"""IMDb parsers: hand-written fixtures of the real markup, sandbox round trips, TSV reader."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from tv100.sandbox.imdb import (
    build_datasets,
    format_votes,
    render_list_page,
    render_title_page,
    served_titles,
    write_datasets,
)
from tv100.sandbox.world import SERIES_KINDS, build_world
from tv100.storage.schemas import SERIES
from tv100.tasks.discover.imdb import (
    list_page_url,
    parse_list_page,
    parse_rating,
    parse_title_page,
    parse_votes,
    parse_years,
    read_datasets,
)

FIXTURES = Path(__file__).parent / "fixtures" / "imdb"
WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def world():
    return build_world(seed=0)


# ============================================================================ small parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023\u2013 ", (2023, None)),
        ("2023\u2013", (2023, None)),
        ("2021\u20132023", (2021, 2023)),
        ("2021-2023", (2021, 2023)),
        ("2021 \u2014 2023", (2021, 2023)),
        ("2025", (2025, 2025)),
        ("\u00a02024\u2013\u00a0", (2024, None)),
        ("16 eps", None),
        ("TV-14", None),
        ("12", None),
        ("", None),
        (None, None),
        ("2023 and more", None),
    ],
)
def test_parse_years(text, expected):
    assert parse_years(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8.7", 8.7), ("8,7", 8.7), ("10", 10.0), (" 7,0 ", 7.0), ("", None), ("abc", None),
     ("42.1", None)],
)  # fmt: skip
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u00a0(646.623)", 646_623),
        ("(646,623)", 646_623),
        ("(646K)", 646_000),
        ("(1.2M)", 1_200_000),
        ("(1,2 Mio.)", 1_200_000),
        ("(2 Mio.)", 2_000_000),
        ("(1.234)", 1234),
        ("(1.2K)", 1200),
        ("(987)", 987),
        ("(1\u00a0234\u00a0567)", 1_234_567),
        ("(3,5 Tsd.)", 3500),
        ("", None),
        ("()", None),
        ("(lots)", None),
        ("(12 Zillionen)", None),
    ],
)
def test_parse_votes(text, expected):
    assert parse_votes(text) == expected


def test_list_page_url():
    assert list_page_url("https://www.imdb.com/", 2021, 51) == (
        "https://www.imdb.com/search/title/?title_type=tv_series,tv_miniseries"
        "&release_date=2022-01-01,&start=51"
    )
    de = list_page_url("http://127.0.0.1:8000", 2021, 1, locale="de", count=10)
    assert de.startswith("http://127.0.0.1:8000/de/search/title/?")
    assert de.endswith("&start=1&count=10")


# ============================================================================ list fixtures


def test_english_list_fixture():
    items = parse_list_page(fixture("list_en.html"))
    # The template string in a <script>, the sidebar and the item without a title link are
    # not results.
    assert [i["series_id"] for i in items] == [
        "tt3581920", "tt9319668", "tt10919420", "tt2788316", "tt31234567", "tt27740241",
    ]  # fmt: skip
    by_id = {i["series_id"]: i for i in items}
    last = by_id["tt3581920"]
    assert last == {
        "series_id": "tt3581920",
        "title": "The Last of Us",
        "rank": 1,
        "start_year": 2023,
        "end_year": None,
        "rating": 8.6,
        "num_votes": 646_000,
        "type_label": "TV Series",
    }
    assert by_id["tt9319668"]["title"] == "1899"  # a title that is a number
    assert (by_id["tt9319668"]["start_year"], by_id["tt9319668"]["end_year"]) == (2022, 2022)
    assert (by_id["tt10919420"]["start_year"], by_id["tt10919420"]["end_year"]) == (2021, 2025)
    assert by_id["tt10919420"]["num_votes"] == 1_200_000
    assert by_id["tt2788316"]["title"] == "Shōgun"
    assert by_id["tt2788316"]["end_year"] is None  # "2024–" without the trailing space
    assert by_id["tt2788316"]["num_votes"] == 1200
    # Rank "12. " is stripped once; the title's own "24. " stays. No year, no rating.
    odd = by_id["tt31234567"]
    assert (odd["title"], odd["rank"]) == ("24. Stunde", 12)
    assert odd["start_year"] is None and odd["end_year"] is None
    assert odd["rating"] is None and odd["num_votes"] is None
    assert odd["type_label"] == "TV Mini Series"
    assert by_id["tt27740241"]["num_votes"] == 987


def test_german_list_fixture():
    items = parse_list_page(fixture("list_de.html"))
    assert [(i["series_id"], i["rating"], i["num_votes"]) for i in items] == [
        ("tt3581920", 8.6, 646_623),
        ("tt10919420", 8.0, 1_200_000),
        ("tt27740241", 8.2, 1234),
    ]
    assert [i["type_label"] for i in items] == ["Fernsehserie", "Fernsehserie", "Miniserie"]
    assert items[0]["end_year"] is None and items[1]["end_year"] == 2025
    assert items[2]["title"] == "Nae namjawa gyeolhonhaejwo"


def test_empty_list_page():
    assert parse_list_page(fixture("list_empty.html")) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        bytes(range(256)) * 20,
        b"\xff\xfe\x00<\x00l\x00i\x00>",
        b"<li class='ipc-metadata-list-summary-item'><a href='/title/tt12",
        "<li class='ipc-metadata-list-summary-item'>é</li>".encode("latin-1"),
        b"<html><body><ul><li class=ipc-metadata-list-summary-item>" * 500,
    ],
)
def test_list_parser_never_raises(data):
    assert parse_list_page(data) == []
    assert parse_title_page(data) is None


def test_list_parser_non_utf8_bytes_in_a_real_item():
    raw = fixture("list_en.html").replace("Shōgun".encode(), b"Sh\xf4gun")
    items = parse_list_page(raw)
    assert len(items) == 6
    by_id = {i["series_id"]: i for i in items}
    assert by_id["tt2788316"]["title"] == "Sh\ufffdgun"
    assert by_id["tt2788316"]["rating"] == 8.6


# ============================================================================ title fixtures


def test_title_page_next_data():
    page = parse_title_page(fixture("title_next_data.html"))
    assert page == {
        "series_id": "tt10919420",
        "title": "Squid Game",
        "original_title": "Ojing-eo geim",
        "kind": "tvSeries",
        "is_series": True,
        "start_year": 2021,
        "end_year": 2025,
        "is_adult": False,
        "genres": ["Action", "Drama", "Mystery"],
        "countries": ["KR"],
        "languages": ["ko", "en"],
        "rating": 8.0,
        "num_votes": 646_623,
        "image_url": "https://m.media-amazon.com/images/M/"
        "MV5BYTU3ZDVhNmMtMDVlNC00MDc0LTljNmUtNjFiYzE3ZjcxN2NmXkEyXkFqcGc@._V1_.jpg",
        "parent_id": None,
        "parsed_from": "next_data",
    }


def test_title_page_missing_optional_fields_and_countries_above_the_fold():
    page = parse_title_page(fixture("title_de_no_rating.html"))
    assert page is not None
    assert page["parsed_from"] == "next_data"
    assert page["title"] == "Das Flüstern des Mondes"
    assert page["original_title"] == "月の囁き"
    assert page["kind"] == "tvMiniSeries" and page["is_series"] is True
    assert (page["start_year"], page["end_year"]) == (2025, None)
    assert page["rating"] is None and page["num_votes"] is None
    assert page["image_url"] is None
    assert page["languages"] == []
    assert page["countries"] == ["JP"]  # mainColumnData has none: aboveTheFoldData is used


def test_broken_next_data_falls_back_to_json_ld():
    page = parse_title_page(fixture("title_broken_next_data.html"))
    assert page is not None
    assert page["parsed_from"] == "json_ld"
    assert page["series_id"] == "tt0413573"
    assert page["title"] == "Grey's Anatomy"  # &apos; unescaped
    assert page["kind"] == "tvSeries"
    assert page["start_year"] == 2005
    assert page["rating"] == 7.6 and page["num_votes"] == 346_789
    assert page["genres"] == ["Drama", "Romance"]
    assert page["countries"] == [] and page["languages"] == []


def test_json_ld_only_page_with_list_and_string_numbers():
    page = parse_title_page(fixture("title_ld_only.html"))
    assert page is not None
    assert page["series_id"] == "tt1361336"  # from <meta property="imdb:pageConst">
    assert page["kind"] == "movie" and page["is_series"] is False
    assert page["title"] == 'Tom & Jerry: "The Movie"'
    assert page["rating"] == 5.2 and page["num_votes"] == 41_023
    assert page["image_url"].endswith("._V1_.jpg")
    assert page["genres"] == ["Animation"]


def test_episode_page():
    page = parse_title_page(fixture("title_episode.html"))
    assert page is not None
    assert page["kind"] == "tvEpisode" and page["is_series"] is False
    assert page["parent_id"] == "tt10919420"


def test_title_page_broken_json_without_json_ld_is_none():
    raw = fixture("title_broken_next_data.html")
    start = raw.index(b'<script type="application/ld+json">')
    end = raw.index(b"</script>", start) + len(b"</script>")
    assert parse_title_page(raw[:start] + raw[end:]) is None


def test_list_page_is_not_a_title_page():
    assert parse_title_page(fixture("list_en.html")) is None


# ============================================================================ sandbox round trip


def _expected_years(t):
    if t.start_year is None:
        return None, None
    return t.start_year, t.end_year


@pytest.mark.parametrize("locale", ["en", "de"])
def test_sandbox_list_pages_round_trip(world, locale):
    served = served_titles(world, SERIES_KINDS, 2022)
    got = []
    start = 1
    while True:
        items = parse_list_page(
            render_list_page(world, locale=locale, year_from=2022, start=start, count=7)
        )
        if not items:
            break
        got.extend(items)
        start += len(items)
    assert [i["series_id"] for i in got] == [t.series_id for t in served]
    labels = {"en": {"TV Series", "TV Mini Series"}, "de": {"Fernsehserie", "Miniserie"}}[locale]
    for rank, (item, t) in enumerate(zip(got, served, strict=True), start=1):
        assert item["rank"] == rank
        assert item["title"] == (t.title_de if locale == "de" else t.title)
        assert (item["start_year"], item["end_year"]) == _expected_years(t)
        assert item["type_label"] in labels
        assert item["rating"] == t.rating
        if t.num_votes is None:
            assert item["num_votes"] is None
        elif t.num_votes < 1000 or (locale == "de" and t.num_votes < 1_000_000):
            assert item["num_votes"] == t.num_votes
        else:
            assert abs(item["num_votes"] - t.num_votes) <= 0.05 * t.num_votes
    # The world has exact small counts, K and M renderings; /de/ has full numbers and Mio.
    rendered = {format_votes(t.num_votes, locale) for t in served if t.num_votes}
    if locale == "en":
        assert any(v.endswith("K") for v in rendered) and any(v.endswith("M") for v in rendered)
    else:
        assert any("." in v for v in rendered) and any(v.endswith("Mio.") for v in rendered)
    # Titles with quotes, apostrophes, a leading number and non-ASCII made it through.
    titles = {i["title"] for i in got}
    assert any('"' in x for x in titles) and any("'" in x for x in titles)
    assert any(x[0].isdigit() for x in titles)


@pytest.mark.parametrize("locale", ["en", "de"])
def test_sandbox_title_pages_round_trip(world, locale):
    base = "http://sandbox.test"
    for t in world.titles:
        page = parse_title_page(render_title_page(t, locale=locale, base_url=base))
        assert page is not None, t.series_id
        assert page["parsed_from"] == "next_data"
        assert page["series_id"] == t.series_id
        assert page["title"] == (t.title_de if locale == "de" else t.title)
        assert page["original_title"] == t.original_title
        assert page["kind"] == t.kind
        assert page["is_series"] == (t.kind in SERIES_KINDS)
        assert (page["start_year"], page["end_year"]) == (t.start_year, t.end_year)
        assert page["is_adult"] == t.is_adult
        assert page["genres"] == list(t.genres)
        assert page["countries"] == list(t.countries)
        assert page["languages"] == list(t.languages)
        assert page["rating"] == t.rating
        assert page["num_votes"] == t.num_votes
        assert page["image_url"] == (base + t.poster.path if t.poster else None)
        assert page["parent_id"] == t.parent_id


def test_sandbox_json_ld_fallback_round_trip(world):
    """Break __NEXT_DATA__ on every sandbox page: JSON-LD still gives the core fields."""
    for t in world.titles:
        raw = render_title_page(t, base_url="http://x")
        raw = raw.replace(b'<script id="__NEXT_DATA__" type="application/json">{', b"<script>{")
        page = parse_title_page(raw)
        assert page is not None and page["parsed_from"] == "json_ld"
        assert page["series_id"] == t.series_id
        assert page["title"] == t.title and page["original_title"] == t.original_title
        assert page["start_year"] == t.start_year
        assert page["rating"] == t.rating and page["num_votes"] == t.num_votes


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
        assert row["countries"] == web["countries"] == list(t.countries), t.series_id
        assert row["languages"] == web["languages"] == list(t.languages), t.series_id
        assert row["num_votes"] == web["num_votes"] == t.num_votes
        assert row["end_year"] == web["end_year"] == t.end_year
    # Co-productions and a series without languages exist, so the lists are really compared.
    assert any(len(t.countries) > 1 for t in world.candidates())
    assert any(not t.languages for t in world.candidates())


# ============================================================================ TSV reader


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
