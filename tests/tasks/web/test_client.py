"""tv100.tasks.web.client against real HTTP servers on 127.0.0.1.

The fault tests run twice: against `_FaultServer` (a small reference implementation of the fault
routes documented in docs/CONTRACTS.md, kept here so the HTTP layer can be tested on its own) and
against the project's `tv100.sandbox.server.SandboxServer`. Concurrency tests use `_GaugeServer`,
which counts requests in flight (the rate limit is tested in test_politeness.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from tv100.tasks.web.client import HttpClient, fetch_all
from tv100.tasks.web.config import Fetched, HttpConfig
from tv100.tasks.web.guard import OutboundGuard
from tv100.tasks.web.robots import ROBOTS, RobotsPolicy

LOOPBACK = "127.0.0.1"

pytestmark = pytest.mark.timeout(60)


# -- servers ---------------------------------------------------------------------------------


class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FaultHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, code: int, body: bytes = b"ok", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        q = dict(parse_qsl(parts.query))
        key = q.get("key")
        if parts.path == "/_fault/count":
            with self.server.lock:
                n = self.server.counts.get(key or "", 0)
            self._send(200, json.dumps({"count": n}).encode(), {"Content-Type": "application/json"})
            return
        seen = 0
        if key is not None:
            with self.server.lock:
                seen = self.server.counts[key] = self.server.counts.get(key, 0) + 1
        try:
            self._route(parts.path, q, seen)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, path: str, q: dict[str, str], seen: int) -> None:
        if path == "/_fault/status":
            code = int(q.get("code", "503"))
            if seen <= int(q.get("times", "1")):
                self._send(code, f"fault {code}".encode())
            else:
                self._send(200)
        elif path == "/_fault/429":
            if seen <= int(q.get("times", "1")):
                secs = int(q.get("retry_after", "1"))
                value = (
                    formatdate(time.time() + secs, usegmt=True) if q.get("http_date") else str(secs)
                )
                self._send(429, b"slow down", {"Retry-After": value})
            else:
                self._send(200)
        elif path == "/_fault/slow":
            time.sleep(float(q.get("seconds", "1")))
            self._send(200)
        elif path == "/_fault/slowbody":
            chunks, secs = int(q.get("chunks", "3")), float(q.get("seconds", "1"))
            self.send_response(200)
            self.send_header("Content-Length", str(chunks * 4))
            self.end_headers()
            for _ in range(chunks):
                self.wfile.write(b"tick")
                self.wfile.flush()
                time.sleep(secs)
        elif path == "/_fault/big":
            n = int(q.get("bytes", "0"))
            self.send_response(200)
            chunked = bool(q.get("nolength"))
            self.send_header(
                "Transfer-Encoding" if chunked else "Content-Length",
                "chunked" if chunked else str(n),
            )
            self.end_headers()
            piece = b"x" * 65536
            left = n
            while left > 0:
                part = piece[: min(left, len(piece))]
                left -= len(part)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        elif path == "/_fault/lying-length":
            self.send_response(200)
            self.send_header("Content-Length", q.get("declared", "100"))
            self.end_headers()
            self.wfile.write(b"y" * int(q.get("actual", "10")))
            self.wfile.flush()
            self.close_connection = True
        elif path == "/_fault/redirect":
            self._send(302, b"", {"Location": q["to"]})
        elif path == "/_fault/redirect-loop":
            n = int(q.get("n", "0"))
            self._send(302, b"", {"Location": f"redirect-loop?n={n + 1}"})
        elif path == "/_fault/notfound":
            self._send(404, b"not found")
        elif path == "/_fault/echo-headers":
            body = json.dumps(dict(self.headers.items())).encode()
            self._send(200, body, {"Content-Type": "application/json"})
        else:
            self._send(404, b"no such route")


class _FaultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _FaultHandler)
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}


class _FaultServer:
    """Reference implementation of the CONTRACTS.md fault routes (same interface as the sandbox)."""

    def __init__(self) -> None:
        self._httpd = _FaultHTTPServer()
        self.base_url = f"http://{LOOPBACK}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> _FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _GaugeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _GaugeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        g = self.server
        with g.lock:
            g.inflight += 1
            g.max_inflight = max(g.max_inflight, g.inflight)
        try:
            q = dict(parse_qsl(urlsplit(self.path).query))
            time.sleep(float(q.get("seconds", "0")))
        finally:
            with g.lock:
                g.inflight -= 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _GaugeServer(ThreadingHTTPServer):
    """Sleeps `seconds` per request and records the most requests in flight."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _GaugeHandler)
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.port = self.server_address[1]


