"""The DuckDuckGo token and JSON parsers and its paging links."""

from __future__ import annotations

import pytest

from tests.tasks.collect.helpers import fixture
from tv100.tasks.collect.duckduckgo import (
    DuckDuckGoEngine,
    extract_vqd,
    read_duckduckgo,
)
from tv100.tasks.collect.engine import SearchHit


def test_duckduckgo_json():
    page = read_duckduckgo(fixture("ddg_i.json"))
    assert page.page_class == "results" and page.valid
    assert (
        page.next == "i.js?q=Moonlit%20Harbor%20TV%20Series&o=json&p=1&s=100&u=bing&f=,,,,,&l=us-en"
    )
    assert page.hits[1] == SearchHit(
        "https://i.mydramalist.com/Wq2Rx_4c",
        "https://tse2.mm.bing.net/th?id=OIP.Wq2Rx4cHaE8&pid=Api",
        "https://mydramalist.com/735121-moonlit-harbor",
        "Moonlit Harbor - MyDramaList",
        1280,
        720,
    )
    assert len(page.hits) == 3


def test_duckduckgo_broken_results():
    page = read_duckduckgo(fixture("ddg_broken.json"))
    assert page.page_class == "results" and page.next is None  # "next": "" is the last page
    assert page.hits == [
        SearchHit("https://cdn.example.tv/stills/0007", None, None, "sizes as strings", 1920, 1080),
        SearchHit(
            "https://img.example.org/protocol-relative.jpg",
            "https://tse2.mm.bing.net/th?id=OIP.pr",
            "https://img.example.org/p",
            "spaced title",
            None,  # true is not a width
            None,  # -5 is not a height
        ),
        SearchHit("https://pics.example.com/a%20b.jpg", None, None, "space in URL", 640, 480),
    ]
    assert read_duckduckgo(b'{"results": [') == (
        [], None, "unknown_layout", "not DuckDuckGo i.js JSON"
    )
    assert read_duckduckgo(b"[1, 2]").valid is False
    assert read_duckduckgo(b'{"results": "nope"}').page_class == "unknown_layout"
    # An empty results list is DuckDuckGo's explicit "nothing matched".
    empty = read_duckduckgo(fixture("ddg_i_empty.json"))
    assert (empty.hits, empty.next, empty.page_class, empty.valid) == ([], None, "no_results", True)
    # Its bot challenge answered instead of JSON (HTTP 202, HTML): blocked.
    anomaly = read_duckduckgo(fixture("ddg_anomaly.html"))
    assert anomaly.page_class == "blocked" and anomaly.reason
    assert anomaly.reason.startswith("captcha: DuckDuckGo's bot challenge")


@pytest.mark.parametrize(
    "content,token",
    [
        (fixture("ddg_page.html"), "4-211201371298312318573618426633357063738"),
        (fixture("ddg_page_quoted.html"), "4-98765432109876543210987654321098765432"),
        (b"<script>vqd='4-1234567890_abc-def';</script>", "4-1234567890_abc-def"),
        (b'{"q":"x","vqd":"4-55555555555555"}', "4-55555555555555"),
        (b"<a href='/d.js?q=x&vqd=4-77777777777&p=1'>", "4-77777777777"),
        (b"<html>no token here, vqd=unknown</html>", None),
        (b"", None),
        (b"\xff\xfe\x00vqd=\xff", None),
    ],
)
def test_extract_vqd(content, token):
    assert extract_vqd(content) == token


def test_duckduckgo_next_link_must_stay_on_the_engine():
    engine = DuckDuckGoEngine()
    here = "https://duckduckgo.com/i.js?q=x&o=json&vqd=4-1"
    page = read_duckduckgo(b'{"results": [], "next": "i.js?q=x&o=json&s=100"}')
    assert engine.next_url("https://duckduckgo.com", "x", here, page, 0, None, "4-1") == (
        "https://duckduckgo.com/i.js?q=x&o=json&s=100&vqd=4-1"
    )
    away = page._replace(next="https://elsewhere.example/i.js?s=100")
    assert engine.next_url("https://duckduckgo.com", "x", here, away, 0, None, "4-1") is None
