"""`tv100 review`: the review page's data, its server, its command, and a real browser.

A small data root made here (`make_root`): three series, two kept; real JPEGs in the image
store; a junk and a failed image the page must not show (the cleaned set); a `relevance`
table whose scores fix the order by suspicion, one row of it already overruled by a review
(the page shows the scorer's own decision). The server runs in-process for its unit tests,
and as ``tv100 review`` in a subprocess for the browser test, which types real keys into
headless Chromium over the DevTools protocol and kills the server with SIGKILL once a
decision was acknowledged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.support.browser import Browser, find_chromium
from tests.support.prefect_server import free_port, kill_group, tail
from tests.support.rank_fixtures import noise_jpeg
from tv100.flows.cli import app
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import CLASSES, IMAGES, QUALITY, RELEVANCE, SERIES
from tv100.storage.tables import write_table
from tv100.tasks.review.decisions import all_reviews, latest_reviews, record_review
from tv100.tasks.review.page import load_review, read_image, review_classes
from tv100.tasks.review.server import TOKEN_HEADER, ReviewServer

TS = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
#: series_id -> (title, start year, images, class index or None: not kept).
SERIES_ROWS = {
    "tt01": ("Alpha", 2022, 6, 0),
    "tt02": ("Bravo", 2023, 5, 1),
    "tt03": ("Charlie", 2024, 3, None),
}
#: The scorer's verdicts on tt01: image -> (decision, reason, score, outlier score,
#: suspected series). tt02's images are all kept (tt02-4 unscored: no relevance row).
TT01 = {
    "tt01-0": ("keep", None, 0.9, 0.1, None),
    "tt01-1": ("irrelevant", "other_series", 0.05, 0.5, "tt02"),
    "tt01-2": ("keep", None, 0.2, 2.0, None),
    "tt01-3": ("keep", None, None, None, None),
    "tt01-4": ("irrelevant", "offtopic", 0.6, 5.0, None),
    "tt01-5": ("keep", None, 0.2, 3.0, None),
}
#: Most suspicious first: the irrelevant ones (lowest score first), then the lowest score
#: (ties: the highest outlier score first), unscored last.
TT01_ORDER = ["tt01-1", "tt01-4", "tt01-5", "tt01-2", "tt01-0", "tt01-3"]
TT02_ORDER = ["tt02-3", "tt02-2", "tt02-1", "tt02-0", "tt02-4"]
#: The command, as the console script runs it.
REVIEW = [sys.executable, "-c", "from tv100.flows.cli import main; main()", "review"]

runner = CliRunner()


def _images_of(sid: str) -> list[str]:
    return [f"{sid}-{k}" for k in range(SERIES_ROWS[sid][2])]


def make_root(path: Path, relevance: bool = True, classes: bool = True) -> DataRoot:
    """The data root of the module docstring."""
    root = DataRoot(str(path)).ensure()
    write_table(root, "series", pa.Table.from_pylist([
        {"series_id": sid, "title": title, "start_year": year, "kind": "tvSeries"}
        for sid, (title, year, _, _) in SERIES_ROWS.items()
    ], schema=SERIES))
    store = ImageStore(root)
    images, seed = [], 0
    for sid in SERIES_ROWS:
        for image_id in [*_images_of(sid), f"{sid}-junk", f"{sid}-failed"]:
            seed += 1
            failed = image_id.endswith("-failed")
            sha, rel = (None, None) if failed else store.put(noise_jpeg(seed), "jpg")
            images.append({"image_id": image_id, "series_id": sid, "status":
                           "http_error" if failed else "ok", "sha256": sha, "path": rel,
                           "width": 48, "height": 40, "format": "jpeg", "downloaded_at": TS})
    write_table(root, "images", pa.Table.from_pylist(images, schema=IMAGES))
    write_table(root, "quality", pa.Table.from_pylist([
        {"image_id": i["image_id"], "is_junk": i["image_id"].endswith("-junk"),
         "reason": "blank" if i["image_id"].endswith("-junk") else None, "status": "ok"}
        for i in images if i["status"] == "ok"
    ], schema=QUALITY))
    if classes:
        write_table(root, "classes", pa.Table.from_pylist([
            {"series_id": sid, "title": title, "class_index": index, "kept": index is not None,
             "reason": "hardest" if index is not None else "too_easy", "rank": 1,
             "accuracy": 0.05, "n_images": n, "aggregate": "max", "models": ["m"]}
            for sid, (title, _, n, index) in SERIES_ROWS.items()
        ], schema=CLASSES))
    if relevance:
        rows = []
        for image_id, (decision, reason, score, outlier, suspected) in TT01.items():
            rows.append({"image_id": image_id, "series_id": "tt01", "score": score,
                         "outlier_score": outlier, "suspected_series_id": suspected,
                         "decision": decision, "reason": reason, "method": "cleanlab+knn:m",
                         "auto_decision": decision, "auto_reason": reason})
        # A review already applied: final `decision` irrelevant, the scorer's own `keep`.
        rows[0].update(decision="irrelevant", reason="review")
        for k, image_id in enumerate(_images_of("tt02")[:4]):
            rows.append({"image_id": image_id, "series_id": "tt02", "score": 0.9 - 0.1 * k,
                         "outlier_score": 0.0, "suspected_series_id": "tt02",
                         "decision": "keep", "reason": None, "method": "cleanlab+knn:m",
                         "auto_decision": "keep", "auto_reason": None})
        write_table(root, "relevance", pa.Table.from_pylist(rows, schema=RELEVANCE))
    return root


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return make_root(tmp_path / "data")


def _latest(root: DataRoot) -> dict[str, str]:
    return {r["image_id"]: r["decision"] for r in latest_reviews(root).to_pylist()}


# -- what the page shows -------------------------------------------------------------------------


def test_kept_classes_with_title_year_and_images_by_suspicion(root):
    classes = review_classes(root)
    assert [(c["series_id"], c["title"], c["start_year"], c["class_index"]) for c in classes] == [
        ("tt01", "Alpha", 2022, 0), ("tt02", "Bravo", 2023, 1)]  # tt03 is not kept
    alpha, bravo = classes
    assert [i["image_id"] for i in alpha["images"]] == TT01_ORDER  # no junk, no failed
    assert [i["image_id"] for i in bravo["images"]] == TT02_ORDER
    assert (alpha["n_images"], alpha["auto_irrelevant"]) == (6, 2)
    assert alpha["auto_reasons"] == {"offtopic": 1, "other_series": 1}
    first = alpha["images"][0]
    assert (first["auto_decision"], first["auto_reason"]) == ("irrelevant", "other_series")
    assert (first["suspected_series_id"], first["suspected_title"]) == ("tt02", "Bravo")
    by_id = {i["image_id"]: i for c in classes for i in c["images"]}
    # The scorer's own decision, not the review already applied to the table.
    assert by_id["tt01-0"]["auto_decision"] == "keep"
    assert by_id["tt01-3"]["score"] is None and by_id["tt02-4"]["auto_decision"] == "keep"
    assert by_id["tt02-0"]["suspected_series_id"] is None  # its own series: no suspicion
    assert all(i["review"] is None for i in by_id.values())
    json.dumps(classes, allow_nan=False)  # what /api/classes serves


def test_without_relevance_every_image_is_kept_and_unscored(tmp_path):
    root = make_root(tmp_path / "data", relevance=False)
    classes = review_classes(root)
    images = [i for c in classes for i in c["images"]]
    assert [i["image_id"] for i in classes[0]["images"]] == sorted(_images_of("tt01"))
    assert {(i["auto_decision"], i["score"], i["outlier_score"]) for i in images} == {
        ("keep", None, None)}
    assert classes[0]["auto_irrelevant"] == 0


def test_each_image_shows_its_latest_review(root):
    record_review(root, ["tt01-2"], "reject", "ann", now=TS)
    record_review(root, ["tt01-2", "tt02-1"], "accept", "bob", now=TS.replace(hour=13))
    by_id = {i["image_id"]: i for c in review_classes(root) for i in c["images"]}
    assert (by_id["tt01-2"]["review"], by_id["tt01-2"]["reviewer"]) == ("accept", "bob")
    assert by_id["tt01-2"]["decided_at"].startswith("2024-05-01T13:00")
    assert by_id["tt02-1"]["review"] == "accept" and by_id["tt01-0"]["review"] is None


def test_read_image_gives_the_stored_bytes_and_their_type(root):
    paths = load_review(root).paths
    assert set(paths) == set(TT01) | set(_images_of("tt02"))
    data, kind = read_image(root, "tt01-0", paths)
    assert (data, kind) == (noise_jpeg(1), "image/jpeg")  # tt01-0 was stored first
    with pytest.raises(KeyError):
        read_image(root, "tt03-0", paths)  # not kept: not in the review


# -- the server ----------------------------------------------------------------------------------


@pytest.fixture
def done_calls() -> list[str]:
    """One entry per call of the server's `on_done`."""
    return []


