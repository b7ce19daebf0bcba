"""tv100.tasks.web.client against hostile servers: every answer ends as a status, bounded by a
parameter.

- gzip/deflate bombs (``Content-Encoding: gzip`` inflating far past `max_bytes`, stacked
  ``gzip, gzip``, in error pages too): `too_large`, and never more than the cap inflated;
- endless and trickling bodies and headers: `too_large` (`max_bytes`) or `timeout`
  (`timeout_s`, a total limit);
- invalid UTF-8 in bodies and headers: kept as bytes / decoded leniently, `ok`;
- malformed or oversized status lines and headers, from a raw socket server: `error`
  (httpcore's h11 caps a header block at 100 KiB);
- redirect chains and loops: followed up to `max_redirects`, then `http_error`;
- a hostile robots.txt (every malformed answer above, a gzip bomb): the page ends as a
  status value, never an exception, and is not requested when robots.txt got no answer.

The hostile server answers every path, robots.txt included, with the hostile reply, so the
cases that are about the page request use a client with robots.txt off (``robots=None``).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.reliability import record
from tv100.sandbox.server import Response
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import Fetched, HttpConfig
from tv100.tasks.web.robots import ROBOTS, RobotsPolicy

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
#: A fetch that must end at its time limit ends well within this; the faults below would
#: otherwise never end (endless trickles) or end much later (`MUTE_S`). A bound that tells
#: "ended" from "never", not a speed requirement: a busy machine stays far inside it.
HANG_S = 15.0
MUTE_S = 60.0


def get(url: str, config: HttpConfig, *, robots: RobotsPolicy | None = None) -> Fetched:
    """GET `url` with robots.txt off unless `robots` is given (see the module docstring)."""

    async def main() -> Fetched:
        async with HttpClient(config, robots=robots) as client:
            return await client.get(url)

    return asyncio.run(main())


def cfg(host: str, **kw: Any) -> HttpConfig:
    base: dict[str, Any] = dict(
        timeout_s=5.0,
        connect_timeout_s=2.0,
        retries=0,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        allow_hosts=(host,),
    )
    base.update(kw)
    return HttpConfig(**base)


def compress(data_size: int, layers: int = 1, wbits: int = 16 + zlib.MAX_WBITS) -> bytes:
    """`data_size` zero bytes compressed `layers` times (streamed: never held inflated)."""
    obj = zlib.compressobj(9, zlib.DEFLATED, wbits)
    piece = bytes(MIB)
    parts = [obj.compress(piece) for _ in range(data_size // MIB)]
    parts.append(obj.compress(bytes(data_size % MIB)))
    parts.append(obj.flush())
    body = b"".join(parts)
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


@pytest.fixture(scope="module")
def site(sandbox) -> Iterator[tuple[str, dict[str, Callable[[], Response]]]]:
    """Routes under /_hostile/<name> on the shared sandbox server (built per test)."""
    routes: dict[str, Callable[[], Response]] = {}

    def handler(request: Any) -> Response | None:
        make = routes.get(request.path.removeprefix("/_hostile/"))
        return make() if make else None

    sandbox.register("/_hostile/", handler)
    yield sandbox.base_url, routes
    routes.clear()


def host_of(base: str) -> str:
    return base.split("://", 1)[1]


# -- compression bombs ------------------------------------------------------------------------

BOMBS = {
    # name: (inflated size, layers, Content-Encoding, wbits)
    "gzip 64 MiB": (64 * MIB, 1, "gzip", 16 + zlib.MAX_WBITS),
    "x-gzip 64 MiB": (64 * MIB, 1, "x-gzip", 16 + zlib.MAX_WBITS),
    "deflate (zlib) 64 MiB": (64 * MIB, 1, "deflate", zlib.MAX_WBITS),
    "deflate (raw) 64 MiB": (64 * MIB, 1, "deflate", -zlib.MAX_WBITS),
    "gzip, gzip 1 GiB": (1024 * MIB, 2, "gzip, gzip", 16 + zlib.MAX_WBITS),
    "gzip, gzip, gzip 1 GiB": (1024 * MIB, 3, "gzip, gzip, gzip", 16 + zlib.MAX_WBITS),
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    made: dict[tuple[int, int, int], bytes] = {}
    out = {}
    for name, (size, layers, _, wbits) in BOMBS.items():
        inner = made.get((size, 1, wbits))
        if inner is None:
            inner = made[(size, 1, wbits)] = compress(size, 1, wbits)
        body = inner
        for _ in range(layers - 1):
            body = gzip.compress(body, 9)
        out[name] = body
    return out


@pytest.mark.parametrize("name", list(BOMBS))
@pytest.mark.parametrize("chunked", [False, True])
def test_compression_bomb_is_too_large_and_never_inflated(
    name: str, chunked: bool, site, bombs, body_bytes_read: list[int]
):
    base, routes = site
    body = bombs[name]
    encoding = BOMBS[name][2]
    routes["bomb"] = lambda: Response(
        200,
        {"Content-Encoding": encoding, "Content-Type": "image/jpeg"},
        body=b"" if chunked else body,
        chunks=[body[i : i + 8192] for i in range(0, len(body), 8192)] if chunked else None,
    )
    limit = MIB
    tracemalloc.start()
    try:
        f = get(f"{base}/_hostile/bomb", cfg(host_of(base), max_bytes=limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record("http", f"compression bomb: {name} in {len(body)} B", f.status)
    assert f.status == "too_large", (f.status, f.error_message)
    assert f.error_message and f"max_bytes={limit}" in f.error_message
    assert sum(body_bytes_read) <= limit
    assert peak < 24 * MIB, f"{peak / MIB:.0f} MiB allocated while reading a {limit} B cap"


def test_bomb_in_an_error_page_keeps_a_bounded_prefix(site, bombs, body_bytes_read: list[int]):
    base, routes = site
    routes["bomb404"] = lambda: Response(
        404, {"Content-Encoding": "gzip, gzip"}, bombs["gzip, gzip 1 GiB"]
    )
    f = get(f"{base}/_hostile/bomb404", cfg(host_of(base)))
    record("http", "compression bomb in a 404 page", f.status)
    assert (f.status, f.http_status) == ("http_error", 404)
    assert len(f.content) <= 64 * 1024 and sum(body_bytes_read) <= 64 * 1024


def test_bomb_in_a_redirect_body_is_skipped(site, bombs):
    base, routes = site
    routes["plain"] = lambda: Response.text("plain")
    routes["bomb302"] = lambda: Response(
        302,
        {"Content-Encoding": "gzip", "Location": f"{base}/_hostile/plain"},
        bombs["gzip 64 MiB"],
    )
    f = get(f"{base}/_hostile/bomb302", cfg(host_of(base)))
    record("http", "compression bomb in a redirect body", f.status)
    assert f.status == "ok" and f.content == b"plain"


def test_too_many_stacked_codings_are_refused(site):
    base, routes = site
    body = b"x"
    for _ in range(5):
        body = gzip.compress(body)
    routes["stacked"] = lambda: Response(200, {"Content-Encoding": ", ".join(["gzip"] * 5)}, body)
    f = get(f"{base}/_hostile/stacked", cfg(host_of(base)))
    record("http", "5 stacked Content-Encodings", f.status)
    assert f.status == "error" and f.error_message and "stacked" in f.error_message


@pytest.mark.parametrize(
    ("name", "encoding", "body", "expected"),
    [
        ("gzip", "gzip", gzip.compress(b"hello " * 1000), b"hello " * 1000),
        ("gzip, gzip", "gzip, gzip", gzip.compress(gzip.compress(b"abc" * 99)), b"abc" * 99),
        ("deflate", "deflate", zlib.compress(b"z" * 5000), b"z" * 5000),
        ("identity", "identity", b"as is", b"as is"),
        ("trailing junk", "gzip", gzip.compress(b"data") + b"JUNK", b"data"),
        ("unknown coding passes through", "br", b"\x1b\x00\x00raw", b"\x1b\x00\x00raw"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_legitimate_compression_still_decodes(name, encoding, body, expected, site):
    base, routes = site
    routes["enc"] = lambda: Response(200, {"Content-Encoding": encoding}, body)
    # The cap applies to the wire (Content-Length) and to the decoded body: exactly at both.
    limit = max(len(expected), len(body))
    f = get(f"{base}/_hostile/enc", cfg(host_of(base), max_bytes=limit))
    record("http", "legitimate Content-Encoding under the cap", f.status)
    assert f.status == "ok", f.error_message
    assert f.content == expected


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("not gzip at all", b"this is not gzip data"),
        ("gzip header, invalid block type", gzip.compress(b"x" * 100)[:10] + b"\x07" * 50),
        ("bad gzip magic", b"\x1f\x8c" + gzip.compress(b"x")[2:]),
    ],
    ids=["not-gzip", "invalid-block", "bad-magic"],
)
def test_corrupt_compressed_body_is_an_error(name, body, site):
    base, routes = site
    routes["corrupt"] = lambda: Response(200, {"Content-Encoding": "gzip"}, body)
    f = get(f"{base}/_hostile/corrupt", cfg(host_of(base)))
    record("http", "corrupt gzip body", f.status)
    assert f.status == "error" and f.content == b""


def test_truncated_gzip_body_does_not_hang(site):
    base, routes = site
    body = gzip.compress(bytes(range(256)) * 400)
    routes["truncgz"] = lambda: Response(200, {"Content-Encoding": "gzip"}, body[: len(body) // 2])
    f = get(f"{base}/_hostile/truncgz", cfg(host_of(base)))
    record("http", "truncated gzip body", f.status)
    assert f.status in ("ok", "error")  # what was inflated, or a decoding error; never a hang


# -- endless and slow bodies ------------------------------------------------------------------


def test_endless_chunked_body_stops_at_max_bytes(site, body_bytes_read: list[int]):
    base, routes = site
    routes["endless"] = lambda: Response(200, chunks=itertools.repeat(b"y" * 65536))
    f = get(f"{base}/_hostile/endless", cfg(host_of(base), max_bytes=2 * MIB))
    record("http", "endless chunked body", f.status)
    assert f.status == "too_large"
    assert sum(body_bytes_read) < 3 * MIB


def test_endless_body_with_a_huge_declared_length_is_refused_unread(
    site, body_bytes_read: list[int]
):
    base, routes = site
    routes["huge"] = lambda: Response(
        200, chunks=itertools.repeat(b"y" * 65536), content_length=10**12
    )
    f = get(f"{base}/_hostile/huge", cfg(host_of(base), max_bytes=MIB))
    record("http", "Content-Length of 1 TB", f.status)
    assert f.status == "too_large" and sum(body_bytes_read) == 0


@pytest.mark.parametrize("timeout_s", [0.8, 1.5])
def test_trickling_body_times_out_at_timeout_s(timeout_s: float, site):
    base, routes = site
    routes["trickle"] = lambda: Response(200, chunks=itertools.repeat(b"."), chunk_delay=0.1)
    f = get(f"{base}/_hostile/trickle", cfg(host_of(base), timeout_s=timeout_s, retries=1))
    record("http", "body trickling 10 B/s forever", f.status)
    assert f.status == "timeout" and f.attempts == 2
    assert f.elapsed_s < 2 * timeout_s + HANG_S


def test_headers_never_sent_time_out(site):
    base, routes = site
    routes["mute"] = lambda: Response(200, body=b"late", delay=MUTE_S)
    f = get(f"{base}/_hostile/mute", cfg(host_of(base), timeout_s=0.8))
    record("http", "server never sends headers", f.status)
    assert f.status == "timeout" and f.elapsed_s < HANG_S


# -- invalid UTF-8 ----------------------------------------------------------------------------


def test_invalid_utf8_body_is_kept_byte_for_byte(site):
    base, routes = site
    body = b"<html>\xff\xfe\xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80</html>"
    routes["utf8"] = lambda: Response(200, {"Content-Type": "text/html; charset=utf-8"}, body)
    f = get(f"{base}/_hostile/utf8", cfg(host_of(base)))
    record("http", "invalid UTF-8 body", f.status)
    assert f.status == "ok" and f.content == body


# -- a raw socket server for what no well-behaved server library will send ----------------------


class RawServer:
    """Answers each connection with the script registered for its request path.

    A script is bytes (sent, then the connection closes) or an iterable of (bytes, delay)
    pieces, sent one after the other.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, Any] = {}
        self.connections = 0
        self.paths: list[str] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                path = data.split(b" ", 2)[1].decode()
                self.paths.append(path)
                script = self.scripts.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n")
                if isinstance(script, bytes):
                    conn.sendall(script)
                    return
                for piece, delay in script:
                    if self._closed.is_set():
                        return
                    if delay:
                        time.sleep(delay)
                    conn.sendall(piece)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self.sock.close()


