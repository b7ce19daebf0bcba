"""Streaming file downloads: a large file straight to disk, resumed, revalidated, renamed.

`FileDownloader.fetch(url, path)` keeps a local copy of one remote file up to date (IMDb's
dataset files are 8 MB to 450 MB, far above `HttpConfig.max_bytes`):

- **Streamed.** The body goes to disk in the chunks it arrives in; nothing holds it whole.
  The cap is `HttpConfig.max_file_bytes`, checked on Content-Length / Content-Range before
  reading, then on the bytes written.
- **Timeouts per read.** Connecting and waiting for a pooled connection are bounded by
  `connect_timeout_s`, each read (the headers, then every read of the body) by `timeout_s`.
  A transfer that keeps moving is never cut for taking long.
- **Resumed.** The bytes received so far live beside the target under a storage temp name
  (`partial_path`: `TEMP_PREFIX` + ``partial-<name>``), with a sidecar naming the response
  they came from.
  The next attempt (a retry, or a later run) asks for the rest with ``Range`` and
  ``If-Range``: a 206 whose ``Content-Range`` starts where the partial ends is appended; a
  200 (the file changed, or the server ignores ranges) starts over; a 416 drops the partial.
  A partial nobody resumes is an ordinary temp file: the build's start sweeps it.
- **Revalidated.** ``<path>.meta.json`` records the URL, ETag, Last-Modified, size and sha256
  of the local copy; the next fetch sends If-None-Match / If-Modified-Since, and a 304 keeps
  the copy.
- **Moved into place atomically** once whole (`tv100.storage.atomic.adopt_file`): the target
  is the old file or the new one, never part of one.
- **Retried only where it can help** (`tv100.tasks.web.retry`: timeouts, cut connections, 5xx,
  429 after its Retry-After), behind the same address guard (`tv100.tasks.web.guard`) and
  per-host limits (`tv100.tasks.web.politeness`) as `HttpClient`.
- **robots.txt honoured** as `HttpClient` honours it (`tv100.tasks.web.robots`): asked before
  every hop, redirects included, its Crawl-delay slowing the host's rate; a refused file is
  never requested and ends as ``robots_disallowed`` (final: not retried). robots.txt itself
  is read by an `HttpClient` the downloader opens, whose host limits are the downloader's.

Like `HttpClient.get`, `fetch` never raises for a per-URL problem: the `Downloaded` it returns
says what happened.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from tv100.storage.atomic import TEMP_PREFIX, adopt_file, temp_name, write_file_atomic
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import Fetched, HttpConfig, Status
from tv100.tasks.web.decoding import bound_decoding, content_codings
from tv100.tasks.web.errors import FetchFailure, TooLarge, describe
from tv100.tasks.web.guard import GuardedTransport, OutboundGuard
from tv100.tasks.web.politeness import HostLimiter
from tv100.tasks.web.responses import redirect_location, response_headers
from tv100.tasks.web.retry import is_retryable_connection_error, retrying, status_retry
from tv100.tasks.web.robots import ROBOTS, RobotsPolicy, RobotsRefused, check_robots

META_SUFFIX = ".meta.json"
"""The local copy's validators and hash live in ``<path>.meta.json``."""
PARTIAL_PREFIX = TEMP_PREFIX + "partial-"
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_HASH_BLOCK = 1 << 20


def partial_path(path: str) -> str:
    """Where the bytes of an unfinished download of `path` are kept (a storage temp name)."""
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, PARTIAL_PREFIX + name)


