"""Source pages of thumbnail-only hits: the image their head names, and the page's verdict.

Saved pages (tests/fixtures/search/source_pages/) carry the head chrome of real sites: a
news article (WordPress + Yoast: og:image, og:image:secure_url, twitter:image), a wiki with a
relative og:image, a blog whose lazy-load plugin left a ``data:`` placeholder in og:image, a
shop writing ``name="OG:Image"``, a page with unrendered template values, and a page without
any preview image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.source_page import (
    IMAGE_KEYS,
    MAX_URL_LENGTH,
    PageImage,
    page_image,
    read_source_page,
)
from tv100.tasks.web.config import Fetched

FIXTURES = Path(__file__).parents[2] / "fixtures" / "search" / "source_pages"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def meta(key: str, value: str, attr: str = "property") -> str:
    return f'<meta {attr}="{key}" content="{value}">'


def page(*metas: str) -> bytes:
    head = "".join(metas)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>A still</title>'
        f'<meta name="viewport" content="width=device-width">{head}</head>'
        '<body><img src="/still.jpg" alt="still"></body></html>'
    ).encode()


BASE = "https://www.example.org/gallery/show/still-12.html"


# -- saved pages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "expected"),
    [
        (
            "news_article.html",
            "https://www.dramadispatch.example/news/2025/03/moonlit-harbour-stills/",
            PageImage(
                "https://cdn.dramadispatch.example/wp-content/uploads/2025/03/"
                "moonlit-harbour-1.jpg",
                "og:image:secure_url",
            ),
        ),
        (
            "fandom_relative.html",
            "https://harbour.fandom.example/wiki/Moonlit_Harbour_(TV_series)",
            PageImage(
                "https://harbour.fandom.example/images/thumb/4/4a/Moonlit_Harbour_poster.jpg/"
                "1200px-Moonlit_Harbour_poster.jpg?cb=20250301",
                "og:image",
            ),
        ),
        (
            "blog_twitter_only.html",
            "https://slowtvnotes.example/2025/03/21/moonlit-harbour-episode-3-recap/",
            PageImage(
                "https://i0.slowtvnotes-cdn.example/slowtvnotes.example/wp-content/uploads/"
                "2025/03/ep3-storm.jpg?fit=1200%2C675&ssl=1",
                "twitter:image",
            ),
        ),
        (
            "shop_name_attribute.html",
            "https://www.disccorner.example/moonlit-harbour-season-1-blu-ray.html",
            PageImage(
                "https://media.disccorner.example/catalog/product/m/h/mh-s1-bluray-front.jpg",
                "og:image",
            ),
        ),
        (
            "template_leftovers.html",
            "https://www.streamfinder.example/show/88213",
            PageImage(
                "https://img.streamfinder.example/backdrops/w1280/moonlit-harbour-8KfA2.jpg",
                "twitter:image:src",
            ),
        ),
        ("no_preview_image.html", "https://tvlistings.example/shows/moonlit-harbour/", None),
    ],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".html") else "",
)
def test_saved_pages(name, base, expected):
    assert page_image(fixture(name), base) == expected


# -- precedence -------------------------------------------------------------------------------


def test_keys_are_read_in_order_of_preference_whatever_the_page_order():
    metas = [meta(k, f"https://img.example/{k.replace(':', '-')}.jpg") for k in IMAGE_KEYS]
    for n, key in enumerate(IMAGE_KEYS):
        content = page(*reversed(metas[n:]))  # the least preferred first in the page
        found = page_image(content, BASE)
        assert found == PageImage(f"https://img.example/{key.replace(':', '-')}.jpg", key)


def test_first_usable_value_of_a_key_wins():
    content = page(
        meta("og:image", "data:image/png;base64,iVBORw0KGgo="),
        meta("og:image", "https://img.example/first.jpg"),
        meta("og:image", "https://img.example/second.jpg"),
    )
    assert page_image(content, BASE) == PageImage("https://img.example/first.jpg", "og:image")


def test_name_and_property_both_count_and_case_is_ignored():
    for attr in ("property", "name"):
        for key in ("og:image", "OG:IMAGE", " Og:Image "):
            found = page_image(page(meta(key, "https://img.example/a.jpg", attr)), BASE)
            assert found == PageImage("https://img.example/a.jpg", "og:image"), (attr, key)


def test_other_metas_and_elements_do_not_count():
    content = page(
        meta("og:image:width", "1200"),
        meta("og:image:alt", "https://img.example/alt.jpg"),
        meta("image", "https://img.example/schema.jpg", "itemprop"),
        '<link rel="image_src" href="https://img.example/link.jpg">',
        '<meta property="og:image">',  # no content
    )
    assert page_image(content, BASE) is None


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://img.example/a.jpg", "https://img.example/a.jpg"),
        ("  https://img.example/a.jpg\n", "https://img.example/a.jpg"),
        ("/media/a.jpg", "https://www.example.org/media/a.jpg"),
        ("a.jpg", "https://www.example.org/gallery/show/a.jpg"),
        (
            "../posters/a.jpg?w=1200&amp;h=675",
            "https://www.example.org/gallery/posters/a.jpg?w=1200&h=675",
        ),
        ("//cdn.example/a.jpg", "https://cdn.example/a.jpg"),
        ("http://img.example/a b.jpg", "http://img.example/a%20b.jpg"),
    ],
)
def test_values_resolve_against_the_page(value, expected):
    assert page_image(page(meta("og:image", value)), BASE) == PageImage(expected, "og:image")


def test_relative_values_resolve_against_the_final_url():
    content = page(meta("og:image", "poster.jpg"))
    final = "http://mirror.example/new/place/page"  # where the page redirected to
    assert page_image(content, final) == PageImage("http://mirror.example/new/place/poster.jpg",
                                                   "og:image")  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "null",
        "None",
        "undefined",
        "#",
        "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
        "javascript:void(0)",
        "mailto:photos@example.org",
        "ftp://files.example/a.jpg",
        "blob:https://www.example.org/4f6c1a",
        "{{ page.image }}",
        "${ogImage}",
        "<%= image_url %>",
        "https://[::1",
        "https://img.example/" + "a" * MAX_URL_LENGTH,
    ],
    ids=lambda v: repr(v[:24]),
)
def test_junk_values_are_skipped(value):
    content = page(meta("og:image", value), meta("twitter:image", "https://img.example/t.jpg"))
    assert page_image(content, BASE) == PageImage("https://img.example/t.jpg", "twitter:image")
    assert page_image(page(meta("og:image", value)), BASE) is None


@pytest.mark.parametrize(
    "content", [b"", b"   ", b"\xff\xfe<<<\x00", b"GIF89a\x01\x00", "<html><head>", b"{}"]
)
def test_unreadable_pages_name_no_image(content):
    assert page_image(content, BASE) is None


# -- the downloader's verdict -----------------------------------------------------------------


def fetched(content: bytes, status: str = "ok", headers: dict[str, str] | None = None) -> Fetched:
    http_status = 200 if status == "ok" else 404
    return Fetched(
        url="https://www.example.org/p",
        final_url=BASE,
        status=status,  # type: ignore[arg-type]
        http_status=http_status,
        headers=headers or {"content-type": "text/html"},
        content=content,
        error_message=None if status == "ok" else "HTTP 404 Not Found",
        attempts=1,
        elapsed_s=0.01,
    )


def test_verdict_of_a_page_naming_its_image():
    seen = read_source_page(fetched(page(meta("og:image", "/a.jpg"))), DownloadConfig())
    assert seen.image == PageImage("https://www.example.org/a.jpg", "og:image")
    assert (seen.opt_out, seen.reason) == (None, None)
    assert seen.fetched.content == b"" and seen.fetched.final_url == BASE


def test_verdict_of_a_page_that_opts_out():
    noai = page('<meta name="robots" content="noai">', meta("og:image", "/a.jpg"))
    seen = read_source_page(fetched(noai), DownloadConfig())
    assert (seen.opt_out, seen.image) == ('<meta name="robots"> noai', None)
    header = fetched(page(meta("og:image", "/a.jpg")), headers={"x-robots-tag": "noimageai"})
    assert read_source_page(header, DownloadConfig()).opt_out == "X-Robots-Tag: noimageai"
    # A crawler-specific meta names our product token (from the user agent).
    ours = page('<meta name="tv100" content="noimageai">', meta("og:image", "/a.jpg"))
    assert read_source_page(fetched(ours), DownloadConfig()).opt_out is not None
    # Not honoured: the image is read as from any page.
    ignored = read_source_page(fetched(noai), DownloadConfig(honour_opt_out=False))
    assert ignored.opt_out is None and ignored.image is not None


def test_verdict_of_pages_without_an_image():
    failed = read_source_page(fetched(b"<h1>Not Found</h1>", "http_error"), DownloadConfig())
    assert (failed.image, failed.reason) == (None, "http_error: HTTP 404 Not Found")
    none = read_source_page(fetched(fixture("no_preview_image.html")), DownloadConfig())
    assert (none.image, none.reason) == (None, "no og:image or twitter:image")