@pytest.fixture(scope="module")
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


def _endless_headers(delay: float) -> Iterator[tuple[bytes, float]]:
    yield b"HTTP/1.1 200 OK\r\n", 0.0
    for i in itertools.count():
        yield f"X-Filler-{i}: {'v' * 50}\r\n".encode(), delay


MALFORMED: dict[str, tuple[Any, set[str]]] = {
    # name: (script, acceptable statuses)
    "header line without colon": (b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\nok", {"error"}),
    "garbage status line": (b"FOO BAR BAZ\r\n\r\n", {"error"}),
    "status without code": (b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok", {"error"}),
    "HTTP/0.9 body without status": (b"<html>no status line</html>", {"error"}),
    "empty reply": (b"", {"error"}),
    "Content-Length not a number": (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok", {"error"}),
    "negative Content-Length": (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nok", {"error"}),
    "conflicting Content-Lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nok",
        {"error"},
    ),
    "broken chunk size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        {"error"},
    ),
    "unknown Transfer-Encoding": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
        {"error"},
    ),
    "NUL in a header value": (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
                              {"error"}),
    "space before colon": (b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok",
                           {"error"}),
    "one 200 KB header": (
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\nok",
        {"error"},
    ),
    "endless header block": (None, {"error"}),  # filled in below: a generator per request
    "truncated mid-headers": (b"HTTP/1.1 200 OK\r\nContent-Ty", {"error"}),
    "Content-Length longer than body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok",
                                        {"error"}),
    "status 999": (b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok", {"http_error", "error"}),
    "obs-text (latin-1) header value": (
        b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9 \xff\xfe\r\nContent-Length: 2\r\n\r\nok",
        {"ok"},
    ),
    "2,000 small headers": (
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(2000))
        + b"Content-Length: 2\r\n\r\nok",
        {"ok"},
    ),
    "100 Continue before the answer": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        {"ok"},
    ),
}


