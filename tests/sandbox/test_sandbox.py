"""The sandbox: deterministic ground truth, the IMDb-like site over real HTTP, fault routes."""

from __future__ import annotations

import collections
import gzip
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pyarrow as pa
import pytest

from tv100.sandbox.imdb_datasets import DATASET_NAMES, build_datasets, write_datasets
from tv100.sandbox.server import Request, Response, SandboxServer
from tv100.sandbox.world import (
    COUNTRY_LANGUAGE,
    IMDB_GENRES,
    SERIES_KINDS,
    allocate_countries,
    build_world,
    series_rng,
)
from tv100.tasks.discover.imdb_pages import list_page_url, parse_list_page, parse_title_page


@pytest.fixture(scope="module")
def world():
    return build_world(seed=0)


@pytest.fixture(scope="module")
def server(world):
    with SandboxServer(world) as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=5.0) as c:
        yield c


# ============================================================================ world


def test_same_seed_same_world_and_bytes(tmp_path):
    a, b = build_world(7), build_world(7)
    ta, tb = a.manifest_tables()["sandbox_series"], b.manifest_tables()["sandbox_series"]
    assert ta.equals(tb)
    assert build_datasets(a) == build_datasets(b)
    write_datasets(a, tmp_path / "a")
    write_datasets(b, tmp_path / "b")
    for name in DATASET_NAMES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_different_seed_different_world():
    a, b = build_world(0), build_world(1)
    assert not a.manifest_tables()["sandbox_series"].equals(b.manifest_tables()["sandbox_series"])
    assert {t.series_id for t in a.titles} != {t.series_id for t in b.titles}
    da, db = build_datasets(a), build_datasets(b)
    assert all(da[n] != db[n] for n in DATASET_NAMES)


def test_gzip_is_deterministic(world):
    data = build_datasets(world)["title.basics.tsv.gz"]
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert gzip.decompress(data).startswith(b"tconst\ttitleType\tprimaryTitle\t")


def test_series_streams_are_independent():
    x = series_rng(0, "tt1234567", "title").random(4)
    assert (x == series_rng(0, "tt1234567", "title").random(4)).all()
    assert not (x == series_rng(0, "tt1234567", "images").random(4)).any()
    assert not (x == series_rng(1, "tt1234567", "title").random(4)).any()
    w = build_world(3, n_series=20)
    before = w.titles
    w.rng(w.titles[0].series_id, "images").random(100)  # later ground truth draws
    assert build_world(3, n_series=20).titles == before


def test_manifest_schema(world):
    table = world.manifest_tables()["sandbox_series"]
    expect = {
        "series_id": pa.string(),
        "title": pa.string(),
        "original_title": pa.string(),
        "kind": pa.string(),
        "start_year": pa.int32(),
        "end_year": pa.int32(),
        "is_adult": pa.bool_(),
        "genres": pa.list_(pa.string()),
        "countries": pa.list_(pa.string()),
        "languages": pa.list_(pa.string()),
        "rating": pa.float32(),
        "num_votes": pa.int64(),
        "negative_reason": pa.string(),
        "expected": pa.bool_(),
    }
    for name, typ in expect.items():
        assert table.schema.field(name).type == typ, name
    assert table.num_rows == len(world.titles) == 48 + 10
    assert table.column("series_id").to_pylist() == sorted(t.series_id for t in world.titles)


def test_country_mix_resembles_tv100(world):
    cands = [t for t in world.titles if t.expected]
    assert len(cands) == 48
    counts = collections.Counter(t.countries[0] for t in cands)
    assert counts["TH"] >= 1 and counts["US"] >= 1
    shares = {"CN": 0.55, "JP": 0.25, "KR": 0.16}
    for code, share in shares.items():
        assert abs(counts[code] / 48 - share) < 0.04, (code, counts)
    assert set(counts) == {"CN", "JP", "KR", "TH", "US"}
    assert collections.Counter(allocate_countries(100)) == {
        "CN": 55, "JP": 25, "KR": 16, "TH": 3, "US": 1,
    }  # fmt: skip
    # Another seed: same mix, different assignment.
    other = build_world(1)
    assert collections.Counter(t.countries[0] for t in other.titles if t.expected) == counts


