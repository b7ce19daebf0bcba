"""IMDb page parsers: hand-written fixtures of the real markup, sandbox round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tv100.sandbox.imdb import format_votes, render_list_page, render_title_page, served_titles
from tv100.sandbox.world import build_world
from tv100.tasks.discover.imdb_codes import SERIES_KINDS
from tv100.tasks.discover.imdb_pages import (
    ListedTitle,
    TitlePage,
    list_page_url,
    parse_list_page,
    parse_rating,
    parse_title_page,
    parse_votes,
    parse_years,
    title_page_url,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "imdb"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def world():
    return build_world(seed=0)



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
    assert list_page_url("http://x", 2021, 1, locale="en") == list_page_url("http://x", 2021, 1)


def test_title_page_url():
    assert title_page_url("https://www.imdb.com/", "tt0903747") == (
        "https://www.imdb.com/title/tt0903747/"
    )
    assert title_page_url("http://x", "tt0903747", "de") == "http://x/de/title/tt0903747/"



def test_english_list_fixture():
    items = parse_list_page(fixture("list_en.html"))
    # The template string in a <script>, the sidebar and the item without a title link are
    # not results.
    assert [i.series_id for i in items] == [
        "tt3581920", "tt9319668", "tt10919420", "tt2788316", "tt31234567", "tt27740241",
    ]  # fmt: skip
    by_id = {i.series_id: i for i in items}
    last = by_id["tt3581920"]
    assert last == ListedTitle(
        series_id="tt3581920",
        title="The Last of Us",
        original_title=None,  # only __NEXT_DATA__ has it
        kind=None,
        rank=1,
        start_year=2023,
        end_year=None,
        rating=8.6,
        num_votes=646_000,
        type_label="TV Series",
        parsed_from="html",
    )
    assert by_id["tt9319668"].title == "1899"  # a title that is a number
    assert (by_id["tt9319668"].start_year, by_id["tt9319668"].end_year) == (2022, 2022)
    assert (by_id["tt10919420"].start_year, by_id["tt10919420"].end_year) == (2021, 2025)
    assert by_id["tt10919420"].num_votes == 1_200_000
    assert by_id["tt2788316"].title == "Shōgun"
    assert by_id["tt2788316"].end_year is None  # "2024–" without the trailing space
    assert by_id["tt2788316"].num_votes == 1200
    # Rank "12. " is stripped once; the title's own "24. " stays. No year, no rating.
    odd = by_id["tt31234567"]
    assert (odd.title, odd.rank) == ("24. Stunde", 12)
    assert odd.start_year is None and odd.end_year is None
    assert odd.rating is None and odd.num_votes is None
    assert odd.type_label == "TV Mini Series"
    assert by_id["tt27740241"].num_votes == 987


def test_german_list_fixture():
    items = parse_list_page(fixture("list_de.html"))
    assert [(i.series_id, i.rating, i.num_votes) for i in items] == [
        ("tt3581920", 8.6, 646_623),
        ("tt10919420", 8.0, 1_200_000),
        ("tt27740241", 8.2, 1234),
    ]
    assert [i.type_label for i in items] == ["Fernsehserie", "Fernsehserie", "Miniserie"]
    assert items[0].end_year is None and items[1].end_year == 2025
    assert items[2].title == "Nae namjawa gyeolhonhaejwo"


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
    by_id = {i.series_id: i for i in items}
    assert by_id["tt2788316"].title == "Sh\ufffdgun"
    assert by_id["tt2788316"].rating == 8.6



def test_title_page_next_data():
    page = parse_title_page(fixture("title_next_data.html"))
    assert page == TitlePage(
        series_id="tt10919420",
        title="Squid Game",
        original_title="Ojing-eo geim",
        kind="tvSeries",
        is_series=True,
        start_year=2021,
        end_year=2025,
        is_adult=False,
        genres=("Action", "Drama", "Mystery"),
        countries=("KR",),
        languages=("ko", "en"),
        rating=8.0,
        num_votes=646_623,
        image_url="https://m.media-amazon.com/images/M/"
        "MV5BYTU3ZDVhNmMtMDVlNC00MDc0LTljNmUtNjFiYzE3ZjcxN2NmXkEyXkFqcGc@._V1_.jpg",
        parent_id=None,
        parsed_from="next_data",
    )
    assert page.to_dict()["genres"] == ["Action", "Drama", "Mystery"]


def test_title_page_missing_optional_fields_and_countries_above_the_fold():
    page = parse_title_page(fixture("title_de_no_rating.html"))
    assert page is not None
    assert page.parsed_from == "next_data"
    assert page.title == "Das Flüstern des Mondes"
    assert page.original_title == "月の囁き"
    assert page.kind == "tvMiniSeries" and page.is_series is True
    assert (page.start_year, page.end_year) == (2025, None)
    assert page.rating is None and page.num_votes is None
    assert page.image_url is None
    assert page.languages == ()
    assert page.countries == ("JP",)  # mainColumnData has none: aboveTheFoldData is used


def test_broken_next_data_falls_back_to_json_ld():
    page = parse_title_page(fixture("title_broken_next_data.html"))
    assert page is not None
    assert page.parsed_from == "json_ld"
    assert page.series_id == "tt0413573"
    assert page.title == page.original_title == "Grey's Anatomy"  # &apos; unescaped
    assert page.kind == "tvSeries"
    # No hero list on this page: the document title's "(TV Series 2005– )", ongoing.
    assert (page.start_year, page.end_year) == (2005, None)
    assert page.is_adult is None
    assert page.rating == 7.6 and page.num_votes == 346_789
    assert page.genres == ("Drama", "Romance")
    assert page.countries == () and page.languages == ()


def test_json_ld_only_page_with_list_and_string_numbers():
    page = parse_title_page(fixture("title_ld_only.html"))
    assert page is not None
    assert page.series_id == "tt1361336"  # from <meta property="imdb:pageConst">
    # JSON-LD's Movie may be a movie, a TV movie or a video: not a series, kind unknown.
    assert page.kind is None and page.is_series is False
    assert page.title == page.original_title == 'Tom & Jerry: "The Movie"'
    assert (page.start_year, page.end_year) == (2021, None)  # "(Movie 2021)", not a series
    assert page.rating == 5.2 and page.num_votes == 41_023
    assert page.image_url.endswith("._V1_.jpg")
    assert page.genres == ("Animation",)


def test_episode_page():
    page = parse_title_page(fixture("title_episode.html"))
    assert page is not None
    assert page.kind == "tvEpisode" and page.is_series is False
    assert page.parent_id == "tt10919420"


def test_title_page_broken_json_without_json_ld_is_none():
    raw = fixture("title_broken_next_data.html")
    start = raw.index(b'<script type="application/ld+json">')
    end = raw.index(b"</script>", start) + len(b"</script>")
    assert parse_title_page(raw[:start] + raw[end:]) is None


def test_list_page_is_not_a_title_page():
    assert parse_title_page(fixture("list_en.html")) is None



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
    assert [i.series_id for i in got] == [t.series_id for t in served]
    labels = {"en": {"TV Series", "TV Mini Series"}, "de": {"Fernsehserie", "Miniserie"}}[locale]
    for rank, (item, t) in enumerate(zip(got, served, strict=True), start=1):
        assert item.rank == rank
        assert item.title == (t.title_de if locale == "de" else t.title)
        assert (item.start_year, item.end_year) == _expected_years(t)
        assert item.type_label in labels
        assert item.rating == t.rating
        if t.num_votes is None:
            assert item.num_votes is None
        elif t.num_votes < 1000 or (locale == "de" and t.num_votes < 1_000_000):
            assert item.num_votes == t.num_votes
        else:
            assert abs(item.num_votes - t.num_votes) <= 0.05 * t.num_votes
    # The world has exact small counts, K and M renderings; /de/ has full numbers and Mio.
    rendered = {format_votes(t.num_votes, locale) for t in served if t.num_votes}
    if locale == "en":
        assert any(v.endswith("K") for v in rendered) and any(v.endswith("M") for v in rendered)
    else:
        assert any("." in v for v in rendered) and any(v.endswith("Mio.") for v in rendered)
    # Titles with quotes, apostrophes, a leading number and non-ASCII made it through.
    titles = {i.title for i in got}
    assert any('"' in x for x in titles) and any("'" in x for x in titles)
    assert any(x[0].isdigit() for x in titles)


@pytest.mark.parametrize("layout", ["current", "earlier"])
@pytest.mark.parametrize("locale", ["en", "de"])
def test_sandbox_title_pages_round_trip(world, locale, layout):
    base = "http://sandbox.test"
    for t in world.titles:
        raw = render_title_page(t, locale=locale, base_url=base, variant=layout)
        page = parse_title_page(raw)
        assert page is not None, t.series_id
        assert page.parsed_from == "next_data"
        assert page.series_id == t.series_id
        assert page.title == (t.title_de if locale == "de" else t.title)
        assert page.original_title == t.original_title
        assert page.kind == t.kind
        assert page.is_series == (t.kind in SERIES_KINDS)
        assert (page.start_year, page.end_year) == (t.start_year, t.end_year)
        assert page.is_adult == t.is_adult
        assert page.genres == tuple(t.genres)
        assert page.countries == tuple(t.countries)
        assert page.languages == tuple(t.languages)
        assert page.rating == t.rating
        assert page.num_votes == t.num_votes
        assert page.image_url == (base + t.poster.path if t.poster else None)
        assert page.parent_id == t.parent_id


def test_sandbox_json_ld_fallback_round_trip(world):
    """Break __NEXT_DATA__ on every sandbox page: JSON-LD still gives the core fields."""
    for t in world.titles:
        raw = render_title_page(t, base_url="http://x")
        raw = raw.replace(b'<script id="__NEXT_DATA__" type="application/json">{', b"<script>{")
        page = parse_title_page(raw)
        assert page is not None and page.parsed_from == "json_ld"
        assert page.series_id == t.series_id
        assert page.title == t.title and page.original_title == t.original_title
        assert page.start_year == t.start_year
        assert page.rating == t.rating and page.num_votes == t.num_votes