class _Endless:
    def __iter__(self) -> Iterator[tuple[bytes, float]]:
        return _endless_headers(0.0)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_responses_are_status_values(name: str, raw: RawServer):
    script, allowed = MALFORMED[name]
    path = "/" + quote(name.replace(" ", "-"), safe="-")
    raw.scripts[path] = _Endless() if script is None else script
    before = raw.connections
    f = get(f"http://127.0.0.1:{raw.port}{path}", cfg(f"127.0.0.1:{raw.port}", retries=1))
    record("http", f"malformed response: {name}", f.status)
    assert f.status in allowed, (f.status, f.error_message)
    assert f.attempts <= 2 and raw.connections - before <= 2
    if f.status != "ok":
        assert f.error_message


ROBOTS_BOMB = compress(64 * MIB)
HOSTILE_ROBOTS: dict[str, Any] = {
    **{name: script for name, (script, _) in MALFORMED.items()},
    "gzip bomb (64 MiB of zeros)": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(ROBOTS_BOMB)
    + ROBOTS_BOMB,
}
PAGE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage"


@pytest.mark.parametrize("name", list(HOSTILE_ROBOTS))
def test_hostile_robots_txt_leaves_the_page_a_status_value(name: str):
    """robots.txt is fetched first, by the same client: its hostile answer must end the page
    request as a status (the robots.txt problem named) or let it through, never raise."""
    server = RawServer()  # its own server: robots.txt is per origin and cached
    try:
        script = HOSTILE_ROBOTS[name]
        server.scripts["/robots.txt"] = _Endless() if script is None else script
        server.scripts["/page"] = PAGE
        host = f"127.0.0.1:{server.port}"
        f = get(f"http://{host}/page", cfg(host, retries=1), robots=ROBOTS)
    finally:
        server.close()
    record("http", f"hostile robots.txt: {name}", f.status)
    assert f.status in {"ok", "error", "timeout", "robots_disallowed"}, (f.status, f.error_message)
    if f.status == "ok":  # robots.txt was read (or judged absent): the page came through
        assert f.content == b"page"
    else:
        assert f.error_message and "robots.txt" in f.error_message, f.error_message
        assert "/page" not in server.paths  # refused before it was requested
    if name in MALFORMED and MALFORMED[name][1] == {"error"}:  # robots.txt got no answer
        assert f.status == "error" and f.attempts == 0
    assert server.paths.count("/robots.txt") <= 2  # read once per origin (one retry)


