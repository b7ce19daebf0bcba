"""URL canonicalisation and the lenient URL readers."""

from __future__ import annotations

import pytest

from tv100.tasks.web.urls import absolute_url, canonical_url, query_params


@pytest.mark.parametrize(
    "url,canonical",
    [
        ("HTTPS://Example.COM:443/A/b.JPG?X=1&y=2#frag", "https://example.com/A/b.JPG?X=1&y=2"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://example.com:80/x", "https://example.com:80/x"),
        ("//cdn.example.com/img/ab12", "https://cdn.example.com/img/ab12"),
        ("http://[::1]:80/x", "http://[::1]/x"),
        ("https://example.com/a b.jpg", "https://example.com/a%20b.jpg"),
        ("https://example.com/x?b=2&a=1", "https://example.com/x?b=2&a=1"),
        ("ftp://example.com/x.jpg", None),
        ("data:image/png;base64,AAAA", None),
        ("/relative/path.jpg", None),
        ("https://example.com:99999/x", None),
        ("https:///nohost", None),
        ("https://exa\nmple.com/x", None),
        ("", None),
    ],
)
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "value,expected",
    [
        ("//cdn.example.com/a b.jpg", "https://cdn.example.com/a%20b.jpg"),
        ("HTTP://Example.com:80/X", "HTTP://Example.com:80/X"),  # kept as given
        ("/relative.jpg", None),
        (42, None),
        (None, None),
    ],
)
def test_absolute_url(value, expected):
    assert absolute_url(value) == expected


def test_query_params():
    assert query_params("/images/search?view=detailV2&mediaurl=a%2Fb&x=1&x=2&e=") == {
        "view": "detailV2",
        "mediaurl": "a/b",
        "x": "1",
        "e": "",
    }
    assert query_params("http://[::1/x?a=1") == {}