def test_negatives_present(world):
    negs = world.negatives()
    reasons = collections.Counter(t.negative_reason for t in negs)
    assert reasons == {"movie": 2, "episode": 2, "before_cutoff": 3, "adult": 2, "no_year": 1}
    for t in negs:
        assert not t.expected
        if t.negative_reason == "movie":
            assert t.kind == "movie"
        elif t.negative_reason == "episode":
            assert t.kind == "tvEpisode"
            assert world.by_id[t.parent_id].expected
        elif t.negative_reason == "before_cutoff":
            assert t.kind in SERIES_KINDS and 2015 <= t.start_year <= 2021
        elif t.negative_reason == "adult":
            assert t.is_adult and t.kind in SERIES_KINDS and t.start_year > 2021
            assert "Adult" in t.genres
        else:
            assert t.kind == "tvMiniSeries" and t.start_year is None
    assert 2021 in {t.start_year for t in negs if t.negative_reason == "before_cutoff"}
    # The rule-based view of IMDb's fields agrees with the ground-truth flags.
    assert {t.series_id for t in world.candidates(2021)} == {
        t.series_id for t in world.titles if t.expected
    }


def test_candidate_fields(world):
    ids = [t.series_id for t in world.titles]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"tt\d{7,8}", i) for i in ids)
    assert {len(i) for i in ids} == {9, 10}
    cands = world.candidates()
    assert {t.kind for t in cands} == set(SERIES_KINDS)
    assert {t.start_year for t in cands} <= {2022, 2023, 2024, 2025}
    assert any(t.end_year is None for t in cands) and any(t.end_year for t in cands)
    for t in cands:
        assert t.end_year is None or t.end_year >= t.start_year
        assert set(t.genres) <= set(IMDB_GENRES) and 1 <= len(t.genres) <= 3
        assert set(t.languages) <= {COUNTRY_LANGUAGE[c] for c in t.countries}
        if t.rating is not None:
            assert 5.0 <= t.rating <= 9.5
            assert t.num_votes >= 5
    rated = sorted(t.num_votes for t in cands if t.num_votes)
    assert rated[0] < 1000 and rated[-1] >= 1_000_000  # long-tailed
    assert sum(1 for t in cands if t.rating is None) >= 1
    assert sum(1 for t in cands if t.poster is None) >= 1
    assert sum(1 for t in cands if not t.languages) >= 1
    assert all(t.languages for t in cands if t.series_id != _no_language_id(cands))
    named = [t.title for t in world.titles if t.kind != "tvEpisode"]
    assert len(set(named)) == len(named)
    titles = [t.title for t in world.titles]
    assert any('"' in x for x in titles) and any("'" in x for x in titles)
    assert any(not t.original_title.isascii() for t in cands)
    assert any(t.title_de != t.title for t in cands)


def _no_language_id(cands) -> str:
    (only,) = [t.series_id for t in cands if not t.languages]
    return only


# ============================================================================ IMDb over HTTP


def _crawl(client: httpx.Client, base: str, locale: str | None, count: int) -> list[dict]:
    out, start, pages = [], 1, 0
    while True:
        r = client.get(list_page_url(base, 2021, start, locale=locale, count=count))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        pages += 1
        items = parse_list_page(r.content)
        if not items:
            break
        out.extend(items)
        start += len(items)
    assert pages >= 2
    return out


@pytest.mark.parametrize("locale", [None, "de"])
def test_list_pages_over_http(server, client, world, locale):
    items = _crawl(client, server.base_url, locale, count=12)
    served = {i.series_id for i in items}
    cands = {t.series_id for t in world.candidates()}
    leaked = {
        t.series_id
        for t in world.titles
        if t.negative_reason in ("before_cutoff", "adult", "no_year")
    }
    assert served == cands | leaked
    assert len(items) == len(served)  # no duplicates across pages
    assert [i.rank for i in items] == list(range(1, len(items) + 1))
    # Default page size is 50 with a "more" button; the page after the last is empty.
    first = client.get(list_page_url(server.base_url, 2021, 1, locale=locale))
    assert len(parse_list_page(first.content)) == 50
    assert b"ipc-see-more__button" in first.content
    last = client.get(list_page_url(server.base_url, 2021, 51, locale=locale))
    assert 0 < len(parse_list_page(last.content)) < 50
    assert b"ipc-see-more__button" not in last.content