def test_trickled_endless_headers_time_out(raw: RawServer):
    class Slow:
        def __iter__(self) -> Iterator[tuple[bytes, float]]:
            return _endless_headers(0.05)

    raw.scripts["/slow-headers"] = Slow()
    f = get(f"http://127.0.0.1:{raw.port}/slow-headers",
            cfg(f"127.0.0.1:{raw.port}", timeout_s=1.0))
    record("http", "header lines trickled forever", f.status)
    assert f.status == "timeout" and f.elapsed_s < HANG_S


def test_header_values_are_decoded_leniently(raw: RawServer):
    raw.scripts["/latin1"] = MALFORMED["obs-text (latin-1) header value"][0]
    f = get(f"http://127.0.0.1:{raw.port}/latin1", cfg(f"127.0.0.1:{raw.port}"))
    assert f.status == "ok" and isinstance(f.headers["x-name"], str)


# -- redirect chains --------------------------------------------------------------------------


def _chain(base: str, n: int, final: str) -> str:
    url = final
    for _ in range(n):
        url = f"{base}/_fault/redirect?to={quote(url, safe='')}"
    return url


@pytest.mark.parametrize("max_redirects", [0, 2, 5])
def test_redirect_chains_are_bounded_by_max_redirects(max_redirects: int, sandbox):
    base = sandbox.base_url
    final = f"{base}/_fault/echo-headers"
    config = cfg(host_of(base), max_redirects=max_redirects)
    within = get(_chain(base, max_redirects, final), config)
    beyond = get(_chain(base, max_redirects + 1, final), config)
    loop = get(f"{base}/_fault/redirect-loop?n=0", config)
    for f in (within, beyond, loop):
        record("http", "redirect chain / loop", f.status)
    assert within.status == "ok" and within.final_url == final
    assert beyond.status == "http_error" and beyond.http_status == 302
    assert loop.status == "http_error" and f"n={max_redirects}" in loop.final_url


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_followed_and_rechecked(code: int, site):
    base, routes = site
    routes["done"] = lambda: Response.text("done")
    routes[f"r{code}"] = lambda: Response(code, {"Location": "/_hostile/done"})
    routes[f"out{code}"] = lambda: Response(code, {"Location": "http://10.0.0.1/"})
    ok = get(f"{base}/_hostile/r{code}", cfg(host_of(base)))
    out = get(f"{base}/_hostile/out{code}", cfg(host_of(base)))
    record("http", "relative redirect (301/302/303/307/308)", ok.status)
    record("ssrf", "redirect (301/302/303/307/308) to a private address", out.status)
    assert ok.status == "ok" and ok.content == b"done"
    assert out.status == "blocked"


@pytest.mark.parametrize(
    ("location", "allowed"),
    [
        ("http://[::1", {"error"}),
        ("http://exa mple.com/", {"error", "blocked"}),
        ("javascript:alert(1)", {"blocked", "error"}),
        ("", {"http_error"}),
        ("//10.0.0.1/x", {"blocked"}),
        ("http://" + "a" * 300 + ".com/", {"error"}),
    ],
)
def test_bad_redirect_locations_are_status_values(location: str, allowed: set[str], site):
    base, routes = site
    routes["badloc"] = lambda: Response(302, {"Location": location})
    f = get(f"{base}/_hostile/badloc", cfg(host_of(base)))
    record("http", "bad redirect Location", f.status)
    assert f.status in allowed, (f.status, f.error_message)