def read_meta(path: str) -> dict[str, Any]:
    """The ``.meta.json`` of a local copy; {} when the copy or its metadata is missing."""
    meta_path = path + META_SUFFIX
    if not (os.path.isfile(path) and os.path.isfile(meta_path)):
        return {}
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True)
class Downloaded:
    """The outcome of one `FileDownloader.fetch`: a value, never an exception.

    Attributes:
        fetched: the request as `HttpClient` reports one (status, HTTP status, headers,
            error message, attempts, elapsed time); its `content` is always empty.
        path: the local copy when `fetched` is ok (downloaded, or kept after a 304).
        sha256: hex sha256 of the local copy when ok.
        size: bytes of the local copy when ok.
        not_modified: the server answered 304 and the local copy was kept.
        resumed_from: bytes of an earlier, interrupted download that were kept (0: none).
        transient: when not ok, whether trying again later may help (a timeout, a cut
            connection, 5xx or 429 after the retries, a robots.txt that could not be read);
            False for a 404, other 4xx, a file over the cap, a blocked address, a file
            robots.txt disallows.
    """

    fetched: Fetched
    path: str | None
    sha256: str | None
    size: int
    not_modified: bool
    resumed_from: int
    transient: bool

    @property
    def ok(self) -> bool:
        """Whether the local copy is there and current."""
        return self.fetched.ok


@dataclass
class _Outcome:
    """One attempt's outcome; `retry_reason` set means the attempt may be retried.

    `later` marks a failure not worth retrying now that a later run may get past (robots.txt
    could not be read).
    """

    status: Status
    final_url: str
    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str | None = None
    retry_reason: str | None = None
    later: bool = False
    retry_after: float | None = None
    sha256: str | None = None
    size: int = 0
    not_modified: bool = False


@dataclass
class _Job:
    """State of one `fetch` across attempts."""

    url: str
    path: str
    meta: dict[str, Any]
    attempts: int = 0
    resumed_from: int = 0