@pytest.fixture
def server(root, done_calls):
    with ReviewServer(root, reviewer="tester", on_done=lambda: done_calls.append("done")) as s:
        yield s


def _client(server: ReviewServer) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}",
                        headers={TOKEN_HEADER: server.token}, timeout=30)


def _post(server: ReviewServer, path: str, body: Any) -> httpx.Response:
    with _client(server) as c:
        return c.post(path, json=body)


def test_serves_on_loopback_only_with_a_token_in_the_url(server):
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/\?token=[\w-]{{20,}}", server.url)
    # Bound to 127.0.0.1 alone: another loopback address (or any interface) finds no one.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.2:{server.port}/", timeout=10)
    page = httpx.get(server.url, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<b>tester</b>" in page.text


def test_every_request_without_the_token_is_forbidden(server, root, done_calls):
    requests = [("GET", "/", None), ("GET", "/api/classes", None),
                ("GET", "/image/tt01-0", None), ("POST", "/api/decide",
                 {"image_ids": ["tt01-0"], "decision": "reject"}),
                ("POST", "/api/undo", {"image_ids": ["tt01-0"]}), ("POST", "/api/done", {}),
                ("GET", "/nowhere", None)]
    for token in (None, "wrong", server.token[:-1]):
        for method, path, body in requests:
            headers = {TOKEN_HEADER: token} if token else {}
            r = httpx.request(method, f"http://127.0.0.1:{server.port}{path}", json=body,
                              headers=headers, timeout=30)
            assert r.status_code == 403, (token, path, r.text)
            assert set(r.json()) == {"error"} and "\n" not in r.json()["error"]
    assert all_reviews(root).num_rows == 0 and done_calls == []
    # The token in the query (the page's images) or in the header (its API calls).
    ok = httpx.get(f"http://127.0.0.1:{server.port}/image/tt01-0?token={server.token}",
                   timeout=30)
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    with _client(server) as c:
        assert c.get("/api/classes").status_code == 200


def test_a_refused_request_leaves_the_connection_usable(server, root):
    """A POST refused before its body was read closes the connection: the client's next
    request (same client, keep-alive) is not misread from the body left behind."""
    decide = {"image_ids": ["tt01-0"], "decision": "reject"}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
        for _ in range(3):
            assert c.post("/api/decide", json=decide).status_code == 403
            r = c.post("/api/decide", json=decide, headers={TOKEN_HEADER: server.token})
            assert r.status_code == 200, r.text
    assert all_reviews(root).num_rows == 3


def test_images_of_the_review_only(server, root):
    with _client(server) as c:
        classes = c.get("/api/classes").json()["classes"]
        assert [i["image_id"] for i in classes[0]["images"]] == TT01_ORDER
        image = c.get("/image/tt01-4")
        expected, _ = read_image(root, "tt01-4", server.review.paths)
        assert image.status_code == 200 and image.content == expected
        for other in ("tt03-0", "tt01-junk", "tt01-failed", "..%2Ftv100.json"):
            assert c.get(f"/image/{other}").status_code == 404, other


def test_a_decision_is_in_the_table_when_it_is_acknowledged(server, root):
    r = _post(server, "/api/decide", {"image_ids": ["tt01-1", "tt01-4"], "decision": "reject"})
    assert r.status_code == 200 and r.json() == {"ok": True, "recorded": 2}
    rows = latest_reviews(root).to_pylist()  # read from disk, right after the answer
    assert [(x["image_id"], x["decision"], x["reviewer"]) for x in rows] == [
        ("tt01-1", "reject", "tester"), ("tt01-4", "reject", "tester")]
    r = _post(server, "/api/decide", {"image_ids": ["tt01-1"], "decision": "accept"})
    assert r.status_code == 200
    assert _latest(root) == {"tt01-1": "accept", "tt01-4": "reject"}  # the last one wins
    assert all_reviews(root).num_rows == 3  # appended, never rewritten


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"image_ids": ["tt01-0"], "decision": "maybe"}).encode(), "decision 'maybe'"),
    (json.dumps({"image_ids": ["tt01-0"]}).encode(), "decision None"),
    (json.dumps({"image_ids": [], "decision": "accept"}).encode(), "image_ids"),
    (json.dumps({"image_ids": "tt01-0", "decision": "accept"}).encode(), "image_ids"),
    (json.dumps({"image_ids": [7], "decision": "accept"}).encode(), "image_ids"),
    (json.dumps({"image_ids": ["tt03-0"], "decision": "accept"}).encode(), "unknown image"),
], ids=["bad-json", "not-an-object", "bad-decision", "no-decision", "no-ids", "ids-not-a-list",
        "id-not-a-string", "image-not-in-review"])
