"""The review page's HTTP server: 127.0.0.1 only, every request carrying a random token.

`ReviewServer(root)` serves, from background threads (stdlib `ThreadingHTTPServer`):

- ``GET /``: the page (``templates/review.html``);
- ``GET /api/classes``: the kept classes and their images (`tv100.tasks.review.page`);
- ``GET /image/<image_id>``: an image of the review (no other file);
- ``POST /api/decide`` ``{"image_ids": [...], "decision": "accept" | "reject"}``: appends
  the decision to the `reviews` table (`record_review`) *before* answering
  ``200 {"ok": true, "recorded": n}``, so a decision the page was told is saved survives the
  server being killed;
- ``POST /api/undo`` ``{"image_ids": [...]}``: undoes this server's last decision (the ids
  must be exactly its ids; else 409) by appending, for each image, the decision it had
  before; an image that had none gets the decision that says what the scorer said
  (``accept`` where it kept the image, ``reject`` where it found it irrelevant), so the
  image's final decision is what it was before. The table is append-only and knows no
  "undecided", so such an image stays counted as reviewed. Answers
  ``200 {"ok": true, "recorded": n, "restored": {image_id: decision}}``;
- ``POST /api/done``: calls `on_done` (the command line stops; a paused build resumes),
  then answers ``200 {"ok": true}``.

A request without the token (query ``token`` or header ``X-Review-Token``) gets 403; a bad
request 400 (413: a body over `MAX_BODY`; 404, 405: no such route; 409: an undo that does not
match) with a one-line JSON ``{"error": ...}``. Decisions are serialised, one at a time. The
page runs only its own inline script and style (a Content-Security-Policy with a nonce per
page) and sends no Referer, so the token stays on this machine.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jinja2

from tv100.storage.root import DataRoot
from tv100.tasks.review.decisions import DECISIONS, latest_reviews, record_review
from tv100.tasks.review.page import IRRELEVANT, Review, load_review, read_image

HOST = "127.0.0.1"
TOKEN_HEADER = "X-Review-Token"
#: The largest request body read (the ids of a class of ~100,000 images fit).
MAX_BODY = 16 * 1024 * 1024
#: Undo steps each server keeps (the page keeps its own, as long).
MAX_UNDO = 1000
#: Seconds an idle keep-alive connection stays open.
IDLE_S = 30
#: What an undo restores on an image no human had decided yet: the scorer's decision.
AUTO_EQUIVALENT = {IRRELEVANT: "reject"}


class RequestError(Exception):
    """A request the server refuses: its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Answer:
    """One response: status, content type, body and extra headers."""

    status: int
    content_type: str
    payload: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, data: Any, status: int = 200) -> _Answer:
        return cls(status, "application/json",
                   json.dumps(data, separators=(",", ":"), allow_nan=False).encode())