def test_list_honours_title_type_and_release_date(server, client, world):
    r = client.get("/search/title/", params={"title_type": "tv_miniseries", "count": 250})
    kinds = {world.by_id[i.series_id].kind for i in parse_list_page(r.content)}
    assert kinds == {"tvMiniSeries"}
    r = client.get("/search/title/", params={"title_type": "feature", "count": 250})
    assert {i.series_id for i in parse_list_page(r.content)} == {
        t.series_id for t in world.titles if t.kind == "movie"
    }
    r = client.get(
        "/search/title/",
        params={"title_type": "tv_series", "release_date": "2025-01-01,", "count": 250},
    )
    years = {world.by_id[i.series_id].start_year for i in parse_list_page(r.content)}
    assert 2025 in years and not ({2022, 2023, 2024} & years)


def test_title_pages_over_http(server, client, world):
    for t in world.titles[:12]:
        for prefix in ("", "/de"):
            r = client.get(f"{prefix}/title/{t.series_id}/")
            assert r.status_code == 200
            page = parse_title_page(r.content)
            assert page is not None and page.series_id == t.series_id
            assert list(page.countries) == list(t.countries)
            if t.poster is not None:
                assert page.image_url == server.base_url + t.poster.path
    assert client.get("/title/tt0000001/").status_code == 404
    assert client.get("/fr/title/tt0000001/").status_code == 404
    assert client.get("/nothing/here").status_code == 404


