"""HttpConfig validation and defaults; the Fetched result type."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tv100.tasks.web.config import Fetched, HttpConfig


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"connect_timeout_s": -1}, "connect_timeout_s"),
        ({"max_connections": 0}, "max_connections"),
        ({"per_host": 0}, "per_host"),
        ({"per_host": 9, "max_connections": 8}, "per_host"),
        ({"rate_per_host": 0}, "rate_per_host"),
        ({"retries": -1}, "retries"),
        ({"retries": 2.5}, "retries"),
        ({"backoff_base_s": -0.1}, "backoff_base_s"),
        ({"backoff_base_s": 2.0, "backoff_max_s": 1.0}, "backoff_max_s"),
        ({"max_retry_after_s": -1}, "max_retry_after_s"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_redirects": -1}, "max_redirects"),
        ({"retry_statuses": (99,)}, "retry_statuses"),
        ({"retry_statuses": 503}, "retry_statuses"),
        ({"user_agent": ""}, "user_agent"),
        ({"user_agent": "a\r\nX-Evil: 1"}, "user_agent"),
        ({"allow_hosts": "127.0.0.1"}, "allow_hosts"),
        ({"allow_hosts": ("http://127.0.0.1/",)}, "allow_hosts"),
        ({"follow_redirects": "yes"}, "follow_redirects"),
    ],
)
def test_config_validation_names_the_field(overrides: dict[str, Any], field: str):
    with pytest.raises(ValueError, match=field):
        HttpConfig(**overrides)


def test_config_defaults_and_normalisation():
    c = HttpConfig(allow_hosts=["LocalHost", " 127.0.0.1:8000 "], retry_statuses=[503, 429, 503])
    assert c.allow_hosts == ("localhost", "127.0.0.1:8000")
    assert c.retry_statuses == (429, 503)
    assert hash(c) == hash(
        HttpConfig(allow_hosts=("localhost", "127.0.0.1:8000"), retry_statuses=(429, 503))
    )
    d = HttpConfig()
    assert (d.timeout_s, d.connect_timeout_s, d.max_connections, d.per_host) == (20, 10, 32, 4)
    assert (d.retries, d.max_bytes, d.max_redirects, d.max_retry_after_s) == (3, 20 << 20, 5, 120)
    assert d.retry_statuses == (429, 500, 502, 503, 504)
    assert "tv100/" in d.user_agent and "github.com/tv100/tv100" in d.user_agent


def test_fetched_is_a_frozen_value():
    f = Fetched("http://a/", "http://a/", "ok", 200, {}, b"x", None, 1, 0.1)
    assert f.ok and not dataclasses.replace(f, status="timeout").ok
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.status = "error"  # type: ignore[misc]


def test_fetched_head_keeps_the_outcome_without_body_or_headers():
    f = Fetched("http://a/", "http://b/", "ok", 200, {"etag": "x" * 50}, b"y" * 100, None, 2, 0.3)
    head = f.head()
    assert (head.headers, head.content) == ({}, b"")
    assert head == dataclasses.replace(f, headers={}, content=b"")
    assert (f.headers, f.content) == ({"etag": "x" * 50}, b"y" * 100)  # the original intact