@dataclass(frozen=True)
class _Action:
    """One acknowledged decision, as undo needs it: its images and what each had before
    (its latest human decision, None where there was none)."""

    image_ids: tuple[str, ...]
    before: dict[str, str | None]


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("tv100.tasks.review", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def default_reviewer() -> str:
    """The login name of this process's user (``uid<N>`` where it has none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid{os.getuid()}"


class _HTTPServer(ThreadingHTTPServer):
    # Request threads are joined on close, so an answer being written (Done's) goes out.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: ReviewServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # the browser went away
            return
        traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tv100-review/1.0"
    sys_version = ""
    timeout = IDLE_S
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        pass  # no line per request; errors are answers

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        body: bytes | None = None if self.command == "POST" else b""
        try:
            split = urlsplit(self.path)
            token = self.headers.get(TOKEN_HEADER) or parse_qs(split.query).get("token", [""])[0]
            owner._check_token(token)
            if body is None:
                body = self._body()
            answer = owner._route(self.command, split.path, body)
        except RequestError as err:
            answer = _Answer.json({"error": " ".join(str(err).split())}, err.status)
        except Exception as err:  # a fault (a file that cannot be read): one line, 500
            answer = _Answer.json({"error": " ".join(f"{type(err).__name__}: {err}".split())}, 500)
        if body is None:  # a body left unread would be read as the next request
            self.close_connection = True
        self._send(answer)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            raise RequestError(400, "a POST needs a Content-Length")
        if int(length) > MAX_BODY:
            raise RequestError(413, f"request body of {length} bytes; expected at most {MAX_BODY}")
        return self.rfile.read(int(length))

    def _send(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.payload)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            image = answer.content_type.startswith("image/")  # content-addressed: cacheable
            self.send_header("Cache-Control", "private, max-age=86400" if image else "no-store")
            for key, value in answer.headers:
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer.payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _request_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"request body is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise RequestError(400, "request body must be a JSON object")
    return data


def _image_ids(data: dict[str, Any], known: Callable[[str], bool]) -> list[str]:
    ids = data.get("image_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise RequestError(400, "image_ids must be a non-empty list of image ids")
    unknown = [i for i in ids if not known(i)]
    if unknown:
        raise RequestError(400, f"unknown image id(s) {unknown[:5]}; expected images of the "
                                "review's kept classes")
    return list(dict.fromkeys(ids))


class ReviewServer:
    """The review page's server (see the module docstring).

    Args:
        root: the data root whose kept classes are reviewed.
        port: the port on 127.0.0.1; 0 picks a free one.
        reviewer: the name recorded with each decision; default the login name.
        on_done: called when the reviewer presses Done (from a request thread).

    Use as a context manager or call `start` and `stop`. `url` carries the token.
    """

    def __init__(
        self,
        root: DataRoot,
        port: int = 0,
        reviewer: str | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.reviewer = (reviewer if reviewer is not None else default_reviewer()).strip()
        if not self.reviewer:
            raise ValueError("reviewer is empty; expected a name")
        self.on_done = on_done
        self.token = secrets.token_urlsafe(16)
        self.port = port
        self._requested_port = port
        self._review: Review | None = None
        self._latest: dict[str, str] = {}
        self._undo: list[_Action] = []
        self._decide_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The page's address, token included."""
        if self._httpd is None:
            raise RuntimeError("ReviewServer is not started")
        return f"http://{HOST}:{self.port}/?token={self.token}"

    @property
    def review(self) -> Review:
        """What the page shows, as last read (at `start`, then at each page load)."""
        if self._review is None:
            raise RuntimeError("ReviewServer is not started")
        return self._review

    def progress(self) -> tuple[int, int]:
        """(images of the review with a human decision, images in the review), as this
        server knows them: no table is read (a command about to exit reads none: pyarrow
        may abort a process that exits while its Parquet threads wind down)."""
        auto = self.review.auto
        with self._decide_lock:
            return sum(i in self._latest for i in auto), len(auto)

    def start(self) -> ReviewServer:
        """Read the review, bind 127.0.0.1 and serve from a background thread; return self.

        Raises:
            FileNotFoundError: the data root has no `classes` (or `images`) table.
            OSError: the port cannot be bound (in use: errno EADDRINUSE).
        """
        if self._httpd is not None:
            return self
        self._review = load_review(self.root)
        self._latest = {r["image_id"]: r["decision"] for r in latest_reviews(self.root).to_pylist()}
        self._httpd = _HTTPServer((HOST, self._requested_port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"tv100-review-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: answers being written go out, idle connections are closed."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:  # wake threads waiting on a keep-alive connection; writes go on
            try:
                conn.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        httpd.server_close()  # joins the request threads
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests
    def _check_token(self, token: str) -> None:
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            raise RequestError(403, "forbidden: open the address `tv100 review` printed "
                                    "(its token is missing or wrong)")

    def _route(self, method: str, path: str, body: bytes) -> _Answer:
        """The answer to one request (its token already checked)."""
        if path.startswith("/image/"):
            if method != "GET":
                raise RequestError(405, f"{method} {path} is not allowed")
            return self._image(unquote(path[len("/image/"):]))
        routes: dict[str, tuple[str, Callable[[bytes], _Answer]]] = {
            "/": ("GET", self._page),
            "/api/classes": ("GET", self._classes),
            "/api/decide": ("POST", self._decide),
            "/api/undo": ("POST", self._undo_last),
            "/api/done": ("POST", self._done),
        }
        if path not in routes:
            raise RequestError(404, f"not found: {path}")
        allowed, handler = routes[path]
        if method != allowed:
            raise RequestError(405, f"{method} {path} is not allowed; expected {allowed}")
        return handler(body)

    def _page(self, body: bytes) -> _Answer:
        nonce = secrets.token_urlsafe(16)
        html = _environment().get_template("review.html").render(
            token=self.token, nonce=nonce, reviewer=self.reviewer, root=self.root.url,
        )
        # The page's only script and style are its own inline ones, allowed by their nonce.
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
               "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
        return _Answer(200, "text/html; charset=utf-8", html.encode(),
                       (("Content-Security-Policy", csp),))

    def _classes(self, body: bytes) -> _Answer:
        review = load_review(self.root)  # read again: decisions made elsewhere show too
        self._review = review
        return _Answer.json({"root": self.root.url, "reviewer": self.reviewer,
                             "classes": review.classes})

    def _image(self, image_id: str) -> _Answer:
        paths = self.review.paths
        if image_id not in paths:
            raise RequestError(404, f"no image {image_id!r} in this review")
        data, kind = read_image(self.root, image_id, paths)
        return _Answer(200, kind, data)

    def _known(self, image_id: str) -> bool:
        return image_id in self.review.auto

    def _decide(self, body: bytes) -> _Answer:
        data = _request_json(body)
        decision = data.get("decision")
        if not isinstance(decision, str) or decision not in DECISIONS:
            raise RequestError(400, f"decision {decision!r} is invalid; expected one of "
                                    f"{list(DECISIONS)}")
        ids = _image_ids(data, self._known)
        with self._decide_lock:
            before = {i: self._latest.get(i) for i in ids}
            record_review(self.root, ids, decision, self.reviewer)  # durable before the 200
            self._latest.update(dict.fromkeys(ids, decision))
            self._undo = [*self._undo[-(MAX_UNDO - 1):], _Action(tuple(ids), before)]
        return _Answer.json({"ok": True, "recorded": len(ids)})

    def _restoring(self, image_id: str, before: str | None) -> str:
        """What an undo appends for an image: its decision before, else the scorer's."""
        if before is not None:
            return before
        return AUTO_EQUIVALENT.get(self.review.auto.get(image_id, ""), "accept")

    def _undo_last(self, body: bytes) -> _Answer:
        ids = _image_ids(_request_json(body), self._known)
        with self._decide_lock:
            if not self._undo:
                raise RequestError(409, "nothing to undo on this server (it was restarted, or "
                                        "everything is undone); reload the page")
            last = self._undo[-1]
            if set(ids) != set(last.image_ids):
                raise RequestError(409, "undo does not match the last decision on this server "
                                        "(another page decided since?); reload the page")
            restored = {i: self._restoring(i, last.before[i]) for i in last.image_ids}
            recorded = 0
            for decision in DECISIONS:
                group = [i for i, d in restored.items() if d == decision]
                if group:
                    record_review(self.root, group, decision, self.reviewer)
                    self._latest.update(dict.fromkeys(group, decision))
                    recorded += len(group)
            self._undo.pop()
        return _Answer.json({"ok": True, "recorded": recorded, "restored": restored})

    def _done(self, body: bytes) -> _Answer:
        if self.on_done is not None:
            self.on_done()
        return _Answer.json({"ok": True})

    # ------------------------------------------------------------------ internals
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