def test_datasets_over_http_with_validators(server, client, world):
    expected = build_datasets(world)
    for name in DATASET_NAMES:
        r = client.get(f"/datasets/{name}")
        assert r.status_code == 200
        assert r.content == expected[name]
        assert int(r.headers["content-length"]) == len(expected[name])
        etag, modified = r.headers["etag"], r.headers["last-modified"]
        assert parsedate_to_datetime(modified) == world.datasets_modified
        again = client.get(f"/datasets/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        weak = client.get(f"/datasets/{name}", headers={"If-None-Match": f'"x", W/{etag}'})
        assert weak.status_code == 304
        stale = client.get(f"/datasets/{name}", headers={"If-None-Match": '"other"'})
        assert stale.status_code == 200 and stale.content == expected[name]
        ims = client.get(f"/datasets/{name}", headers={"If-Modified-Since": modified})
        assert ims.status_code == 304
        older = format_datetime(world.datasets_modified.replace(year=2020), usegmt=True)
        assert (
            client.get(f"/datasets/{name}", headers={"If-Modified-Since": older}).status_code == 200
        )
        head = client.head(f"/datasets/{name}")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(expected[name])
    assert client.get("/datasets/title.crew.tsv.gz").status_code == 404


def test_keep_alive_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.connect()
        sock = conn.sock
        for path in ("/_fault/notfound", "/datasets/title.ratings.tsv.gz", "/title/x/"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.getheader("Connection") != "close"
        conn.request("GET", "/_fault/slowbody?seconds=0&chunks=3")
        resp = conn.getresponse()
        assert resp.read() == b"chunk 0\nchunk 1\nchunk 2\n"
        conn.request("GET", "/_fault/big?bytes=10")
        assert conn.getresponse().read() == b"0123456789"
        assert conn.sock is sock  # http.client would have reconnected after a close
        conn.request("GET", "/_fault/lying-length?declared=20&actual=20")
        resp = conn.getresponse()
        assert resp.getheader("Connection") == "close"
        resp.read()
        assert conn.sock is None
    finally:
        conn.close()


# ============================================================================ faults


def test_fault_status_and_count(client):
    codes = [
        client.get("/_fault/status", params={"code": 503, "times": 2, "key": "s1"})
        for _ in range(4)
    ]
    assert [r.status_code for r in codes] == [503, 503, 200, 200]
    assert codes[-1].text == "ok"
    assert client.get("/_fault/count", params={"key": "s1"}).json() == {"count": 4}
    assert client.get("/_fault/count", params={"key": "s1"}).json() == {"count": 4}
    assert client.get("/_fault/count", params={"key": "never"}).json() == {"count": 0}
    other = client.get("/_fault/status", params={"code": 500, "times": 1, "key": "s2"})
    assert other.status_code == 500  # state is per key
    client.get("/_fault/reset", params={"key": "s1"})
    assert client.get("/_fault/count", params={"key": "s1"}).json() == {"count": 0}
    assert client.get("/_fault/status", params={"times": 1, "key": "s1"}).status_code == 503


def test_fault_429(client):
    params = {"times": 2, "retry_after": 3, "key": "r1"}
    first = client.get("/_fault/429", params=params)
    assert first.status_code == 429 and first.headers["retry-after"] == "3"
    assert client.get("/_fault/429", params=params).status_code == 429
    assert client.get("/_fault/429", params=params).status_code == 200
    before = time.time()
    dated = client.get(
        "/_fault/429", params={"times": 1, "retry_after": 5, "http_date": 1, "key": "r2"}
    )
    after = time.time()
    assert dated.status_code == 429
    # now + 5 s, rounded up to the HTTP date's whole second, where "now" is any moment of
    # the request (however long a busy machine made it take).
    when = parsedate_to_datetime(dated.headers["retry-after"]).timestamp()
    assert before + 5 - 1 <= when <= after + 5 + 1


def test_fault_slow(server):
    # A wide gap between the server's wait and the read timeout: a busy machine can delay
    # the client's wake-up, never shorten the server's sleep (lower bounds only).
    url = f"{server.base_url}/_fault/slow?seconds=1.5"
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=httpx.Timeout(10.0, read=0.2))
    t0 = time.monotonic()
    r = httpx.get(url, timeout=10.0)
    assert r.status_code == 200 and r.text == "ok"
    assert time.monotonic() - t0 >= 1.45


def test_fault_slowbody(server):
    url = f"{server.base_url}/_fault/slowbody?seconds=0.8&chunks=3"
    with httpx.Client(timeout=httpx.Timeout(10.0, read=0.2)) as c:
        # Headers at once: the response opens under a read timeout far below the chunk wait.
        with c.stream("GET", url) as r:
            assert r.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                r.read()
    t0 = time.monotonic()
    r = httpx.get(url, timeout=10.0)
    assert r.text == "chunk 0\nchunk 1\nchunk 2\n"
    assert time.monotonic() - t0 >= 3 * 0.8 - 0.05
    assert "content-length" not in r.headers


def test_fault_big(client):
    r = client.get("/_fault/big", params={"bytes": 200_000})
    assert len(r.content) == 200_000 and r.headers["content-length"] == "200000"
    chunked = client.get("/_fault/big", params={"bytes": 70_000, "nolength": 1})
    assert len(chunked.content) == 70_000
    assert "content-length" not in chunked.headers
    assert chunked.headers["transfer-encoding"] == "chunked"
    with client.stream("GET", "/_fault/big", params={"bytes": 10_000_000}) as s:
        assert s.headers["content-length"] == "10000000"  # a client can refuse before reading


def test_fault_lying_length(server):
    url = f"{server.base_url}/_fault/lying-length?declared=1000&actual=10"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, timeout=5.0)
    with httpx.stream("GET", url, timeout=5.0) as r:
        assert r.headers["content-length"] == "1000"
        got = b""
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in r.iter_raw():
                got += chunk
        assert got == b"0123456789"


def test_fault_redirects(server, client):
    r = client.get("/_fault/redirect", params={"to": "/_fault/notfound"})
    assert r.status_code == 302 and r.headers["location"] == "/_fault/notfound"
    followed = client.get(
        "/_fault/redirect", params={"to": "/datasets/title.ratings.tsv.gz"}, follow_redirects=True
    )
    assert followed.status_code == 200 and followed.url.path == "/datasets/title.ratings.tsv.gz"
    loop = client.get("/_fault/redirect-loop", params={"n": 4})
    assert loop.status_code == 302 and loop.headers["location"].endswith("redirect-loop?n=5")
    with httpx.Client(timeout=5.0, max_redirects=5) as c, pytest.raises(httpx.TooManyRedirects):
        c.get(f"{server.base_url}/_fault/redirect-loop?n=0", follow_redirects=True)
    assert client.get("/_fault/redirect").status_code == 400


