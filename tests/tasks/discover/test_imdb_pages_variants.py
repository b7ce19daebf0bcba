"""IMDb pages as they are today: every layout variant, hand-written fixtures and the sandbox.

Fixtures (tests/fixtures/imdb/): title pages in the current (2025) layout (``title_current``,
a /de/ page) and the earlier one (``title_next_data``), JSON-LD-only pages (``title_ld_*``),
list pages with ``dli-`` (``list_en``), ``cli-`` (``list_cli``) and ``__t``/``__li``
(``list_older``) markup, results in ``__NEXT_DATA__`` (``list_next_data``, ``find_next_data``)
and bot checks (``waf_challenge``, ``waf_captcha``, ``captcha_form``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tv100.sandbox.imdb import (
    LIST_VARIANTS,
    TITLE_VARIANTS,
    list_variant,
    render_list_page,
    render_title_page,
    served_titles,
    title_variant,
)
from tv100.sandbox.imdb_lists import find_titles, render_find_page
from tv100.sandbox.imdb_titles import date_published
from tv100.tasks.discover.imdb_codes import SERIES_KINDS
from tv100.tasks.discover.imdb_list_page import result_items
from tv100.tasks.discover.imdb_pages import (
    classify_imdb_page,
    is_challenge_page,
    parse_list_page,
    parse_title_page,
    waf_action,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "imdb"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- title pages -------------------------------------------------------------------------------


def test_current_layout_reads_is_adult_and_genre_ids_from_main_column():
    page = parse_title_page(fixture("title_current.html"))
    assert page is not None and page.parsed_from == "next_data"
    assert (page.series_id, page.title, page.original_title) == ("tt2788316", "Shōgun", "Shōgun")
    assert page.kind == "tvSeries" and page.is_series is True
    assert page.is_adult is False  # under mainColumnData, not aboveTheFoldData
    # The /de/ page shows "Abenteuer", "Historie": the ids come from mainColumnData.
    assert page.genres == ("Adventure", "Drama", "History")
    assert (page.start_year, page.end_year) == (2024, None)
    assert page.countries == ("US",) and page.languages == ("ja", "en", "pt")
    assert (page.rating, page.num_votes) == (8.6, 276_514)


def test_current_layout_adult_flag_and_genre_names_without_ids():
    raw = fixture("title_current.html")
    adult = parse_title_page(raw.replace(b'"isAdult":false', b'"isAdult":true'))
    assert adult is not None and adult.is_adult is True
    start = raw.index(b'"genres":{"genres":[{"id"')
    end = raw.index(b'"__typename":"Genres"}', start) + len(b'"__typename":"Genres"}')
    no_ids = parse_title_page(raw[:start] + b'"genres":null' + raw[end:])
    assert no_ids is not None
    assert no_ids.genres == ("Abenteuer", "Drama", "Historie")  # what the page shows


def test_earlier_layout_reads_is_adult_and_genres_above_the_fold():
    raw = fixture("title_next_data.html")
    page = parse_title_page(raw)
    assert page is not None and page.parsed_from == "next_data"
    assert page.is_adult is False and page.genres == ("Action", "Drama", "Mystery")
    adult = parse_title_page(raw.replace(b'"isAdult":false', b'"isAdult":true'))
    assert adult is not None and adult.is_adult is True


def test_json_ld_series_names_and_the_visible_release_year():
    page = parse_title_page(fixture("title_ld_series.html"))
    assert page is not None and page.parsed_from == "json_ld"
    assert page.series_id == "tt30434617"
    assert page.title == "Kim Sam-soon & Friends"  # alternateName: the English title
    assert page.original_title == "Nae Ireumeun Gim Sam-sun & Chingudeul"  # name
    assert page.kind == "tvSeries" and page.is_series is True
    # The hero says 2023–2024; datePublished (one country's date) says 2024.
    assert (page.start_year, page.end_year) == (2023, 2024)
    assert page.is_adult is None and page.countries == () and page.languages == ()
    assert (page.rating, page.num_votes) == (7.9, 3817)
    assert page.genres == ("Comedy", "Drama", "Romance")


def test_json_ld_movie_type_is_not_reported_as_a_certain_kind():
    page = parse_title_page(fixture("title_ld_tv_movie.html"))
    assert page is not None and page.parsed_from == "json_ld"
    assert page.kind is None and page.is_series is False  # a TV movie, JSON-LD says "Movie"
    assert (page.title, page.original_title) == ("The Road of Light", "Hikari no Michi")
    assert (page.start_year, page.end_year) == (2023, None)  # hero, not datePublished 2024


def test_json_ld_without_any_visible_year_has_no_year():
    raw = fixture("title_ld_series.html")
    raw = raw.replace("2023–2024".encode(), b"")  # hero link and document title
    page = parse_title_page(raw)
    assert page is not None and page.start_year is None and page.end_year is None


# -- list and find pages -----------------------------------------------------------------------

SHOWS = [
    # id, title, original, kind, start, end, rating, exact votes, votes as the HTML rounds them
    ("tt21344706", "Moving", "Mubing", "tvSeries", 2023, None, 8.4, 19_402, 19_000),
    ("tt15474140", "The Glory", "Deo Geullori", "tvSeries", 2022, 2023, 8.1, 4937, 4900),
    ("tt27429193", "Daily Dose of Sunshine", "Jeongsinbyeongdongedo achimi wayo",
     "tvMiniSeries", 2023, 2023, 8.2, 1234, 1200),
]  # fmt: skip


@pytest.mark.parametrize("name", ["list_cli.html", "list_older.html"])
def test_html_list_pages_whatever_the_class_prefix(name):
    items = parse_list_page(fixture(name))
    assert [i.series_id for i in items] == [s[0] for s in SHOWS]
    for item, (_, title, _, _, start, end, rating, _, rounded) in zip(items, SHOWS, strict=True):
        assert item.parsed_from == "html"
        assert item.title == title
        assert (item.start_year, item.end_year) == (start, end)
        assert (item.rating, item.num_votes) == (rating, rounded)
        assert item.original_title is None and item.kind is None  # HTML has neither
    if name == "list_cli.html":
        assert [i.rank for i in items] == [1, 2, 3]
        assert [i.type_label for i in items] == ["TV Series", "TV Series", "TV Mini Series"]
    else:  # the older markup shows no rank and has no type element of its own
        assert {i.rank for i in items} == {None} and {i.type_label for i in items} == {None}


def test_list_page_next_data_results_are_preferred_and_exact():
    items = parse_list_page(fixture("list_next_data.html"))
    assert [i.series_id for i in items] == [s[0] for s in SHOWS]
    for item, (_, title, orig, kind, start, end, rating, votes, _) in zip(
        items, SHOWS, strict=True
    ):
        assert item.parsed_from == "next_data"
        assert (item.title, item.original_title, item.kind) == (title, orig, kind)
        assert (item.start_year, item.end_year, item.rating) == (start, end, rating)
        assert item.num_votes == votes  # 4937, where the HTML says "4.9K"
        assert item.rank is None
    assert items[2].type_label == "TV Mini Series"


def test_find_page_results_from_next_data():
    items = parse_list_page(fixture("find_next_data.html"))
    assert [(i.series_id, i.title, i.kind, i.num_votes) for i in items] == [
        ("tt10919420", "Squid Game", "tvSeries", 646_623),
        ("tt27857191", "Squid Game: The Challenge", "tvSeries", 21_876),
    ]
    assert items[0].original_title == "Ojing-eo geim"
    assert {i.parsed_from for i in items} == {"next_data"}
    # Without __NEXT_DATA__ the same page reads from its __t/__li markup.
    raw = fixture("find_next_data.html")
    html_only = parse_list_page(raw[: raw.index(b'<script id="__NEXT_DATA__"')])
    assert [(i.series_id, i.start_year, i.end_year, i.num_votes) for i in html_only] == [
        ("tt10919420", 2021, 2025, 646_000),
        ("tt27857191", 2023, None, 22_000),
    ]


def test_result_items_are_found_anywhere_in_the_tree():
    item = {"titleId": "tt0000001", "titleText": "Plain string", "originalTitleText": None,
            "ratingSummary": {"aggregateRating": 7.5, "voteCount": 12}}  # fmt: skip
    other = {"titleId": "tt0000002", "titleText": {"text": "Sidebar"}}
    data = {
        "props": {"pageProps": {
            "recentlyViewed": [other],
            "deep": {"x": [{"wrapped": {"no": 1}}, {"node": item}, {"node": item}]},
            "refs": [{"titleId": "tt0000003"}],  # no titleText: not a result
        }}
    }  # fmt: skip
    found = result_items(data)
    assert found == [item, item]  # the longest array of results wins
    assert result_items({"a": [{"titleId": "nope", "titleText": "x"}]}) is None
    page = (
        "<html><body><script id='__NEXT_DATA__' type='application/json'>"
        + json.dumps(data)
        + "</script></body></html>"
    ).encode()
    (first, _) = parse_list_page(page)
    assert (first.title, first.original_title, first.rating, first.num_votes) == (
        "Plain string", None, 7.5, 12,
    )  # fmt: skip


# -- bot checks and page classes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("list_en.html", "list", "list"),
        ("list_cli.html", "list", "list"),
        ("list_older.html", "list", "list"),
        ("list_next_data.html", "imdb-list", "list"),
        ("find_next_data.html", "list", "list"),
        ("list_empty.html", "list", "list"),  # a list page without results is still one
        ("title_current.html", "title", "title"),
        ("title_next_data.html", "imdb-title", "title"),
        ("title_ld_series.html", "title", "title"),
        ("title_ld_tv_movie.html", "title", "title"),
        ("title_current.html", "list", "unknown_layout"),
        ("list_next_data.html", "title", "unknown_layout"),
        ("waf_challenge.html", "list", "blocked"),
        ("waf_challenge.html", "title", "blocked"),
        ("waf_captcha.html", "title", "blocked"),
        ("captcha_form.html", "list", "blocked"),
    ],
)
def test_classify_imdb_page(name, kind, expected):
    assert classify_imdb_page(fixture(name), kind) == expected


def test_classify_other_input():
    assert classify_imdb_page(b"", "list") == "unknown_layout"
    assert classify_imdb_page(b"\xff\xfe<html>", "title") == "unknown_layout"
    assert classify_imdb_page(b"<html><body>Hello</body></html>", "list") == "unknown_layout"
    with pytest.raises(ValueError, match="expected 'list' or 'title'"):
        classify_imdb_page(b"", "bing")


def test_bot_check_markers():
    assert waf_action({"x-amzn-waf-action": "challenge"}) == "challenge"
    assert waf_action({"x-amzn-waf-action": " "}) == "challenge"
    assert waf_action({"content-type": "text/html"}) is None
    for name in ("waf_challenge.html", "waf_captcha.html", "captcha_form.html"):
        assert is_challenge_page(fixture(name)), name
    for name in ("list_en.html", "title_current.html", "title_ld_series.html"):
        assert not is_challenge_page(fixture(name)), name
    # The bot checks are not results of any kind either.
    for name in ("waf_challenge.html", "waf_captcha.html", "captcha_form.html"):
        assert parse_list_page(fixture(name)) == [] and parse_title_page(fixture(name)) is None


# -- the sandbox serves every variant ----------------------------------------------------------


@pytest.fixture(scope="module")
def world():
    from tv100.sandbox.world import build_world

    return build_world(seed=0)


@pytest.mark.parametrize("variant", LIST_VARIANTS)
@pytest.mark.parametrize("locale", ["en", "de"])
def test_sandbox_list_variants_round_trip(world, locale, variant):
    served = served_titles(world, SERIES_KINDS, 2022)
    got = []
    start = 1
    while items := parse_list_page(
        render_list_page(world, locale=locale, year_from=2022, start=start, count=9,
                         variant=variant)  # fmt: skip
    ):
        got.extend(items)
        start += len(items)
    assert [i.series_id for i in got] == [t.series_id for t in served]
    exact = variant == "next_data"
    for rank, (item, t) in enumerate(zip(got, served, strict=True), start=1):
        assert item.parsed_from == ("next_data" if exact else "html")
        assert item.title == (t.title_de if locale == "de" else t.title)
        assert (item.start_year, item.end_year) == (t.start_year, t.end_year)
        assert item.rating == t.rating
        assert item.rank == (rank if variant in ("dli", "cli") else None)
        if exact:
            assert (item.kind, item.original_title) == (t.kind, t.original_title)
            assert item.num_votes == t.num_votes
        elif t.num_votes is None:
            assert item.num_votes is None
        else:  # the HTML's rounding ("646K", "1,2 Mio.")
            assert abs(item.num_votes - t.num_votes) <= 0.05 * t.num_votes


@pytest.mark.parametrize("variant", TITLE_VARIANTS)
def test_sandbox_title_variants(world, variant):
    for t in world.titles:
        page = parse_title_page(render_title_page(t, base_url="http://x", variant=variant))
        assert page is not None and page.series_id == t.series_id
        assert (page.title, page.original_title) == (t.title, t.original_title)
        assert page.num_votes == t.num_votes
        if variant == "json_ld":
            assert page.parsed_from == "json_ld" and page.is_adult is None
            assert (page.start_year, page.end_year) == (
                (t.start_year, t.end_year if t.kind in SERIES_KINDS else None)
            )
            assert page.kind == {"tvSeries": "tvSeries", "tvMiniSeries": "tvSeries",
                                 "tvEpisode": "tvEpisode"}.get(t.kind)  # fmt: skip
        else:
            assert page.parsed_from == "next_data"
            assert (page.kind, page.is_adult, page.genres) == (t.kind, t.is_adult, t.genres)
    # datePublished is a year off for some titles: the year must come from the hero.
    assert any(
        (d := date_published(t)) is not None and not d.startswith(str(t.start_year))
        for t in world.candidates()
    )


def test_sandbox_mixes_every_layout(world):
    assert {title_variant(world, t.series_id) for t in world.titles} == set(TITLE_VARIANTS)
    assert [list_variant(world, 1 + 10 * n, 10) for n in range(4)] == list(LIST_VARIANTS)
    assert title_variant(world, world.titles[0].series_id) == title_variant(
        world, world.titles[0].series_id
    )


def test_sandbox_find_page(world):
    t = world.candidates()[0]
    q = t.title.split()[0]
    items = parse_list_page(render_find_page(world, q, base_url="http://x"))
    assert [i.series_id for i in items] == [x.series_id for x in find_titles(world, q)]
    assert t.series_id in {i.series_id for i in items}
    assert {i.parsed_from for i in items} == {"next_data"}
    empty = render_find_page(world, "")
    assert parse_list_page(empty) == [] and classify_imdb_page(empty, "list") == "list"
