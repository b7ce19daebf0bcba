"""A real HTTP server for the offline sandbox (stdlib `ThreadingHTTPServer`).

`SandboxServer(world)` serves the made-up IMDb of `tv100.sandbox.world` (list pages, title pages,
the TSV datasets, see `sandbox.imdb`), the fault routes of `sandbox.faults`, and the robots rules
of `sandbox.robots` (``/robots.txt``, the opt-out forms under ``/optout/``), on a loopback
port, from a background thread. Later parts of the sandbox (image-search engines, an image
host) plug in with `SandboxServer.register(prefix, handler)`.

A handler is any callable ``handler(request: Request) -> Response | None``. The longest
registered prefix matching the request path wins; ``None`` means 404. `Response` can describe
misbehaving servers too: a delay before the headers, a body sent as chunks with a delay
before each chunk, a Content-Length that does not match the body, and closing the
connection after sending.

HTTP/1.1 keep-alive is used whenever the response has a Content-Length or is sent with
chunked transfer encoding and does not ask to close. Requests are logged to
`SandboxServer.request_log` (in memory), never to stderr.
"""

from __future__ import annotations

import collections
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tv100.sandbox.world import World


@dataclass
class Request:
    """What a route handler sees of one HTTP request.

    Attributes:
        method: "GET", "HEAD", "POST", ...
        path: the URL path, percent-decoding not applied (e.g. "/de/title/tt1234567/").
        query: query parameters, first value of each (blank values kept as "").
        headers: request headers with lower-cased names.
        raw_target: the request target as sent (path and query).
        base_url: "http://host:port" as the client addressed the server (Host header).
        body: request body (empty for GET).
        query_lists: every value of each query parameter.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_target: str
    base_url: str
    body: bytes = b""
    query_lists: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Response:
    """What a route handler answers.

    Attributes:
        status: HTTP status code.
        headers: response headers (Content-Length and Transfer-Encoding are managed here).
        body: the body, when `chunks` is None.
        chunks: an iterable of body pieces, sent one after the other; without
            `content_length` they are sent with chunked transfer encoding.
        chunk_delay: seconds to wait before sending each chunk.
        delay: seconds to wait before sending the status line and headers.
        content_length: sent as Content-Length instead of the real body length (to lie).
        close: close the connection after sending (adds "Connection: close").
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Iterable[bytes] | None = None
    chunk_delay: float = 0.0
    delay: float = 0.0
    content_length: int | None = None
    close: bool = False

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        """A small text response with a charset."""
        return cls(
            status=status,
            headers={"Content-Type": f"{content_type}; charset=utf-8"},
            body=text.encode("utf-8"),
        )

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        """A JSON response."""
        import json

        body = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return cls(status=status, headers={"Content-Type": "application/json"}, body=body)


Handler = Callable[[Request], "Response | None"]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: SandboxServer) -> None:
        self.owner = owner
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # client went away: not a sandbox bug
            return
        self.owner._record_error(traceback.format_exc())


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tv100-sandbox/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are dropped after this many seconds
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:  # headers and body go out in separate writes: avoid Nagle/delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        self.server.owner._log(format % args)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_POST(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        owner = self.server.owner
        body = b""
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            body = self.rfile.read(int(length))
        split = urlsplit(self.path)
        lists = parse_qs(split.query, keep_blank_values=True)
        host = self.headers.get("Host") or f"{owner.host}:{owner.port}"
        request = Request(
            method=self.command,
            path=split.path or "/",
            query={k: v[0] for k, v in lists.items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_target=self.path,
            base_url=f"http://{host}",
            body=body,
            query_lists=lists,
        )
        try:
            response = owner.route(request)
        except Exception:  # a handler bug: answer 500 and keep the trace for tests
            owner._record_error(traceback.format_exc())
            response = Response.text("internal error in sandbox handler\n", status=500)
        try:
            self._send(response, head)
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True

    def _send(self, response: Response, head: bool) -> None:
        owner = self.server.owner
        if response.delay > 0 and owner._stopping.wait(response.delay):
            self.close_connection = True
            return
        self.send_response(response.status)
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
        }
        lowered = {k.lower() for k in headers}
        chunked = False
        no_body = response.status in (204, 304) or 100 <= response.status < 200
        if response.content_length is not None:
            headers["Content-Length"] = str(response.content_length)
        elif response.chunks is not None:
            chunked = True
            headers["Transfer-Encoding"] = "chunked"
        elif not no_body:
            headers["Content-Length"] = str(len(response.body))
        if "content-type" not in lowered and not no_body:
            headers["Content-Type"] = "application/octet-stream"
        if response.close or self.close_connection:
            headers["Connection"] = "close"
            self.close_connection = True
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head or no_body:
            return
        if response.chunks is None:
            self.wfile.write(response.body)
            self.wfile.flush()
            return
        for chunk in response.chunks:
            if response.chunk_delay > 0 and owner._stopping.wait(response.chunk_delay):
                self.close_connection = True
                return
            if not chunk:
                continue
            if chunked:
                self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
            else:
                self.wfile.write(chunk)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()


class SandboxServer:
    """The sandbox HTTP server: IMDb-like site, datasets and fault routes.

    Args:
        world: the ground truth to serve.
        host: interface to bind (loopback by default).
        port: port to bind; 0 picks a free one.

    Use as a context manager (``with SandboxServer(world) as srv: srv.base_url``) or call
    `start` and `stop`.
    """

    def __init__(self, world: World, host: str = "127.0.0.1", port: int = 0) -> None:
        from tv100.sandbox.faults import FaultRoutes
        from tv100.sandbox.imdb import ImdbSite
        from tv100.sandbox.imdb_datasets import DatasetSite
        from tv100.sandbox.robots import OptOutSite, robots_response

        self.world = world
        self.host = host
        self._requested_port = port
        self.port = port
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.request_log: collections.deque[str] = collections.deque(maxlen=10_000)
        self.errors: list[str] = []
        self.imdb = ImdbSite(world)
        self.faults = FaultRoutes()
        self.datasets = DatasetSite(world)
        for prefix in self.imdb.prefixes:
            self.register(prefix, self.imdb.handle)
        for prefix in self.datasets.prefixes:
            self.register(prefix, self.datasets.handle)
        self.register(self.faults.prefix, self.faults.handle)
        self.optout = OptOutSite()
        self.register("/robots.txt", robots_response)
        self.register(self.optout.prefix, self.optout.handle)

    # ------------------------------------------------------------------ routing
    def register(self, prefix: str, handler: Handler) -> None:
        """Route every path starting with `prefix` to `handler` (longest prefix wins).

        Registering the same prefix again replaces the handler.
        """
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        with self._lock:
            self._routes[prefix] = handler

    def route(self, request: Request) -> Response:
        """The response of the handler whose prefix matches `request` (404 when none)."""
        with self._lock:
            matches = [p for p in self._routes if request.path.startswith(p)]
            handler = self._routes[max(matches, key=len)] if matches else None
        response = handler(request) if handler is not None else None
        if response is None:
            return Response.text(f"not found: {request.path}\n", status=404)
        return response

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("SandboxServer is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        """Bind and serve from a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-http-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _log(self, line: str) -> None:
        self.request_log.append(line)

    def _record_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


def iter_repeated(total: int, piece: bytes = b"0123456789abcdef" * 4096) -> Iterator[bytes]:
    """Yield `total` bytes made of `piece` repeated, in chunks of len(piece)."""
    left = total
    while left > 0:
        n = min(left, len(piece))
        yield piece[:n]
        left -= n