@pytest.fixture(scope="module", params=["local", "sandbox"])
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    """Base URL of a server with the fault routes: the local reference one, then the sandbox."""
    server: Any
    if request.param == "sandbox":
        from tv100.sandbox.server import SandboxServer
        from tv100.sandbox.world import build_world

        server = SandboxServer(build_world(0))
    else:
        server = _FaultServer()
    with server:
        yield server.base_url.rstrip("/")


@pytest.fixture
def gauge() -> Iterator[_GaugeServer]:
    server = _GaugeServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# -- helpers ---------------------------------------------------------------------------------


def cfg(**overrides: Any) -> HttpConfig:
    """Small timeouts and backoffs; the loopback allow-listed unless overridden."""
    settings: dict[str, Any] = {
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "allow_hosts": (LOOPBACK,),
    }
    settings.update(overrides)
    return HttpConfig(**settings)


def get(
    url: str,
    config: HttpConfig,
    headers: dict[str, str] | None = None,
    robots: RobotsPolicy | None = ROBOTS,
) -> Fetched:
    async def main() -> Fetched:
        async with HttpClient(config, robots=robots) as client:
            return await client.get(url, headers=headers)

    return asyncio.run(main())


def key() -> str:
    return uuid.uuid4().hex


def server_count(base: str, k: str) -> int:
    """Requests the server saw for key `k`, read without tv100.tasks.web (and without proxies)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/_fault/count?key={k}", timeout=5) as resp:
        return int(json.loads(resp.read())["count"])


def port_of(base: str) -> int:
    port = urlsplit(base).port
    assert port is not None
    return port


def retry_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tv100.http" and r.levelno == logging.DEBUG and "retry" in r.getMessage()
    ]


# -- retries ---------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_waited_for(base: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="tv100.http")
    k = key()
    f = get(f"{base}/_fault/429?times=1&retry_after=1&key={k}", cfg())
    assert f.status == "ok", f.error_message
    assert f.http_status == 200 and b"ok" in f.content
    assert f.attempts == 2
    assert f.elapsed_s >= 0.95  # the 1 s Retry-After, not the 0.01 s backoff
    assert server_count(base, k) == 2
    logs = retry_logs(caplog)
    assert len(logs) == 1
    assert "HTTP 429" in logs[0] and "Retry-After" in logs[0]


def test_429_retry_after_as_http_date(base: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="tv100.http")
    k = key()
    f = get(f"{base}/_fault/429?times=1&retry_after=2&http_date=1&key={k}", cfg())
    assert f.status == "ok", f.error_message
    assert f.attempts == 2
    # An HTTP date has 1 s resolution: the wait is in (1, 2] s, far above any backoff.
    assert f.elapsed_s >= 0.9
    logs = retry_logs(caplog)
    assert len(logs) == 1 and "Retry-After" in logs[0]


def test_retry_after_longer_than_max_fails_without_waiting(base: str):
    k = key()
    f = get(f"{base}/_fault/429?times=1&retry_after=30&key={k}", cfg(max_retry_after_s=5))
    assert f.status == "http_error"
    assert f.http_status == 429
    assert f.attempts == 1
    assert f.error_message is not None and "max_retry_after_s" in f.error_message
    assert server_count(base, k) == 1


def test_503_then_ok(base: str):
    k = key()
    f = get(f"{base}/_fault/status?code=503&times=2&key={k}", cfg())
    assert f.status == "ok", f.error_message
    assert f.attempts == 3
    assert server_count(base, k) == 3


@pytest.mark.parametrize("code", [500, 502, 504])
def test_other_retry_statuses_are_retried(base: str, code: int):
    k = key()
    f = get(f"{base}/_fault/status?code={code}&times=1&key={k}", cfg())
    assert (f.status, f.attempts) == ("ok", 2)
    assert server_count(base, k) == 2


def test_503_gives_up_after_retries(base: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="tv100.http")
    k = key()
    f = get(f"{base}/_fault/status?code=503&times=10&key={k}", cfg(retries=2))
    assert f.status == "http_error"
    assert f.http_status == 503
    assert f.attempts == 3
    assert f.error_message is not None and "gave up after 3 attempts" in f.error_message
    assert b"503" in f.content  # the error page is kept (up to a small limit)
    assert server_count(base, k) == 3
    assert len(retry_logs(caplog)) == 2  # one debug line per retry


def test_retry_statuses_is_configurable(base: str):
    k = key()
    f = get(f"{base}/_fault/status?code=503&times=1&key={k}", cfg(retry_statuses=(429,)))
    assert (f.status, f.http_status, f.attempts) == ("http_error", 503, 1)
    assert server_count(base, k) == 1


@pytest.mark.parametrize("code", [403, 410])
def test_other_4xx_are_not_retried(base: str, code: int):
    k = key()
    f = get(f"{base}/_fault/status?code={code}&times=5&key={k}", cfg())
    assert (f.status, f.http_status, f.attempts) == ("http_error", code, 1)
    assert server_count(base, k) == 1


def test_404_is_not_retried(base: str):
    k = key()
    f = get(f"{base}/_fault/notfound?key={k}", cfg())
    assert f.status == "http_error"
    assert f.http_status == 404
    assert f.attempts == 1
    assert f.error_message is not None and "404" in f.error_message
    assert server_count(base, k) == 1


# -- timeouts --------------------------------------------------------------------------------


def test_slow_response_times_out_and_is_retried(base: str):
    f = get(f"{base}/_fault/slow?seconds=3", cfg(timeout_s=0.5, retries=1))
    assert f.status == "timeout"
    assert f.attempts == 2
    assert f.http_status is None and f.content == b""


def test_timeout_is_total_not_per_read(base: str):
    # Each chunk arrives within 0.3 s (< timeout_s), but the body takes ~1.8 s in all.
    f = get(f"{base}/_fault/slowbody?seconds=0.3&chunks=6", cfg(timeout_s=0.8, retries=0))
    assert f.status == "timeout"
    assert f.attempts == 1


def test_connection_refused_is_an_error_value(base: str):
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        free_port = s.getsockname()[1]
    f = get(f"http://{LOOPBACK}:{free_port}/", cfg(retries=1), robots=None)
    assert f.status == "error"
    assert f.attempts == 2
    assert f.error_message is not None and "connection" in f.error_message.lower()


def test_connection_refused_with_robots_txt_is_the_robots_reads_error():
    """A host that is down: its robots.txt cannot be read, so the URL is not requested and
    ends with that read's status (`error`), not as a robots rule."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        free_port = s.getsockname()[1]
    f = get(f"http://{LOOPBACK}:{free_port}/a.jpg", cfg(retries=1))
    assert (f.status, f.attempts, f.http_status) == ("error", 0, None)
    assert f.error_message is not None
    assert f.error_message.startswith(f"robots.txt of http://{LOOPBACK}:{free_port} could not")
    assert "connection error" in f.error_message and "gave up after 2 attempts" in f.error_message


