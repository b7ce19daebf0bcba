"""The engine registry: dispatch, name checks, and every parser on broken input."""

from __future__ import annotations

import dataclasses

import pytest

from tests.tasks.collect.helpers import fixture
from tv100.tasks.collect.bing import parse_bing
from tv100.tasks.collect.duckduckgo import (
    parse_duckduckgo,
)
from tv100.tasks.collect.engine import SearchHit
from tv100.tasks.collect.engines import ENGINES, check_engines, parse_page, read_page
from tv100.tasks.collect.google import parse_google
from tv100.tasks.web.urls import canonical_url


@pytest.mark.parametrize(
    "name,parser",
    [
        ("google_results.html", parse_google),
        ("google_basic.html", parse_google),
        ("bing_results.html", parse_bing),
        ("ddg_i.json", parse_duckduckgo),
    ],
)
def test_truncation_anywhere_never_invents_data(name, parser):
    content = fixture(name)
    full = {h.image_url: h for h in parser(content)}
    for cut in range(0, len(content), 53):
        for hit in parser(content[:cut]):
            whole = full[hit.image_url]  # never an image the whole page does not list
            for f in dataclasses.fields(SearchHit):
                value = getattr(hit, f.name)
                assert value is None or value == getattr(whole, f.name), (cut, f.name)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        fixture("garbage.bin"),
        b"\xff\xfe\xfa" * 1000,
        b"<html><body><a class='iusc' m></a><a class=iusc m=\"{\"></a>",
        b"AF_initDataCallback({key: 'ds:1', data:[[[[[[",
        b"AF_initDataCallback(",
        b"[" * 5000 + b"]" * 5000,
        b'{"results": [{"image": "https://x.example/a.jpg", "width": 1e400}]',
        b'{"results": [{"image": "https://x.example/a.jpg", "width": 1e400}]}',
        b"AF_initDataCallback({key: 'ds:1', data:" + b"[" * 3000 + b"]" * 3000 + b"});",
        b"AF_initDataCallback({key: 'ds:1', data:" + b"[0," * 900 + b"0" + b"]" * 900 + b"});",
        "<p>\u00e9\u4e2d\U0001f600</p>".encode("utf-16"),
    ],
)
def test_parsers_never_crash(engine, content):
    hits = parse_page(engine, content)
    assert isinstance(hits, list)
    assert all(canonical_url(h.image_url) for h in hits)


def test_parse_page_dispatch_and_unknown_engine():
    google = fixture("google_results.html")
    assert parse_page("google", google) == parse_google(google) != []
    assert parse_page("duckduckgo", fixture("ddg_i.json"))[0].width == 1000
    assert len(parse_page("bing", fixture("bing_results.html"))) == 4
    with pytest.raises(ValueError, match="bing, duckduckgo, google"):
        parse_page("yahoo", b"")


def test_read_page_dispatch():
    for name in ("google_basic.html", "google_consent.html"):
        page = read_page("google", fixture(name))
        assert page == ENGINES["google"].read_page(fixture(name))
    assert read_page("bing", fixture("bing_captcha.html")).page_class == "blocked"
    assert read_page("duckduckgo", fixture("ddg_i_empty.json")).page_class == "no_results"
    with pytest.raises(ValueError, match="bing, duckduckgo, google"):
        read_page("yahoo", b"")


def test_check_engines():
    assert check_engines(["google", "bing", "google"]) == ("google", "bing")
    assert check_engines("duckduckgo") == ("duckduckgo",)
    with pytest.raises(ValueError, match="known engines: bing, duckduckgo, google"):
        check_engines(["bing", "ddg"])
    with pytest.raises(ValueError, match="at least one"):
        check_engines([])
