"""The Google Images parser on saved pages."""

from __future__ import annotations

from tests.tasks.collect.helpers import fixture
from tv100.tasks.collect.engine import SearchHit
from tv100.tasks.collect.google import parse_google, read_google

GOOGLE_HITS = [
    SearchHit(
        "https://www.moonlitharbor-tv.com/media/key-art.jpg",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcQx1Yz2Ab3Cd4Ef5Gh6Ij7Kl8Mn9Op0Qr1St2"
        "&usqp=CAU",
        "https://www.moonlitharbor-tv.com/about",
        "Moonlit Harbor | Official Site",
        1125,
        1500,
    ),
    SearchHit(
        "https://m.media-amazon.com/images/M/MV5BZTk3NzQ1YjAtZGQ0Ni00MDc1LWI1NmEtMzk4NDMwNTc3NDQ5",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcRa2Bc3De4Fg5Hi6Jk7Lm8No9Pq0Rs1Tu2Vw"
        "&usqp=CAU",
        "https://www.imdb.com/title/tt21234567/",
        "Moonlit Harbor (TV Series 2023\u2013 ) - IMDb",
        1382,
        2048,
    ),
    SearchHit(
        "https://img.example.net/get?id=42&size=large",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcS42&usqp=CAU",
        "https://img.example.net/gallery/42",
        "Episode 3 still",
        800,
        600,
    ),
    SearchHit(
        "https://pics.example.com/still-06.png",
        "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcStill06",
        "https://pics.example.com/stills",
        None,
        1280,
        720,
    ),
]


def test_google_af_init_data_callback():
    # Full-size triples after thumbnails ([url, H, W]), \u003d / \u0026 decoded, page and
    # title from the entry's "2003" list; the related-searches chip, the ds:0 block, base64
    # thumbnails in the DOM and the repeated key art (other host case, :443) give no hits.
    assert parse_google(fixture("google_results.html")) == GOOGLE_HITS


def test_google_truncated_block_is_scanned_entry_by_entry():
    hits = parse_google(fixture("google_truncated.html"))
    assert hits == [
        SearchHit(
            "https://posters.example.com/moonlit-harbor/season-1.jpg",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT1&usqp=CAU",
            "https://posters.example.com/moonlit-harbor",
            "Moonlit Harbor & the Sea - season 1 poster",
            764,
            1200,
        ),
        SearchHit(
            "https://cdn.example.tv/stills/ep01/0042",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT2",
            "https://cdn.example.tv/moonlit-harbor/episode-1",
            'Episode 1: "The Lighthouse"',
            1920,
            1080,
        ),
        # Cut before its "2003" list: the image is known, its page and title are not.
        SearchHit(
            "https://fan.example.org/gallery/cast-photo.jpeg",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT3",
            None,
            None,
            1024,
            768,
        ),
    ]


def test_google_imgres_fallback():
    hits = parse_google(fixture("google_imgres.html"))
    assert hits == [
        SearchHit(
            "https://www.example.org/wp-content/uploads/2023/05/harbor.jpg",
            "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcH1&s",
            "https://www.example.org/reviews/moonlit-harbor",
            "Review: Moonlit Harbor",
            1280,
            720,
        ),
        SearchHit(
            "https://cdn.example.tv/img/poster?id=7&v=2",
            "https://encrypted-tbn1.gstatic.com/images?q=tbn:ANd9GcH2",
            "https://cdn.example.tv/shows/7",
            None,
            1000,
            1500,
        ),
    ]


def _thumb(tbn: str) -> str:
    return f"https://encrypted-tbn0.gstatic.com/images?q=tbn:{tbn}&s"


def test_google_basic_html_layout_gives_thumbnails_and_source_pages():
    # Thumbnails in <img src>, source pages behind /url?q= (the q value decoded), titles in
    # the first span of the neighbouring link; the repeated thumbnail is kept once; the
    # related-search chips (thumbnails behind /search links) and the footer's /url?q= links
    # (no thumbnail) are not results.
    page = read_google(fixture("google_basic.html"))
    assert page.page_class == "results" and page.next is None
    assert page.hits == [
        SearchHit(
            _thumb("ANd9GcRa2Bc3De4Fg5Hi6Jk7Lm8No9Pq0Rs1Tu2Vw"),
            _thumb("ANd9GcRa2Bc3De4Fg5Hi6Jk7Lm8No9Pq0Rs1Tu2Vw"),
            "https://www.imdb.com/title/tt21234567/",
            "Moonlit Harbor (TV Series 2023\u2013 ) - IMDb",
            thumbnail_only=True,
        ),
        SearchHit(
            _thumb("ANd9GcQ8mXv2Lp4Rt6Yw1Za3Bc5De7Fg9Hi0Jk2Lm"),
            _thumb("ANd9GcQ8mXv2Lp4Rt6Yw1Za3Bc5De7Fg9Hi0Jk2Lm"),
            "https://mydramalist.com/735121-moonlit-harbor",
            "Moonlit Harbor - MyDramaList",
            thumbnail_only=True,
        ),
        SearchHit(
            _thumb("ANd9GcT5uV7wX9yZ1aB3cD5eF7gH9iJ1kL3mN5oP"),
            _thumb("ANd9GcT5uV7wX9yZ1aB3cD5eF7gH9iJ1kL3mN5oP"),
            "https://www.example.org/gallery?show=moonlit-harbor&page=2",
            "Stills & posters \u2013 Moonlit Harbor",
            thumbnail_only=True,
        ),
        SearchHit(
            _thumb("ANd9GcS1tU3vW5xY7zA9bC1dE3fG5hI7jK9lM1nO"),
            _thumb("ANd9GcS1tU3vW5xY7zA9bC1dE3fG5hI7jK9lM1nO"),
            "https://moonlit-harbor.fandom.com/wiki/Moonlit_Harbor",
            "Moonlit Harbor | Moonlit Harbor Wiki | Fandom",
            thumbnail_only=True,
        ),
        SearchHit(
            _thumb("ANd9GcU2vW4xY6zA8bC0dE2fG4hI6jK8lM0nO2pQ"),
            _thumb("ANd9GcU2vW4xY6zA8bC0dE2fG4hI6jK8lM0nO2pQ"),
            "https://www.viki.com/tv/40123c-moonlit-harbor",
            "Watch Moonlit Harbor | Viki",
            thumbnail_only=True,
        ),
    ]
    assert all(h.to_dict()["thumbnail_only"] for h in page.hits)
    # Full-image layouts are not flagged.
    assert not any(h.thumbnail_only for h in parse_google(fixture("google_results.html")))


def test_google_basic_hits_without_a_title_link_use_the_alt_text():
    page = (
        b'<html><body><table><tr><td><a href="/url?q=https://example.org/p&amp;sa=U">'
        b'<img alt="Poster" src="https://encrypted-tbn1.gstatic.com/images?q=tbn:X1&amp;s">'
        b'</a></td><td><a href="/url?q=/relative&amp;sa=U"><img alt="" '
        b'src="https://encrypted-tbn1.gstatic.com/images?q=tbn:X2"></a></td><td>'
        b'<a href="https://example.org/direct"><img src="https://encrypted-tbn1.gstatic.com/'
        b'images?q=tbn:X3"></a></td></tr></table></body></html>'
    )
    hits = read_google(page).hits
    assert [(h.image_url, h.page_url, h.title) for h in hits] == [
        ("https://encrypted-tbn1.gstatic.com/images?q=tbn:X1&s", "https://example.org/p", "Poster")
    ]