def test_a_bad_decision_is_a_400_with_one_line_and_nothing_recorded(server, root, body, needle):
    with _client(server) as c:
        r = c.post("/api/decide", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert needle in error and "\n" not in error
    assert all_reviews(root).num_rows == 0


def test_unknown_routes_and_methods(server):
    with _client(server) as c:
        assert c.get("/api/nothing").status_code == 404
        assert c.get("/api/decide").status_code == 405
        assert c.post("/api/classes", json={}).status_code == 405
        assert c.post("/image/tt01-0", json={}).status_code == 405


def test_undo_appends_the_decision_each_image_had_before(server, root):
    # tt01-2 (kept by the scorer): reject, then accept; tt01-1 (irrelevant): accept.
    for ids, decision in ((["tt01-2"], "reject"), (["tt01-2"], "accept"),
                          (["tt01-1", "tt01-2"], "accept")):
        assert _post(server, "/api/decide", {"image_ids": ids, "decision": decision}).is_success
    # Undo the last: tt01-2 had a human decision (accept), tt01-1 none: it gets the
    # scorer's (irrelevant: reject).
    r = _post(server, "/api/undo", {"image_ids": ["tt01-2", "tt01-1"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "recorded": 2,
                        "restored": {"tt01-1": "reject", "tt01-2": "accept"}}
    assert _latest(root) == {"tt01-1": "reject", "tt01-2": "accept"}
    # Undo only undoes the last decision not undone yet: its ids must match.
    r = _post(server, "/api/undo", {"image_ids": ["tt01-1"]})
    assert r.status_code == 409 and "reload" in r.json()["error"]
    r = _post(server, "/api/undo", {"image_ids": ["tt01-2"]})  # accept -> reject
    assert r.json()["restored"] == {"tt01-2": "reject"}
    r = _post(server, "/api/undo", {"image_ids": ["tt01-2"]})  # reject -> none: keep = accept
    assert r.json()["restored"] == {"tt01-2": "accept"}
    r = _post(server, "/api/undo", {"image_ids": ["tt01-2"]})
    assert r.status_code == 409 and "nothing to undo" in r.json()["error"]
    history = [(x["image_id"], x["decision"]) for x in all_reviews(root).to_pylist()]
    assert history == [
        ("tt01-2", "reject"), ("tt01-2", "accept"), ("tt01-1", "accept"), ("tt01-2", "accept"),
        ("tt01-2", "accept"), ("tt01-1", "reject"),  # the first undo: one shard per decision
        ("tt01-2", "reject"), ("tt01-2", "accept"),
    ]
    # The final decisions are the scorer's again.
    classes = review_classes(root)
    assert {i["image_id"]: i["review"] for i in classes[0]["images"]}["tt01-1"] == "reject"


def test_done_calls_on_done_then_answers(server, done_calls):
    r = _post(server, "/api/done", {})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert done_calls == ["done"]


def test_a_decision_on_a_stopped_server_is_refused_not_lost(root):
    server = ReviewServer(root, reviewer="tester").start()
    port = server.port
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/api/decide", timeout=10,
                   json={"image_ids": ["tt01-0"], "decision": "reject"},
                   headers={TOKEN_HEADER: server.token})
    assert all_reviews(root).num_rows == 0


def test_the_page_escapes_what_it_shows(root):
    with ReviewServer(root, reviewer="<img src=x onerror=alert(1)>") as server:
        page = httpx.get(server.url, timeout=30).text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert f'const TOKEN = "{server.token}";' in page


def test_an_empty_reviewer_is_refused(root):
    with pytest.raises(ValueError, match="reviewer"):
        ReviewServer(root, reviewer="  ")


# -- the command ---------------------------------------------------------------------------------


def _invoke(args: list[str]):
    res = runner.invoke(app, args)
    return res, res.output


def test_review_without_classes_says_run_rank_first(tmp_path):
    data = tmp_path / "data"
    make_root(data, classes=False)
    res, out = _invoke(["review", "--data", str(data)])
    assert res.exit_code == 2, out
    assert "tv100 rank" in out and "classes" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    empty = tmp_path / "nothing"
    res, out = _invoke(["review", "--data", str(empty)])
    assert res.exit_code == 2 and "nothing built here yet" in out, out
    assert not empty.exists()  # nothing created


def test_review_on_a_busy_port_is_one_line(tmp_path):
    data = tmp_path / "data"
    make_root(data)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res, out = _invoke(["review", "--data", str(data), "--port", str(port)])
    assert res.exit_code == 2, out
    assert f"--port {port}" in out and "in use" in out.lower() and "Traceback" not in out


def test_review_with_an_empty_reviewer_is_one_line(tmp_path):
    data = tmp_path / "data"
    make_root(data)
    res, out = _invoke(["review", "--data", str(data), "--reviewer", " "])
    assert res.exit_code == 2 and "--reviewer" in out, out


# -- in a real browser ---------------------------------------------------------------------------

#: Every tile: image_id -> [its review, whether saved ("1"), pending ("0") or undecided ("")].
TILES_JS = """Object.fromEntries([...document.querySelectorAll('.tile')].map(
  t => [t.dataset.id, [t.dataset.review, t.dataset.saved]]))"""
CLASS_TILES_JS = "[...document.querySelectorAll('#class-%d .tile')].map(t => t.dataset.id)"
#: Hang guards on a busy 2-core machine, not timings.
START_S = 180
PAGE_S = 120


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's `chromium`, or set TV100_CHROMIUM)")
    b = Browser(executable, tmp_path_factory.mktemp("chromium"), width=1200, height=900)
    try:
        yield b
    finally:
        b.close()


@contextmanager
def review_command(
    data: Path, workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``tv100 review`` in its own process group: its process, the URL it printed, and the
    file of its standard output."""
    port = free_port()
    out, err = workdir / f"review-{port}.out", workdir / f"review-{port}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [*REVIEW, "--data", str(data), "--port", str(port), "--reviewer", "tester"],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=workdir,
            start_new_session=True,
        )
    try:
        pattern = re.compile(rf"^http://127\.0\.0\.1:{port}/\?token=[\w-]+$", re.M)
        deadline = time.monotonic() + START_S
        while not (match := pattern.search(out.read_text())):
            assert proc.poll() is None, f"tv100 review exited {proc.returncode}:\n{tail(err)}"
            assert time.monotonic() < deadline, f"tv100 review printed no URL:\n{tail(err)}"
            time.sleep(0.2)  # polls its output
        yield proc, match.group(0), out
    finally:
        kill_group(proc, grace_s=10)


def _open(browser: Browser, url: str) -> dict[str, list[str]]:
    browser.goto(url)
    loaded = browser.wait_for(
        "document.body && (document.body.dataset.broken ? 'broken' : document.body.dataset.ready)",
        lambda v: v in ("1", "broken"), "the review page, loaded", timeout=PAGE_S)
    assert loaded == "1", browser.eval("document.getElementById('error').innerText")
    return browser.eval(TILES_JS)


def test_review_in_a_real_browser_with_the_keyboard(browser, tmp_path):
    data = tmp_path / "data"
    root = make_root(data)
    with review_command(data, tmp_path) as (proc, url, _):
        tiles = _open(browser, url)
        assert set(tiles) == set(TT01_ORDER) | set(TT02_ORDER)
        assert browser.eval(CLASS_TILES_JS % 0) == TT01_ORDER
        assert browser.eval(CLASS_TILES_JS % 1) == TT02_ORDER
        head = browser.eval("document.querySelector('#class-0 header').innerText")
        assert "Alpha (2022)" in head and "2 of 6 irrelevant" in head and "reviewed 0 / 6" in head
        badge = browser.eval("document.querySelector('.tile[data-id=\"tt01-1\"] .auto').innerText")
        assert badge == "looks like Bravo"
        browser.wait_for("document.querySelector('.tile[data-id=\"tt01-1\"] img').naturalWidth",
                         lambda w: w == 48, "the first thumbnail", timeout=PAGE_S)
        assert browser.eval("document.body.dataset.focus") == TT01_ORDER[0]

        # Reject three images (each key moves on), then accept the rest of the class.
        for _ in range(3):
            browser.press("r")
        rejected, rest = TT01_ORDER[:3], TT01_ORDER[3:]
        browser.wait_for(TILES_JS, lambda t: all(t[i] == ["reject", "1"] for i in rejected),
                         "three rejects, saved", timeout=PAGE_S)
        browser.press("A")
        browser.wait_for(TILES_JS, lambda t: all(t[i] == ["accept", "1"] for i in rest),
                         "the rest of the class accepted, saved", timeout=PAGE_S)
        assert _latest(root) == {**dict.fromkeys(rejected, "reject"),
                                 **dict.fromkeys(rest, "accept")}
        rows = all_reviews(root).to_pylist()
        assert len(rows) == 6 and {r["reviewer"] for r in rows} == {"tester"}
        progress = browser.eval("document.querySelector('#class-0 .progress').innerText")
        assert progress.startswith("reviewed 6 / 6 (3 accepted, 3 rejected)")
        assert browser.eval("document.getElementById('overall').innerText").startswith(
            "reviewed 6 / 11 images")

        # Next class; reject its first image; kill the server the moment it is acknowledged.
        browser.press("n")
        browser.wait_for("document.body.dataset.focus", lambda f: f == TT02_ORDER[0],
                         "the focus on the next class")
        browser.press("x")
        browser.wait_for(TILES_JS, lambda t: t[TT02_ORDER[0]] == ["reject", "1"],
                         "the reject acknowledged", timeout=PAGE_S)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    assert _latest(root)[TT02_ORDER[0]] == "reject"  # acknowledged, so in the table

    # A new server shows every earlier decision, saved; the focus is on the first undecided.
    with review_command(data, tmp_path) as (proc, url, out):
        tiles = _open(browser, url)
        expected = {**{i: ["reject", "1"] for i in [*rejected, TT02_ORDER[0]]},
                    **{i: ["accept", "1"] for i in rest},
                    **{i: ["", ""] for i in TT02_ORDER[1:]}}
        assert tiles == expected
        focus = "document.body.dataset.focus"
        assert browser.eval(focus) == TT02_ORDER[1]
        # Undo: the image had no decision before, so it gets the scorer's back (keep: accept).
        browser.press("r")
        browser.wait_for(TILES_JS, lambda t: t[TT02_ORDER[1]] == ["reject", "1"], "a reject")
        browser.press("u")
        browser.wait_for(TILES_JS, lambda t: t[TT02_ORDER[1]] == ["accept", "1"], "its undo")
        assert _latest(root)[TT02_ORDER[1]] == "accept"
        assert browser.eval(focus) == TT02_ORDER[1]
        # Moves: across the grid, and on to the class above or below (same column). The
        # window is wide enough for each class to fit on one row.
        cols = int(browser.eval("getComputedStyle(document.documentElement)"
                                ".getPropertyValue('--cols')"))
        assert cols >= len(TT01_ORDER)
        for key, expected in [
            ("ArrowUp", TT01_ORDER[1]), ("ArrowDown", TT02_ORDER[1]), ("l", TT02_ORDER[2]),
            ("ArrowLeft", TT02_ORDER[1]), ("h", TT02_ORDER[0]), ("k", TT01_ORDER[0]),
            ("ArrowRight", TT01_ORDER[1]), ("j", TT02_ORDER[1]), ("p", TT01_ORDER[0]),
            ("p", TT01_ORDER[0]), ("n", TT02_ORDER[0]), ("ArrowDown", TT02_ORDER[0]),
        ]:
            browser.press(key)
            assert browser.eval(focus) == expected, key
        # Done (shift+d): the page says so and the command ends by itself.
        browser.press("D")
        browser.wait_for("document.body.dataset.done", lambda v: v == "1", "the review done")
        assert proc.wait(60) == 0
    assert "review done: 8 of 11 images reviewed" in out.read_text()
