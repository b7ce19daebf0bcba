"""tv100.tasks.web.stream against the sandbox's dataset files: streamed, resumed, revalidated.

The sandbox serves the files as a static file server does (ETag, Last-Modified, byte ranges,
416) and can break a transfer off midway the first time (``/datasets/cut-<key>/``), so a
resume is tested without any timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest
from protego import Protego

from tests.tasks.web.test_robots import requests_for, site
from tv100.sandbox.robots import ROBOTS_TXT
from tv100.sandbox.server import Response, SandboxServer
from tv100.storage.atomic import is_temp
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.robots import ROBOTS, RobotsPolicy, product_token
from tv100.tasks.web.stream import (
    META_SUFFIX,
    Downloaded,
    FileDownloader,
    _Partial,
    partial_path,
    read_meta,
)

pytestmark = pytest.mark.timeout(60)

NAME = "title.akas.tsv.gz"


def config(sandbox, **kw) -> HttpConfig:
    settings = {"allow_hosts": (sandbox.base_url.split("://", 1)[1],), "backoff_base_s": 0.0,
                "backoff_max_s": 0.0, **kw}  # fmt: skip
    return HttpConfig(**settings)


def fetch(
    http: HttpConfig, url: str, path: Path, robots: RobotsPolicy | None = ROBOTS
) -> Downloaded:
    async def go() -> Downloaded:
        async with FileDownloader(http, robots=robots) as downloader:
            return await downloader.fetch(url, str(path))

    return asyncio.run(go())


def served(sandbox, name: str = NAME):
    return sandbox.datasets.datasets()[name]


def leftovers(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if is_temp(n))


def write_partial(path: Path, data: bytes, url: str, etag: str) -> Path:
    partial = Path(partial_path(str(path)))
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data)
    Path(str(partial) + ".json").write_text(json.dumps({"url": url, "etag": etag}))
    return partial


def test_download_then_not_modified(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/{NAME}", tmp_path / "raw" / NAME
    expected = served(sandbox).data
    first = fetch(config(sandbox), url, path)
    assert first.ok and first.fetched.http_status == 200 and not first.not_modified
    assert path.read_bytes() == expected and first.fetched.content == b""
    assert first.sha256 == hashlib.sha256(expected).hexdigest() and first.size == len(expected)
    meta = read_meta(str(path))
    assert meta["url"] == url and meta["sha256"] == first.sha256 and meta["size"] == len(expected)
    assert meta["etag"] == served(sandbox).etag and meta["last_modified"]
    assert sorted(os.listdir(path.parent)) == [NAME, NAME + META_SUFFIX]
    mtime = path.stat().st_mtime_ns

    second = fetch(config(sandbox), url, path)
    assert second.ok and second.not_modified and second.fetched.http_status == 304
    assert (second.sha256, second.size, second.path) == (first.sha256, first.size, str(path))
    assert path.stat().st_mtime_ns == mtime and leftovers(path.parent) == []


def test_a_transfer_cut_midway_is_resumed_with_range(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/cut-{uuid.uuid4().hex}/{NAME}", tmp_path / NAME
    expected = served(sandbox).data
    got = fetch(config(sandbox, retries=2), url, path)
    assert got.ok and got.fetched.attempts == 2 and got.fetched.http_status == 206
    assert 0 < got.resumed_from <= len(expected) // 2
    assert path.read_bytes() == expected and got.sha256 == hashlib.sha256(expected).hexdigest()
    assert leftovers(tmp_path) == []


def test_a_failed_run_leaves_a_partial_the_next_run_resumes(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/cut-{uuid.uuid4().hex}/{NAME}", tmp_path / NAME
    expected = served(sandbox).data
    failed = fetch(config(sandbox, retries=0), url, path)
    assert not failed.ok and failed.transient and failed.fetched.status == "error"
    assert "connection error" in (failed.fetched.error_message or "")
    partial = Path(partial_path(str(path)))
    kept = partial.stat().st_size
    assert 0 < kept < len(expected) and is_temp(partial.name)  # swept if nobody resumes it
    assert not path.exists() and failed.path is None

    resumed = fetch(config(sandbox, retries=0), url, path)
    assert resumed.ok and resumed.fetched.http_status == 206 and resumed.resumed_from == kept
    assert path.read_bytes() == expected and leftovers(tmp_path) == []


def test_a_partial_of_another_version_starts_over(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/{NAME}", tmp_path / NAME
    write_partial(path, b"x" * 100, url, '"an-older-version"')
    got = fetch(config(sandbox), url, path)
    assert got.ok and got.fetched.http_status == 200 and got.resumed_from == 0
    assert path.read_bytes() == served(sandbox).data and leftovers(tmp_path) == []


def test_an_unsatisfiable_range_drops_the_partial(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/{NAME}", tmp_path / NAME
    f = served(sandbox)
    write_partial(path, b"x" * (f.size + 10), url, f.etag)
    got = fetch(config(sandbox, retries=1), url, path)
    assert got.ok and got.fetched.attempts == 2 and got.fetched.http_status == 200
    assert path.read_bytes() == f.data and leftovers(tmp_path) == []


def test_a_whole_partial_is_moved_into_place(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/{NAME}", tmp_path / NAME
    f = served(sandbox)
    write_partial(path, f.data, url, f.etag)
    got = fetch(config(sandbox, retries=0), url, path)
    assert got.ok and got.fetched.http_status == 416 and got.size == f.size
    assert path.read_bytes() == f.data and read_meta(str(path))["etag"] == f.etag


def test_over_the_cap_is_final_and_leaves_nothing(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/{NAME}", tmp_path / NAME
    declared = fetch(config(sandbox, max_file_bytes=1000), url, path)
    assert declared.fetched.status == "too_large" and declared.fetched.attempts == 1
    assert "max_file_bytes=1000" in (declared.fetched.error_message or "")
    assert not declared.transient and not path.exists()
    streamed = fetch(
        config(sandbox, max_file_bytes=1000),
        f"{sandbox.base_url}/_fault/big?bytes=5000&nolength=1",
        tmp_path / "big",
    )
    assert streamed.fetched.status == "too_large" and "stopped reading" in str(
        streamed.fetched.error_message
    )
    assert os.listdir(tmp_path) == []


def test_404_is_final(sandbox, tmp_path):
    got = fetch(config(sandbox), f"{sandbox.base_url}/datasets/no-akas/{NAME}", tmp_path / NAME)
    assert got.fetched.status == "http_error" and got.fetched.http_status == 404
    assert got.fetched.attempts == 1 and not got.transient and os.listdir(tmp_path) == []


def test_transient_statuses_are_retried(sandbox, tmp_path):
    key = uuid.uuid4().hex
    url = f"{sandbox.base_url}/_fault/status?code=503&times=2&key={key}"
    got = fetch(config(sandbox, retries=3), url, tmp_path / "a")
    assert got.ok and got.fetched.attempts == 3 and (tmp_path / "a").read_bytes() == b"ok"
    url = f"{sandbox.base_url}/_fault/status?code=503&times=5&key={uuid.uuid4().hex}"
    failed = fetch(config(sandbox, retries=1), url, tmp_path / "b")
    assert failed.fetched.http_status == 503 and failed.transient
    assert "gave up after 2 attempts" in (failed.fetched.error_message or "")
    url = f"{sandbox.base_url}/_fault/429?times=1&retry_after=0&key={uuid.uuid4().hex}"
    waited = fetch(config(sandbox, retries=1), url, tmp_path / "c")
    assert waited.ok and waited.fetched.attempts == 2


def test_the_timeout_bounds_each_read_not_the_transfer(sandbox, tmp_path):
    # Six chunks 0.25 s apart: 1.5 s in all, above timeout_s, each read well within it.
    url = f"{sandbox.base_url}/_fault/slowbody?seconds=0.25&chunks=6"
    got = fetch(config(sandbox, timeout_s=1.0, retries=0), url, tmp_path / "slow")
    assert got.ok, got.fetched.error_message
    assert (tmp_path / "slow").read_bytes() == b"".join(f"chunk {i}\n".encode() for i in range(6))


def test_private_addresses_are_blocked(sandbox, tmp_path):
    got = fetch(HttpConfig(), f"{sandbox.base_url}/datasets/{NAME}", tmp_path / NAME)
    assert got.fetched.status == "blocked" and got.fetched.attempts == 0 and not got.transient
    assert os.listdir(tmp_path) == []


def test_a_second_writer_downloads_to_a_private_temp(sandbox, tmp_path):
    url, path = f"{sandbox.base_url}/datasets/{NAME}", tmp_path / NAME
    held = _Partial(str(path))  # another download of the same file, in progress
    try:
        got = fetch(config(sandbox), url, path)
        assert got.ok and path.read_bytes() == served(sandbox).data
        assert leftovers(tmp_path) == [Path(held.path).name]
    finally:
        held.close()
    assert leftovers(tmp_path) == []


def test_read_meta_of_a_missing_copy_is_empty(tmp_path):
    assert read_meta(str(tmp_path / "none")) == {}
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / ("f" + META_SUFFIX)).write_text("not json")
    assert read_meta(str(tmp_path / "f")) == {}


# -- robots.txt ----------------------------------------------------------------------------------

PRIVATE = "/datasets/no-basics/"
"""A dataset folder the tests' robots.txt disallows (the sandbox serves the akas file there)."""