# -- size cap --------------------------------------------------------------------------------


def test_too_large_by_content_length_reads_no_body(base: str, body_bytes_read: list[int]):
    # robots.txt off: its body would be read, and this counts every body byte read.
    f = get(f"{base}/_fault/big?bytes={16 * 1024 * 1024}", cfg(max_bytes=256 * 1024),
            robots=None)
    assert f.status == "too_large"
    assert f.attempts == 1 and f.content == b""
    assert f.error_message is not None and "max_bytes=262144" in f.error_message
    assert sum(body_bytes_read) == 0


def test_too_large_chunked_stops_early(base: str, body_bytes_read: list[int]):
    f = get(f"{base}/_fault/big?bytes={16 * 1024 * 1024}&nolength=1", cfg(max_bytes=256 * 1024))
    assert f.status == "too_large"
    assert f.attempts == 1 and f.content == b""
    assert 256 * 1024 < sum(body_bytes_read) < 1024 * 1024  # stopped soon after the cap


@pytest.mark.parametrize("nolength", ["", "&nolength=1"])
def test_body_under_the_cap_is_ok(base: str, nolength: str):
    f = get(f"{base}/_fault/big?bytes=100000{nolength}", cfg(max_bytes=100000))
    assert f.status == "ok", f.error_message
    assert len(f.content) == 100000