class _Partial:
    """The partial file of one download, locked while open (one writer per target).

    When another process holds the lock, this download uses a private temp name instead
    and is not resumable (it is removed when closed unless moved into place).
    """

    def __init__(self, final: str) -> None:
        self.final = os.path.abspath(final)
        os.makedirs(os.path.dirname(self.final), exist_ok=True)
        self.path = partial_path(self.final)
        self.shared = True
        self.fh = open(self.path, "a+b")  # noqa: SIM115 - closed in close()
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.path = os.path.join(
                os.path.dirname(self.final), temp_name(os.path.basename(self.final))
            )
            self.shared = False
            self.fh = open(self.path, "a+b")  # noqa: SIM115

    @property
    def sidecar(self) -> str:
        return self.path + ".json"

    def _read_sidecar(self) -> dict[str, Any]:
        try:
            with open(self.sidecar) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def validators(self) -> dict[str, Any]:
        """The ETag and Last-Modified of the response the partial's bytes came from."""
        return self._read_sidecar()

    def resume_point(self, url: str) -> tuple[int, str | None]:
        """(bytes to keep, If-Range value); (0, None) when the partial cannot be resumed."""
        self.fh.flush()
        size = os.fstat(self.fh.fileno()).st_size
        if not self.shared or size == 0:
            return 0, None
        data = self._read_sidecar()
        etag, modified = data.get("etag"), data.get("last_modified")
        validator = etag if etag and not str(etag).startswith("W/") else modified
        if data.get("url") != url or not validator:
            self.drop()
            return 0, None
        return size, str(validator)

    def restart(self, url: str, response: httpx.Response) -> None:
        """Empty the partial for a whole new body; record its validators if resumable."""
        self.drop()
        etag = response.headers.get("etag")
        modified = response.headers.get("last-modified")
        resumable = (
            self.shared
            and not content_codings(response)
            and response.headers.get("accept-ranges", "").strip().lower() != "none"
            and bool((etag and not etag.startswith("W/")) or modified)
        )
        if resumable:
            data = {"url": url, "etag": etag, "last_modified": modified}
            write_file_atomic(self.sidecar, json.dumps(data).encode())

    def hasher(self) -> Any:
        """A sha256 of the bytes already in the partial (read once, in 1 MiB blocks)."""
        h = hashlib.sha256()
        self.fh.seek(0)
        for block in iter(lambda: self.fh.read(_HASH_BLOCK), b""):
            h.update(block)
        return h

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)  # append mode: always at the end

    def drop(self) -> None:
        """Forget the bytes received so far."""
        self.fh.truncate(0)
        if os.path.exists(self.sidecar):
            os.remove(self.sidecar)

    def commit(self, meta: dict[str, Any]) -> None:
        """Move the whole file into place, then record its metadata."""
        self.fh.flush()
        meta_path = self.final + META_SUFFIX
        if os.path.exists(meta_path):  # metadata present always describes the file
            os.remove(meta_path)
        adopt_file(self.path, self.final)
        write_file_atomic(meta_path, json.dumps(meta, sort_keys=True).encode())
        if os.path.exists(self.sidecar):
            os.remove(self.sidecar)

    def close(self) -> None:
        """Remove what cannot be resumed (while still holding the lock), then release it."""
        self.fh.flush()
        held = os.fstat(self.fh.fileno())
        try:
            ours = os.stat(self.path).st_ino == held.st_ino  # not moved into place
        except FileNotFoundError:
            ours = False
        if ours and (held.st_size == 0 or not self.shared):
            os.remove(self.path)
            if os.path.exists(self.sidecar):
                os.remove(self.sidecar)
        self.fh.close()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; None where absent or ``*``."""
    m = _CONTENT_RANGE_RE.match(value or "")
    if m is None:
        return None, None
    first = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return first, total


class FileDownloader:
    """Downloads files to disk with tv100's rules; use as ``async with FileDownloader(c)``.

    One instance owns one `httpx.AsyncClient` (keep-alive pool), its `OutboundGuard`, its
    `HostLimiter` and, robots.txt honoured, the `HttpClient` that reads robots.txt (whose
    `HostLimiter` it is). Downloads run one after the other or concurrently (different
    targets).

    Args:
        config: the HTTP settings (default `HttpConfig()`).
        robots: how robots.txt is honoured (default `ROBOTS`); None to not consult it.
    """

    def __init__(
        self, config: HttpConfig | None = None, *, robots: RobotsPolicy | None = ROBOTS
    ) -> None:
        self.config = config or HttpConfig()
        self.robots_policy = robots
        self._client: httpx.AsyncClient | None = None
        self._limiter: HostLimiter | None = None
        self._robots_client: HttpClient | None = None
        self._guard = OutboundGuard(self.config.allow_hosts, self.config.connect_timeout_s)

    @property
    def limiter(self) -> HostLimiter | None:
        """The open downloader's per-host limits (None when closed)."""
        return self._limiter

    async def __aenter__(self) -> FileDownloader:
        if self._client is not None:
            raise RuntimeError("FileDownloader is already open; use one `async with`")
        cfg = self.config
        limits = httpx.Limits(
            max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections
        )
        self._client = httpx.AsyncClient(
            # identity: byte ranges then count the file's own bytes (a .gz stays a .gz)
            headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "identity"},
            timeout=httpx.Timeout(
                cfg.timeout_s, connect=cfg.connect_timeout_s, pool=cfg.connect_timeout_s
            ),  # per operation (each read), not for the whole transfer
            limits=limits,
            follow_redirects=False,  # followed by hand: every hop is checked
            trust_env=cfg.trust_env,
            transport=GuardedTransport(self._guard, limits, cfg.trust_env),
        )
        if self.robots_policy is None:
            self._limiter = HostLimiter(cfg)
        else:
            # robots.txt is a page: read (capped, retried, guarded) by the page client, whose
            # limits are this downloader's too, so robots.txt and files share one host rate.
            self._robots_client = await HttpClient(cfg, robots=self.robots_policy).__aenter__()
            self._limiter = self._robots_client.limiter
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        robots_client, self._robots_client = self._robots_client, None
        self._limiter = None
        try:
            if robots_client is not None:
                await robots_client.__aexit__(exc_type, exc, tb)
        finally:
            if client is not None:
                await client.aclose()

    async def fetch(self, url: str, path: str) -> Downloaded:
        """Bring the local copy `path` of `url` up to date.

        Args:
            url: an http(s) URL.
            path: the local file (its folder is created); ``<path>.meta.json`` beside it.

        Returns:
            A `Downloaded`; per-URL problems are in its `fetched.status`, never raised.

        Raises:
            RuntimeError: if the downloader is not open (`async with` missing).
            OSError: the local folder cannot be written.
        """
        if self._client is None:
            raise RuntimeError("FileDownloader is not open; use `async with FileDownloader()`")
        started = time.monotonic()
        meta = read_meta(path)
        job = _Job(url, os.path.abspath(path), meta if meta.get("url") == url else {})
        partial = _Partial(job.path)
        try:
            result: _Outcome = await retrying(self.config, url)(self._attempt, job, partial)
        finally:
            partial.close()
        message = result.error_message
        if result.retry_reason is not None and job.attempts > 1:
            message = f"{message} (gave up after {job.attempts} attempts)"
        ok = result.status == "ok"
        transient = not ok and (
            result.retry_reason is not None
            or result.later
            or result.http_status in self.config.retry_statuses
        )
        return Downloaded(
            fetched=Fetched(
                url=url,
                final_url=result.final_url,
                status=result.status,
                http_status=result.http_status,
                headers=result.headers,
                content=b"",
                error_message=message,
                attempts=job.attempts,
                elapsed_s=time.monotonic() - started,
            ),
            path=job.path if ok else None,
            sha256=result.sha256 if ok else None,
            size=result.size if ok else 0,
            not_modified=result.not_modified,
            resumed_from=job.resumed_from if ok else 0,
            transient=transient,
        )

    async def _attempt(self, job: _Job, partial: _Partial) -> _Outcome:
        """One attempt: the whole redirect chain; every failure becomes an `_Outcome`."""
        final = [job.url]
        try:
            return await self._fetch_once(httpx.URL(job.url), job, partial, final)
        except FetchFailure as f:
            return _Outcome(
                f.status,
                final[0],
                error_message=f.message,
                retry_reason=f.retry_reason,
                later=isinstance(f, RobotsRefused) and f.transient,
            )
        except TooLarge as exc:
            partial.drop()
            return _Outcome("too_large", final[0], error_message=str(exc))
        except httpx.TimeoutException as exc:
            return _Outcome(
                "timeout",
                final[0],
                error_message=f"timed out ({describe(exc)}; timeout_s={self.config.timeout_s:g} "
                "per read)",
                retry_reason="timeout",
            )
        except httpx.UnsupportedProtocol as exc:
            return _Outcome("blocked", final[0], error_message=describe(exc))
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            retry = is_retryable_connection_error(exc)
            return _Outcome(
                "error",
                final[0],
                error_message=f"connection error: {describe(exc)}",
                retry_reason="connection error" if retry else None,
            )
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            return _Outcome("error", final[0], error_message=describe(exc))

    async def _fetch_once(
        self, url: httpx.URL, job: _Job, partial: _Partial, final: list[str]
    ) -> _Outcome:
        assert self._client is not None and self._limiter is not None
        counted = False
        redirects = 0
        while True:
            final[0] = str(url)
            try:
                host = await self._guard.check_target(url)
                robots = self._robots_client.robots if self._robots_client else None
                if robots is not None:
                    await check_robots(robots, self._limiter, url, host)
            except FetchFailure as f:
                if not counted and not f.local:  # DNS was tried: a real attempt
                    job.attempts += 1
                raise
            if not counted:
                job.attempts += 1
                counted = True
            offset, if_range = partial.resume_point(job.url)
            async with self._limiter.slot(host):
                request = self._client.build_request(
                    "GET", url, headers=self._request_headers(job, offset, if_range)
                )
                response = await self._client.send(request, stream=True)
                try:
                    location = redirect_location(response)
                    if location is None:
                        return await self._finish(job, partial, response, offset)
                finally:
                    await response.aclose()
            status = response.status_code
            redirects += 1
            if not self.config.follow_redirects or redirects > self.config.max_redirects:
                return _Outcome(
                    "http_error",
                    str(url),
                    http_status=status,
                    headers=response_headers(response),
                    error_message=f"HTTP {status} redirect to {location} not followed "
                    f"(follow_redirects={self.config.follow_redirects}, "
                    f"max_redirects={self.config.max_redirects})",
                )
            url = url.join(location)

    def _request_headers(self, job: _Job, offset: int, if_range: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if job.meta.get("sha256") and job.meta.get("etag"):
            headers["If-None-Match"] = str(job.meta["etag"])
        if job.meta.get("sha256") and job.meta.get("last_modified"):
            headers["If-Modified-Since"] = str(job.meta["last_modified"])
        if offset > 0 and if_range:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = if_range
        return headers

    async def _finish(
        self, job: _Job, partial: _Partial, response: httpx.Response, offset: int
    ) -> _Outcome:
        status, url = response.status_code, str(response.url)
        if status == 304 and job.meta.get("sha256"):
            partial.drop()  # the local copy is current: a newer partial is moot
            return _Outcome(
                "ok",
                url,
                http_status=304,
                headers=response_headers(response),
                sha256=str(job.meta["sha256"]),
                size=int(job.meta.get("size") or os.path.getsize(job.path)),
                not_modified=True,
            )
        first, total = _content_range(response.headers.get("content-range"))
        if status == 416 and offset:
            if total == offset:  # the partial already holds the whole file
                return self._commit(job, partial, response, partial.hasher(), offset)
            partial.drop()
            return self._outcome(response, "HTTP 416: the partial file cannot be resumed", True)
        if status == 206:
            if not offset or first != offset or content_codings(response):
                partial.drop()
                return self._outcome(
                    response,
                    f"HTTP 206 with Content-Range {response.headers.get('content-range')!r} "
                    f"does not continue the {offset} bytes kept; starting over",
                    True,
                )
            self._check_size(total, "Content-Range total")
            job.resumed_from = offset
            hasher = partial.hasher()
        elif 200 <= status < 300 and status != 204:
            offset = job.resumed_from = 0
            declared = response.headers.get("content-length", "").strip()
            self._check_size(int(declared) if declared.isdigit() else None, "Content-Length")
            partial.restart(job.url, response)
            hasher = hashlib.sha256()
        else:
            message = f"HTTP {status} {response.reason_phrase}".rstrip()
            retry = status_retry(self.config, status, response.headers.get("retry-after"))
            if retry.refused_wait is not None:
                message = f"{message}: {retry.refused_wait}"
            return _Outcome(
                "http_error",
                url,
                http_status=status,
                headers=response_headers(response),
                error_message=message,
                retry_reason=retry.reason,
                retry_after=retry.after if retry.reason is not None else None,
            )
        cap = self.config.max_file_bytes
        bound_decoding(response, cap)  # a server that compresses anyway is inflated, capped
        size = offset
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise TooLarge(f"file exceeds max_file_bytes={cap}; stopped reading")
            partial.write(chunk)
            hasher.update(chunk)
        if status == 206 and total is not None and size != total:
            return self._outcome(
                response, f"HTTP 206 ended at byte {size} of a {total}-byte file", True
            )
        return self._commit(job, partial, response, hasher, size)

    def _check_size(self, declared: int | None, what: str) -> None:
        cap = self.config.max_file_bytes
        if declared is not None and declared > cap:
            raise TooLarge(f"{what} {declared} exceeds max_file_bytes={cap}; not downloaded")

    def _commit(
        self, job: _Job, partial: _Partial, response: httpx.Response, hasher: Any, size: int
    ) -> _Outcome:
        sha = hasher.hexdigest()
        kept = partial.validators()  # a 416 need not repeat them
        partial.commit(
            {
                "url": job.url,
                "etag": response.headers.get("etag") or kept.get("etag"),
                "last_modified": response.headers.get("last-modified") or kept.get("last_modified"),
                "size": size,
                "sha256": sha,
            }
        )
        return _Outcome(
            "ok",
            str(response.url),
            http_status=response.status_code,
            headers=response_headers(response),
            sha256=sha,
            size=size,
        )

    def _outcome(self, response: httpx.Response, message: str, retry: bool) -> _Outcome:
        return _Outcome(
            "http_error" if response.status_code >= 400 else "error",
            str(response.url),
            http_status=response.status_code,
            headers=response_headers(response),
            error_message=message,
            retry_reason="restart" if retry else None,
        )
