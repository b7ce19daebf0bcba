"""The Bing Images parser on saved pages."""

from __future__ import annotations

from tests.tasks.collect.helpers import fixture, urls
from tv100.tasks.collect.bing import parse_bing
from tv100.tasks.collect.engine import SearchHit


def test_bing_tiles_read_from_m_json():
    hits = parse_bing(fixture("bing_results.html"))
    assert hits[0] == SearchHit(
        image_url="https://static.wikia.nocookie.net/moonlit-harbor/images/a/a1/Poster.jpg"
        "/revision/latest?cb=20230514",
        thumb_url="https://tse1.mm.bing.net/th?id=OIP.aB3dE5fG7hI9jK1lM3nO5pQHaK9&pid=15.1",
        page_url="https://moonlit-harbor.fandom.com/wiki/Moonlit_Harbor",
        title="Moonlit Harbor (TV Series 2023\u2013 )",  # highlight marks U+E000/E001 dropped
        width=1000,
        height=1481,
    )
    # Tile 5 repeats tile 1's image (other host case, :443, fragment): dropped. Script
    # decoys ("murl" inside <script>) and related-search / ad links give no hits.
    assert urls(hits) == [
        hits[0].image_url,
        "https://i.mydramalist.com/Wq2Rx_4c",  # no file extension: a normal image URL
        "https://6.vikiplatform.com/image/0b1c2d3e4f/poster.png",
        "https://img.example.net/get?id=42&size=large",  # &amp; in the attribute decoded
    ]
    viki = hits[2]
    # No expw/exph on the detail link: the size comes from the tile's caption.
    assert (viki.width, viki.height) == (800, 1200)
    assert viki.thumb_url == "https://tse3.mm.bing.net/th?id=OIP.Kp7Lm9&pid=15.1"
    assert hits[1].title == "Moonlit Harbor - MyDramaList"
    assert (hits[3].width, hits[3].height) == (800, 600)


def test_bing_broken_tiles_give_what_is_valid():
    hits = parse_bing(fixture("bing_broken.html"))
    by_url = {h.image_url: h for h in hits}
    assert urls(hits) == [
        "https://cdn.example.org/posters/77.webp",  # no m: the detail link's mediaurl
        "https://pics.example.com/single.jpg",  # m as a single-quoted JS object
        "https://pics.example.com/attr.jpg",  # single-quoted attribute
        "https://pics.example.com/trunc.jpg",  # m cut inside turl
        "https://pics.example.com/seven.jpg",  # relative murl: detail link instead
        "https://pics.example.com/nine",
    ]
    no_m = by_url["https://cdn.example.org/posters/77.webp"]
    assert (no_m.width, no_m.height, no_m.page_url) == (600, 900, None)
    assert no_m.thumb_url == "https://tse1.mm.bing.net/th?id=OIP.Nm1&w=160&h=240"
    assert no_m.title == "No m attribute"
    single = by_url["https://pics.example.com/single.jpg"]
    assert single.page_url == "https://pics.example.com/page"
    assert single.thumb_url == "https://tse2.mm.bing.net/th?id=OIP.s1"
    assert single.title == "Single quoted"
    assert by_url["https://pics.example.com/attr.jpg"].title == "It's quoted"
    trunc = by_url["https://pics.example.com/trunc.jpg"]
    assert trunc.thumb_url == "https://tse3.mm.bing.net/th?id=OIP.t6"  # from the <img>
    seven = by_url["https://pics.example.com/seven.jpg"]
    assert (seven.page_url, seven.title, seven.width, seven.height) == (
        "https://pics.example.com/seven",
        "Relative murl",
        1920,
        1080,
    )
    nine = by_url["https://pics.example.com/nine"]
    assert (nine.title, nine.width, nine.height) == (None, None, None)  # "", "abc", "-5"
    assert nine.thumb_url == "https://tse1.mm.bing.net/th?id=OIP.n9"


def test_bing_detail_v2_links_without_tiles():
    hits = parse_bing(fixture("bing_detail_links.html"))
    assert hits == [
        SearchHit(
            "https://www.example.com/shows/moonlit/key-art.jpg",
            "https://tse1.mm.bing.net/th?id=OIP.Pq1&w=300&h=169&c=7",
            None,
            "Moonlit Harbor key art",
            1920,
            1080,
        ),
        SearchHit(  # absolute link, MediaUrl / ExpW / ExpH in other letter case
            "http://images.example.net/photo?id=9f8e",
            "https://tse2.mm.bing.net/th?id=OIP.Pq2&w=200&h=300",
            None,
            "Behind the scenes",
            427,
            640,
        ),
    ]


def test_invalid_utf8_between_tiles_keeps_valid_tiles():
    page = fixture("bing_results.html")
    broken = page.replace(b'<li data-idx="2"', b'\xff\xfe\x80\xc3(<li data-idx="2"')
    assert parse_bing(broken) == parse_bing(page)
    assert len(parse_bing(broken)) == 4