def test_lying_content_length_is_an_error_not_a_hang(base: str):
    # Decision: a body shorter than its Content-Length is a truncated transfer, handled like a
    # dropped connection: `error`, retried, never `ok` with a short body.
    f = get(f"{base}/_fault/lying-length?declared=100000&actual=10", cfg(retries=1))
    assert f.status == "error"
    assert f.attempts == 2
    assert f.content == b""
    assert f.error_message is not None and "connection error" in f.error_message


# -- redirects -------------------------------------------------------------------------------


def test_redirect_is_followed(base: str):
    target = f"{base}/_fault/echo-headers"
    f = get(f"{base}/_fault/redirect?to={quote(target, safe='')}", cfg())
    assert f.status == "ok", f.error_message
    assert f.final_url == target
    assert f.url != f.final_url
    assert f.attempts == 1


def test_redirect_loop_stops_at_the_limit(base: str):
    f = get(f"{base}/_fault/redirect-loop?n=0", cfg(max_redirects=3))
    assert f.status == "http_error"
    assert f.http_status == 302
    assert f.attempts == 1
    assert f.error_message is not None
    assert "max_redirects=3" in f.error_message and "redirect" in f.error_message
    assert "n=3" in f.final_url  # hops n=0..3 fetched, the 4th redirect refused


def test_redirect_not_followed_when_disabled(base: str):
    target = f"{base}/_fault/notfound"
    f = get(f"{base}/_fault/redirect?to={quote(target, safe='')}", cfg(follow_redirects=False))
    assert (f.status, f.http_status) == ("http_error", 302)
    assert f.headers["location"] == target


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:9/",  # same host, another port: not in allow_hosts (host:port entry)
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "ftp://example.com/x",
    ],
)
def test_redirect_to_forbidden_target_is_blocked(base: str, target: str):
    config = cfg(allow_hosts=(f"{LOOPBACK}:{port_of(base)}",))
    f = get(f"{base}/_fault/redirect?to={quote(target, safe='')}", config)
    assert f.status == "blocked", f.error_message
    assert f.final_url.rstrip("/") == str(httpx.URL(target)).rstrip("/")
    assert f.attempts == 1  # the first hop was sent; the blocked one was not


def test_credentials_are_dropped_when_a_redirect_leaves_the_origin(base: str):
    headers = {"Authorization": "Bearer secret", "X-Trace": "1"}
    config = cfg(allow_hosts=(LOOPBACK, "localhost"))
    same = f"{base}/_fault/echo-headers"
    other = f"http://localhost:{port_of(base)}/_fault/echo-headers"

    f_same = get(f"{base}/_fault/redirect?to={quote(same, safe='')}", config, headers)
    f_other = get(f"{base}/_fault/redirect?to={quote(other, safe='')}", config, headers)
    assert f_same.status == f_other.status == "ok"
    seen_same = {k.lower() for k in json.loads(f_same.content)}
    seen_other = {k.lower() for k in json.loads(f_other.content)}
    assert {"authorization", "x-trace"} <= seen_same
    assert "x-trace" in seen_other and "authorization" not in seen_other


# -- outbound safety -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
        "http://240.0.0.1/",
        "http://127.0.0.1/",  # the loopback is only reachable when allow-listed
        "ftp://example.com/x",
        "file:///etc/passwd",
    ],
)
def test_private_targets_are_blocked_without_network(url: str, monkeypatch: pytest.MonkeyPatch):
    async def no_send(*args: Any, **kwargs: Any) -> httpx.Response:
        raise AssertionError("a request was sent")

    async def no_dns(*args: Any, **kwargs: Any) -> list[str]:
        raise AssertionError("DNS was queried")

    monkeypatch.setattr(httpx.AsyncClient, "send", no_send)
    monkeypatch.setattr(OutboundGuard, "resolve", no_dns)
    f = get(url, cfg(allow_hosts=()))
    assert f.status == "blocked", f.error_message
    assert f.attempts == 0
    assert f.http_status is None and f.content == b""
    assert f.error_message


@pytest.mark.parametrize("url", ["http://localhost:9/", "http://2130706433:9/"])
def test_names_resolving_to_loopback_are_blocked(url: str, monkeypatch: pytest.MonkeyPatch):
    async def no_send(*args: Any, **kwargs: Any) -> httpx.Response:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(httpx.AsyncClient, "send", no_send)
    f = get(url, cfg(allow_hosts=()))
    assert f.status == "blocked", f.error_message
    assert f.error_message is not None and "loopback" in f.error_message