def test_fault_notfound_echo_and_bad_params(client):
    assert client.get("/_fault/notfound").status_code == 404
    assert client.get("/_fault/no-such-fault").status_code == 404
    echoed = client.get(
        "/_fault/echo-headers", headers={"User-Agent": "tv100-test/1.0", "X-Probe": "yes"}
    ).json()
    assert echoed["user-agent"] == "tv100-test/1.0" and echoed["x-probe"] == "yes"
    assert client.get("/_fault/status", params={"times": "many"}).status_code == 400
    assert client.get("/_fault/slow", params={"seconds": "-1"}).status_code == 400


def test_faults_are_thread_safe(server):
    import concurrent.futures

    url = f"{server.base_url}/_fault/status?code=503&times=10&key=conc"
    with httpx.Client(timeout=5.0) as c, concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: c.get(url).status_code, range(40)))
    assert collections.Counter(codes) == {503: 10, 200: 30}
    assert httpx.get(f"{server.base_url}/_fault/count?key=conc").json() == {"count": 40}


# ============================================================================ server mechanics


def test_register_routes_errors_and_quiet_log(world, capfd):
    calls = []

    def hello(request: Request) -> Response | None:
        calls.append(request)
        if request.path.endswith("/none"):
            return None
        return Response(
            headers={"Content-Type": "text/plain"},
            chunks=[b"a", b"b"],
            content_length=2,
        )

    def deeper(request: Request) -> Response:
        return Response.json({"q": request.query, "path": request.path})

    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    with SandboxServer(world) as srv:
        srv.register("/engine/", hello)
        srv.register("/engine/deep/", deeper)
        srv.register("/broken/", broken)
        with pytest.raises(ValueError):
            srv.register("nope", hello)
        with httpx.Client(base_url=srv.base_url, timeout=5.0) as c:
            assert c.get("/engine/x", headers={"X-A": "1"}).content == b"ab"
            assert calls[-1].headers["x-a"] == "1" and calls[-1].method == "GET"
            assert c.get("/engine/deep/y?k=v&k=w").json() == {
                "q": {"k": "v"},
                "path": "/engine/deep/y",
            }
            assert c.get("/engine/none").status_code == 404
            assert c.get("/broken/").status_code == 500
        assert len(srv.errors) == 1 and "boom" in srv.errors[0]
        assert any("/engine/x" in line for line in srv.request_log)
        port = srv.port
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0)


def test_stop_does_not_hang_on_slow_responses(world):
    import threading

    srv = SandboxServer(world).start()
    result: list[object] = []

    base = srv.base_url

    def slow():
        try:
            result.append(httpx.get(f"{base}/_fault/slow?seconds=120&key=stop", timeout=300.0))
        except httpx.HTTPError as err:
            result.append(err)

    thread = threading.Thread(target=slow)
    thread.start()
    # Stop once the server is handling the slow request (it counted it), not after a sleep.
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/_fault/count?key=stop", timeout=10).json()["count"] < 1:
        assert time.monotonic() < deadline, "the slow request never reached the server"
        time.sleep(0.02)
    srv.stop()
    # Ends with the stop, long before the 120 s response would (the client waits 300 s).
    thread.join(60)
    assert not thread.is_alive(), "stop() left the client waiting on the slow response"
    assert result and isinstance(result[0], httpx.HTTPError)
    srv.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = srv.base_url


def test_sandbox_serve_command():
    """`tv100 sandbox serve` serves IMDb, the engines and the image host until Ctrl-C."""
    exe = os.path.join(os.path.dirname(sys.executable), "tv100")
    proc = subprocess.Popen(
        [exe, "sandbox", "serve", "--port", "0", "--scale", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline().strip()
        m = re.fullmatch(r"sandbox web: (http://127\.0\.0\.1:\d+)", first)
        assert m, first
        base = m.group(1)
        r = httpx.get(f"{base}/datasets/title.ratings.tsv.gz", timeout=5.0)
        assert r.status_code == 200
        assert r.content == build_datasets(build_world(0))["title.ratings.tsv.gz"]
        title = build_world(0).candidates()[0].title
        page = httpx.get(f"{base}/bing/images/search", params={"q": f"{title} TV Series"})
        assert page.status_code == 200 and b"iusc" in page.content
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert proc.stderr.read() == ""
