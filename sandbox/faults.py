"""Deterministic fault routes for HTTP-layer tests, under ``/_fault/``.

Routes (all parameters in the query string; `key` scopes state, default ""):

- ``status?code=503&times=N&key=K``: `code` for the first N requests with that key, then
  200 ``ok``.
- ``429?times=N&retry_after=S&key=K``: 429 with ``Retry-After: S`` (seconds) N times, then
  200 ``ok``; ``&http_date=1`` sends Retry-After as an HTTP date (now + S, rounded up).
- ``slow?seconds=S``: waits S seconds before sending anything, then 200 ``ok``.
- ``slowbody?seconds=S&chunks=N``: status and headers at once, then N chunks (chunked
  transfer encoding), waiting S seconds before each chunk.
- ``big?bytes=N``: 200 with N bytes of body and a Content-Length; ``&nolength=1`` sends the
  same body with chunked transfer encoding and no length.
- ``lying-length?declared=N&actual=M``: Content-Length N, M bytes sent, then the connection
  is closed.
- ``redirect?to=URL``: 302 to URL. ``redirect-loop?n=I``: 302 to ``redirect-loop?n=I+1``.
- ``notfound``: 404 always.
- ``count?key=K``: JSON ``{"count": n}``, the number of fault requests seen with that key
  (any fault route except ``count`` and ``reset``).
- ``reset?key=K``: forget the state of key K (JSON ``{"reset": K}``).
- ``echo-headers``: JSON object of the request headers, names lower-cased.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from email.utils import formatdate

from tv100.sandbox.server import Request, Response, iter_repeated


class FaultRoutes:
    """The `/_fault/` handler with its per-key, thread-safe state."""

    prefix = "/_fault/"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: collections.Counter[str] = collections.Counter()
        self._per_route: collections.Counter[tuple[str, str]] = collections.Counter()

    def count(self, key: str) -> int:
        """Fault requests seen so far with `key`."""
        with self._lock:
            return self._seen[key]

    def _hit(self, route: str, key: str) -> int:
        """Record one request; return how many earlier ones this route saw with this key."""
        with self._lock:
            self._seen[key] += 1
            before = self._per_route[(route, key)]
            self._per_route[(route, key)] += 1
            return before

    def handle(self, request: Request) -> Response | None:
        """Answer one fault request (None for unknown routes → 404)."""
        route = request.path[len(self.prefix) :].strip("/")
        q = request.query
        key = q.get("key", "")
        if route in ("count", "reset"):
            if route == "count":
                return Response.json({"count": self.count(key)})
            with self._lock:
                self._seen.pop(key, None)
                for k in [k for k in self._per_route if k[1] == key]:
                    del self._per_route[k]
            return Response.json({"reset": key})
        handler = getattr(self, "_r_" + route.replace("-", "_"), None)
        if handler is None:
            return None
        before = self._hit(route, key)
        try:
            return handler(request, before)
        except ValueError as err:
            return Response.text(f"bad fault parameters: {err}\n", status=400)

    # Each route gets the request and how many earlier requests it saw with the same key.
    def _r_status(self, request: Request, before: int) -> Response:
        code = _int(request, "code", 503)
        times = _int(request, "times", 1)
        if before < times:
            return Response.text(f"fault {code} ({before + 1}/{times})\n", status=code)
        return Response.text("ok")

    def _r_429(self, request: Request, before: int) -> Response:
        times = _int(request, "times", 1)
        retry_after = _float(request, "retry_after", 1.0)
        if before >= times:
            return Response.text("ok")
        if request.query.get("http_date", "0") not in ("", "0"):
            value = formatdate(math.ceil(time.time() + retry_after), usegmt=True)
        else:
            value = f"{retry_after:g}"
        response = Response.text(f"too many requests ({before + 1}/{times})\n", status=429)
        response.headers["Retry-After"] = value
        return response

    def _r_slow(self, request: Request, before: int) -> Response:
        response = Response.text("ok")
        response.delay = _float(request, "seconds", 1.0)
        return response

    def _r_slowbody(self, request: Request, before: int) -> Response:
        n = _int(request, "chunks", 3)
        return Response(
            headers={"Content-Type": "text/plain; charset=utf-8"},
            chunks=[f"chunk {i}\n".encode() for i in range(n)],
            chunk_delay=_float(request, "seconds", 1.0),
        )

    def _r_big(self, request: Request, before: int) -> Response:
        size = _int(request, "bytes", 1 << 20)
        nolength = request.query.get("nolength", "0") not in ("", "0")
        return Response(
            headers={"Content-Type": "application/octet-stream"},
            chunks=iter_repeated(size),
            content_length=None if nolength else size,
        )

    def _r_lying_length(self, request: Request, before: int) -> Response:
        declared = _int(request, "declared", 1000)
        actual = _int(request, "actual", 10)
        return Response(
            headers={"Content-Type": "application/octet-stream"},
            chunks=iter_repeated(actual),
            content_length=declared,
            close=True,
        )

    def _r_redirect(self, request: Request, before: int) -> Response:
        target = request.query.get("to")
        if not target:
            raise ValueError("missing 'to'")
        return Response(status=302, headers={"Location": target}, body=b"")

    def _r_redirect_loop(self, request: Request, before: int) -> Response:
        n = _int(request, "n", 0)
        return Response(
            status=302, headers={"Location": f"{self.prefix}redirect-loop?n={n + 1}"}, body=b""
        )

    def _r_notfound(self, request: Request, before: int) -> Response:
        return Response.text("not found\n", status=404)

    def _r_echo_headers(self, request: Request, before: int) -> Response:
        return Response.json(dict(request.headers))


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def _float(request: Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0")
    return value