def test_loopback_not_allow_listed_is_blocked_and_never_reached(base: str):
    k = key()
    f = get(f"{base}/_fault/notfound?key={k}", cfg(allow_hosts=()))
    assert f.status == "blocked"
    assert f.error_message is not None and "allow_hosts" in f.error_message
    assert server_count(base, k) == 0


def test_allow_hosts_with_port_only_allows_that_port(base: str):
    ok = get(f"{base}/_fault/echo-headers", cfg(allow_hosts=(f"{LOOPBACK}:{port_of(base)}",)))
    other = get(f"{base}/_fault/echo-headers", cfg(allow_hosts=(f"{LOOPBACK}:1",)))
    assert ok.status == "ok"
    assert other.status == "blocked"


# -- errors as values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["not a url", "http://", "http://exa mple.com/", "http://[::1/", "http://a..b/"]
)
def test_bad_urls_are_error_values(url: str, monkeypatch: pytest.MonkeyPatch):
    async def no_dns(*args: Any, **kwargs: Any) -> list[str]:
        raise AssertionError("DNS was queried")

    monkeypatch.setattr(OutboundGuard, "resolve", no_dns)
    f = get(url, cfg())
    assert f.status in {"error", "blocked"}
    assert f.attempts == 0
    assert f.error_message


def test_dns_failure_is_an_error_value_and_not_retried(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []

    async def fail(self: OutboundGuard, host: str, port: int) -> list[str]:
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(OutboundGuard, "resolve", fail)
    f = get("http://no-such-host.invalid/", cfg(allow_hosts=()))
    assert f.status == "error"
    assert f.error_message is not None and "DNS" in f.error_message
    assert f.attempts == 1 and calls == ["no-such-host.invalid"]


def test_temporary_dns_failure_is_retried(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []

    async def fail(self: OutboundGuard, host: str, port: int) -> list[str]:
        calls.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(OutboundGuard, "resolve", fail)
    f = get("http://flaky.invalid/", cfg(allow_hosts=(), retries=2))
    assert f.status == "error"
    assert f.attempts == 3 and len(calls) == 3


def test_get_outside_context_raises():
    async def main() -> None:
        await HttpClient(cfg()).get("http://127.0.0.1/")

    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(main())


def test_user_agent_names_tv100(base: str):
    f = get(f"{base}/_fault/echo-headers", cfg())
    assert f.status == "ok"
    headers = {k.lower(): v for k, v in json.loads(f.content).items()}
    assert headers["user-agent"].startswith("tv100/")
    assert headers["user-agent"] == HttpConfig().user_agent
    assert "content-type" in f.headers  # response headers come back with lower-case keys


# -- concurrency -----------------------------------------------------------------------------


def test_per_host_concurrency_is_bounded(gauge: _GaugeServer):
    url = f"http://{LOOPBACK}:{gauge.port}/slow?seconds=0.2"
    results = fetch_all([url] * 8, cfg(per_host=2, max_connections=8))
    assert all(r.status == "ok" for r in results)
    assert gauge.max_inflight == 2  # never more, and the bound was actually reached


def test_global_concurrency_is_bounded_across_hosts(gauge: _GaugeServer):
    urls = [
        f"http://{host}:{gauge.port}/slow?seconds=0.2"
        for host in (LOOPBACK, "localhost")
        for _ in range(4)
    ]
    config = cfg(per_host=2, max_connections=3, allow_hosts=(LOOPBACK, "localhost"))
    results = fetch_all(urls, config)
    assert all(r.status == "ok" for r in results), [r.error_message for r in results]
    assert gauge.max_inflight == 3


def test_fetch_all_preserves_input_order(base: str):
    urls = [
        f"{base}/_fault/slow?seconds=0.3",
        f"{base}/_fault/notfound",
        f"{base}/_fault/slow?seconds=0.1",
        "http://10.0.0.1/",
        f"{base}/_fault/slow?seconds=0",
    ]
    results = fetch_all(urls, cfg(max_connections=8, per_host=8))
    assert [r.url for r in results] == urls
    assert [r.status for r in results] == ["ok", "http_error", "ok", "blocked", "ok"]
    assert fetch_all([], cfg()) == []