def test_the_sandbox_robots_txt_allows_the_dataset_files():
    """The discover tests download /datasets/...: the sandbox's robots.txt must allow them."""
    rules = Protego.parse(ROBOTS_TXT)
    token = product_token(HttpConfig().user_agent)
    for variant in ("", "no-ratings/", "cut-x/"):
        assert rules.can_fetch(f"http://127.0.0.1/datasets/{variant}{NAME}", token), variant


def test_a_file_robots_txt_disallows_is_never_requested(world, tmp_path):
    text = f"User-agent: *\nDisallow: {PRIVATE}\n"
    with site(world, Response.text(text)) as server:
        url, path = f"{server.base_url}{PRIVATE}{NAME}", tmp_path / NAME
        got = fetch(config(server, retries=3), url, path)
        assert got.fetched.status == "robots_disallowed" and not got.ok and not got.transient
        assert "disallows this URL for 'tv100'" in (got.fetched.error_message or "")
        assert "\n" not in (got.fetched.error_message or "")
        # Refused before any request: no attempt, no retry, nothing on disk.
        assert got.fetched.attempts == 0 and got.path is None and got.fetched.http_status is None
        assert requests_for(server, f"{PRIVATE}{NAME}") == 0
        assert requests_for(server, "/robots.txt") == 1
        assert os.listdir(tmp_path) == []
        # Allowed paths of the same origin are downloaded as before.
        fine = fetch(config(server), f"{server.base_url}/datasets/{NAME}", tmp_path / NAME)
        assert fine.ok and (tmp_path / NAME).read_bytes() == served(server).data


