"""The downloader's politeness on the sandbox: robots.txt, the opt-out forms, the shared rate.

Images under the sandbox's robots-disallowed ``/img/private/`` (the ``fault_robots`` plants)
must end as `robots_disallowed` rows without ever being requested; the X-Robots-Tag forms of
``/optout/<form>.jpg`` as `opted_out` (or `ok` for the look-alikes); source pages with a robots
meta tag are read as opting out by `page_opt_out`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.tasks.collect.test_download import hits_table
from tv100.sandbox.robots import OPT_OUT_FORMS, PRIVATE_IMAGES
from tv100.sandbox.server import SandboxServer
from tv100.storage.tables import read_table
from tv100.tasks.collect.config import OPT_OUT_DIRECTIVES, DownloadConfig
from tv100.tasks.collect.download import download_hits
from tv100.tasks.collect.optout import meta_robots, page_opt_out
from tv100.tasks.collect.workers import per_worker_config
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.politeness import DEFAULT_RATE_PER_HOST

pytestmark = pytest.mark.timeout(180)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "optout"


def requested(server: SandboxServer, path: str) -> bool:
    return any(line.startswith(f'"GET {path}') for line in server.request_log)


def robots_reads(server: SandboxServer) -> int:
    return sum(1 for line in server.request_log if line.startswith('"GET /robots.txt '))


def download_config(server: SandboxServer, **kw) -> DownloadConfig:
    http = HttpConfig(allow_hosts=(f"127.0.0.1:{server.port}",), retries=0, timeout_s=10)
    return DownloadConfig(max_side=128, http=http, **kw)


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_robots_disallowed_and_opted_out_images(catalog, engines, tmp_path, processes):
    from tv100.storage.root import DataRoot

    server, _site = engines
    base = server.base_url
    private = [i for i in catalog.images if i.plant == "fault_robots"]
    ordinary = [i for i in catalog.images if i.plant is None][:6]
    assert private and all(i.url_path.startswith(PRIVATE_IMAGES) for i in private)
    assert all(i.expected_status == "robots_disallowed" for i in private)
    image_forms = [f for f in OPT_OUT_FORMS if f.kind == "image"]
    urls = [(i.series_id, base + i.url_path) for i in private + ordinary]
    urls += [("tt0000009", f"{base}/optout/{f.name}.jpg") for f in image_forms]
    root = DataRoot(str(tmp_path / "data")).ensure()
    reads_before = robots_reads(server)

    summary = download_hits(hits_table(urls), root, download_config(server, processes=processes,
                                                                    shard_size=4))  # fmt: skip

    rows = {r["url"]: r for r in read_table(root, "images").to_pylist()}
    assert len(rows) == len(urls)
    for img in private:
        row = rows[base + img.url_path]
        assert row["status"] == "robots_disallowed", row
        assert row["http_status"] is None and row["path"] is None
        assert row["error_message"] == (
            f"robots.txt of http://127.0.0.1:{server.port} disallows this URL for 'tv100'"
        )
        assert not requested(server, img.url_path)
    for img in ordinary:
        assert rows[base + img.url_path]["status"] == "ok"
        assert requested(server, img.url_path)
    for form in image_forms:
        row = rows[f"{base}/optout/{form.name}.jpg"]
        assert row["status"] == ("opted_out" if form.opted_out else "ok"), form.name
        if form.opted_out:
            assert row["error_message"].startswith("X-Robots-Tag: ")
    assert summary.status_counts["robots_disallowed"] == len(private)
    # Each downloading process reads robots.txt once for the one origin.
    assert 1 <= robots_reads(server) - reads_before <= processes


def test_workers_share_the_default_rate():
    """The default per-host rate is the run's: worker processes divide it like a set one."""
    assert DownloadConfig().http.rate_per_host is None
    each = per_worker_config(DownloadConfig(), 2)
    assert each.http.rate_per_host == DEFAULT_RATE_PER_HOST / 2
    set_one = per_worker_config(DownloadConfig(http=HttpConfig(rate_per_host=3.0)), 3)
    assert set_one.http.rate_per_host == 1.0


# -- source pages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("artwork_noai.html", '<meta name="robots"> noai'), ("artwork_allowed.html", None)],
    ids=["noai-page", "look-alike"],
)
def test_page_opt_out_on_saved_pages(name, expected):
    page = (FIXTURES / name).read_bytes()
    assert page_opt_out(page, {}, OPT_OUT_DIRECTIVES, "tv100") == expected


def test_meta_robots_reads_only_robots_and_our_token():
    page = (
        b'<html><head><META NAME="Robots" CONTENT="NoImageAI">'
        b'<meta name="tv100" content="noai"><meta name="otherbot" content="noai">'
        b'<meta name="description" content="noai"><meta content="noai"></head></html>'
    )
    assert meta_robots(page, "tv100") == [("robots", "NoImageAI"), ("tv100", "noai")]
    assert meta_robots(b"", "tv100") == [] and meta_robots(b"\xff\xfe<<<", "tv100") == []


def test_page_header_counts_before_the_meta():
    headers = {"x-robots-tag": "otherbot: noimageai"}
    assert page_opt_out(b"<html></html>", headers, OPT_OUT_DIRECTIVES, "tv100") == (
        "X-Robots-Tag: noimageai"
    )


def test_sandbox_pages_of_every_opt_out_form(sandbox):
    """Each ``/optout/<form>.html`` page the sandbox serves reads as its form says."""
    forms = [f for f in OPT_OUT_FORMS if f.kind == "page"]

    async def go() -> list[str | None]:
        config = HttpConfig(allow_hosts=(f"127.0.0.1:{sandbox.port}",), retries=0)
        async with HttpClient(config) as client:
            out = []
            for form in forms:
                page = await client.get(f"{sandbox.base_url}/optout/{form.name}.html")
                assert page.ok, page
                out.append(page_opt_out(page.content, page.headers, OPT_OUT_DIRECTIVES,
                                        "tv100"))  # fmt: skip
            return out

    found = asyncio.run(go())
    assert [f is not None for f in found] == [f.opted_out for f in forms]
    assert {f.name: (d or "").split(">")[0] for f, d in zip(forms, found, strict=True)} == {
        "meta-robots": '<meta name="robots"',
        "meta-agent": '<meta name="tv100"',
        "meta-case": '<meta name="robots"',
        "page-header": "X-Robots-Tag: noimageai",
        "meta-other": "",
    }
