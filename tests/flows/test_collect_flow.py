"""Collect end to end on the sandbox: every planted image ends with its planted status;
a SIGKILL mid-download loses nothing and the resumed table equals an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from tests.support.builds import RERUN_BACKOFF_S, TIMEOUT_S
from tv100.storage.root import DataRoot, remove_temp_files
from tv100.storage.tables import done_shards, read_table


@pytest.fixture(scope="module")
def web(sandbox_web):
    return sandbox_web


@pytest.fixture(scope="module")
def built(collected):
    return collected


def test_every_planted_image_has_its_status(built, web):
    data, result = built
    truth = web.manifest_tables()["sandbox_images"].to_pylist()
    images = read_table(DataRoot(data), "images").to_pylist()
    rows: dict[tuple[str, str], list[dict]] = {}
    for r in images:
        rows.setdefault((r["series_id"], r["url"]), []).append(r)
    assert len(images) == len(truth) == result.images.hits
    wrong = []
    for t in truth:
        found = rows.get((t["series_id"], t["url"]), [])
        assert len(found) == 1, (t["url"], t["plant"], len(found))
        if found[0]["status"] != t["expected_status"]:
            wrong.append((t["plant"], t["expected_status"], found[0]["status"]))
    assert not wrong
    ok = [r for r in images if r["status"] == "ok"]
    assert all(r["path"] and r["sha256"] and max(r["width"], r["height"]) <= 512 for r in ok)
    # Exact duplicates planted at other URLs are stored once (content addressed).
    exact = [t for t in truth if t["plant"] == "exact_duplicate"]
    assert exact
    by_url = {r["url"]: r for r in images}
    for t in exact:
        assert by_url[t["url"]]["sha256"] == by_url[t["original_url"]]["sha256"]
    hits = read_table(DataRoot(data), "search_hits")
    assert set(hits.column("engine").to_pylist()) == {"bing", "google", "duckduckgo"}


def test_rerun_downloads_nothing(built, web):
    from tv100.flows.collect import collect_flow

    data, result = built
    paths = [os.path.join(data, "tables", f"{t}.parquet") for t in ("images", "search_hits")]
    before = [open(p, "rb").read() for p in paths]
    again = collect_flow(
        data=data,
        engine_urls=web.engine_urls(),
        per_series_cap=400,
        image_timeout_s=TIMEOUT_S,
        image_retries=1,
        allow_hosts=[web.host_port],
        download_retry_backoff_s=RERUN_BACKOFF_S,
    )
    assert again.images.downloaded_now == 0
    assert again.hits == result.hits and again.tables == result.tables
    assert [open(p, "rb").read() for p in paths] == before


SCRIPT = textwrap.dedent(
    """
    import sys
    import pyarrow.parquet as pq
    from tv100.storage.root import DataRoot
    from tv100.tasks.collect.config import DownloadConfig
    from tv100.tasks.collect.download import download_hits
    from tv100.tasks.web.config import HttpConfig

    hits, data, host, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    cfg = DownloadConfig(shard_size=8, in_flight=4, http=HttpConfig(
        allow_hosts=(host,), timeout_s=timeout, retries=1, backoff_base_s=0.01))
    download_hits(pq.read_table(hits), DataRoot(data).ensure(), cfg)
    """
)


def _download_cfg(web):
    from tv100.tasks.collect.config import DownloadConfig
    from tv100.tasks.web.config import HttpConfig

    return DownloadConfig(shard_size=8, in_flight=4, http=HttpConfig(
        allow_hosts=(web.host_port,), timeout_s=TIMEOUT_S, retries=1, backoff_base_s=0.01))


def _comparable(root: DataRoot):
    t = read_table(root, "images").drop_columns(["downloaded_at"])
    return t.sort_by("image_id").to_pylist()


def test_sigkill_mid_download_then_resume(built, web, tmp_path):
    from tv100.tasks.collect.download import download_hits

    data, _ = built
    hits_path = str(tmp_path / "hits.parquet")
    pq.write_table(read_table(DataRoot(data), "search_hits"), hits_path)
    killed = DataRoot(str(tmp_path / "killed")).ensure()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, hits_path, killed.base, web.host_port, str(TIMEOUT_S)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(done_shards(killed, "images")) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "downloader made no progress"
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed: make the input larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    n_done = len(done_shards(killed, "images"))
    assert 3 <= n_done
    # Resume in this process, as a build does: temp files of the killed run swept first (its
    # workers die with it, mid-write); then an uninterrupted run on a fresh root to compare.
    remove_temp_files(killed)
    summary = download_hits(pq.read_table(hits_path), killed, _download_cfg(web))
    assert 0 < summary.downloaded_now < summary.hits
    clean = DataRoot(str(tmp_path / "clean")).ensure()
    download_hits(pq.read_table(hits_path), clean, _download_cfg(web))
    assert _comparable(killed) == _comparable(clean)
    # No temp files and no orphan image files (every stored file is named by an ok row).
    leftovers = [f for _, _, fs in os.walk(killed.base) for f in fs if f.startswith(".tmp-")]
    assert not leftovers
    stored = {
        os.path.relpath(os.path.join(d, f), killed.base)
        for d, _, fs in os.walk(killed.path("images")) for f in fs
    }
    referenced = {r["path"] for r in _comparable(killed) if r["status"] == "ok"}
    assert stored == referenced


@pytest.mark.parametrize(
    "params,message",
    [({"engines": ["altavista"]}, "altavista"), ({"download_shard_size": 0}, "shard_size")],
)
def test_bad_parameters_fail_before_any_request(prefect_harness, tmp_path, params, message):
    from tv100.flows.collect import collect_flow

    data = tmp_path / "data"
    with pytest.raises(ValueError, match=message):
        collect_flow(data=str(data), **params)
    assert not data.exists()  # nothing read, nothing written