def test_an_unreadable_robots_txt_refuses_for_now_and_says_it_may_pass_later(world, tmp_path):
    with site(world, Response.text("down for maintenance\n", status=503)) as server:
        url = f"{server.base_url}/datasets/{NAME}"
        got = fetch(config(server, retries=1), url, tmp_path / NAME)
        assert got.fetched.status == "robots_disallowed" and got.fetched.attempts == 0
        assert "HTTP 503" in (got.fetched.error_message or "")
        assert got.transient  # a later run may find robots.txt readable
        assert requests_for(server, "/robots.txt") == 2  # the robots.txt request is retried
        assert requests_for(server, f"/datasets/{NAME}") == 0 and os.listdir(tmp_path) == []


def test_a_redirect_to_a_disallowed_file_is_refused_at_that_hop(world, tmp_path):
    text = f"User-agent: tv100\nDisallow: {PRIVATE}\n"
    with site(world, Response.text(text)) as server:
        redirect = f"/_fault/redirect?to={PRIVATE}{NAME}"
        got = fetch(config(server, retries=3), server.base_url + redirect, tmp_path / NAME)
        assert got.fetched.status == "robots_disallowed" and not got.transient
        assert got.fetched.final_url == f"{server.base_url}{PRIVATE}{NAME}"
        assert got.fetched.attempts == 1  # the redirect was asked once, never again
        assert requests_for(server, redirect) == 1
        assert requests_for(server, f"{PRIVATE}{NAME}") == 0
        assert os.listdir(tmp_path) == []


def test_crawl_delay_slows_the_host_and_robots_none_skips_robots_txt(world, tmp_path):
    text = f"User-agent: *\nDisallow: {PRIVATE}\nCrawl-delay: 0.25\n"

    async def download(server: SandboxServer, url: str, robots: RobotsPolicy | None):
        async with FileDownloader(config(server), robots=robots) as downloader:
            got = await downloader.fetch(url, str(tmp_path / NAME))
            assert downloader.limiter is not None
            return got, downloader.limiter.interval("127.0.0.1")

    with site(world, Response.text(text)) as server:
        # The loopback host has no rate of its own (allow_hosts): only the Crawl-delay.
        got, interval = asyncio.run(download(server, f"{server.base_url}/datasets/{NAME}", ROBOTS))
        assert got.ok and interval == 0.25
        (tmp_path / NAME).unlink()
        os.remove(str(tmp_path / NAME) + META_SUFFIX)
        asked = requests_for(server, "/robots.txt")
        # robots=None: robots.txt is not consulted, the disallowed file is downloaded.
        url = f"{server.base_url}{PRIVATE}{NAME}"
        got, interval = asyncio.run(download(server, url, None))
        assert got.ok and interval == 0.0 and requests_for(server, "/robots.txt") == asked
        assert (tmp_path / NAME).read_bytes() == served(server).data
