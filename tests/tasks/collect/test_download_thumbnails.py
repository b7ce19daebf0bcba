"""Thumbnail-only hits end to end: collect from Google's basic-HTML layout, then download.

Google's basic-HTML results give only thumbnails and their source pages. The downloader
reads each page and stores the image its og:image names (`og_image`); when the page names
none, or its image cannot be stored, the thumbnail (`thumbnail`); a page that opts out of AI
use ends the row as `opted_out` (`source_page`). Ordinary hits (Bing's) say `image_url`. The
sandbox's ground truth for each image is `ImageCatalog.expected_through_page`.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.support.builds import SLOW_S, TIMEOUT_S, seed_series
from tv100.sandbox.engines import engine_urls
from tv100.sandbox.imagehost import THUMBNAIL_SIDE
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.download import download_hits
from tv100.tasks.collect.shards import image_id_for
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.urls import canonical_url

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def web():
    from tv100.sandbox.web import SandboxWeb

    with SandboxWeb(n_series=6, scale=0.1, slow_s=SLOW_S) as started:
        yield started


def requested(web, path: str) -> bool:
    return any(line.startswith(f'"GET {path} ') for line in web.server.request_log)


def pages_of(web) -> dict[str, object]:
    """Source page URL → the image it shows, over the whole catalog."""
    return {web.base_url + i.page_path: i for i in web.catalog.images}


def series_with_page_plants(web) -> list[str]:
    """The series whose Google results list an image with a page plant."""
    site = web.engines
    return [
        sid
        for sid in web.catalog.series_ids
        if any(i.page_plant for i in site.results("google", sid))
    ]


@pytest.fixture(scope="module")
def collected(prefect_harness, web, tmp_path_factory):
    """A collect run (Google basic-HTML and Bing) over the series with page plants."""
    from tv100.flows.collect import collect_flow

    ids = series_with_page_plants(web)
    assert ids, "the sandbox world has no page plant in Google's results"
    titles = [web.world.by_id[sid] for sid in ids]
    data = str(tmp_path_factory.mktemp("thumbs") / "data")
    seed_series(data, titles)
    cap = max(len(web.engines.results("bing", sid)) for sid in ids)
    result = collect_flow(
        data=data,
        engines=["google", "bing"],
        engine_urls=engine_urls(web.base_url, {"google": "basic"}),
        per_series_cap=cap,
        image_timeout_s=TIMEOUT_S,
        image_retries=1,
        allow_hosts=[web.host_port],
    )
    return DataRoot(data), ids, result


def test_thumbnail_only_hits_store_the_pages_image(web, collected):
    root, ids, result = collected
    base = web.base_url
    hits = read_table(root, "search_hits").to_pylist()
    rows = read_table(root, "images").to_pylist()
    assert len(rows) == result.images.hits == len(hits)  # no URL shared by two hits
    google = [r for r in rows if r["engine"] == "google"]
    bing = [r for r in rows if r["engine"] == "bing"]
    # Every Google result of those series was collected, thumbnail-only, and has its row.
    expected_google = sum(len(web.engines.results("google", sid)) for sid in ids)
    assert len(google) == expected_google
    assert all(h["thumbnail_only"] for h in hits if h["engine"] == "google")
    assert {r["source"] for r in bing} == {"image_url"}

    page_by_thumb = {h["image_url"]: h["page_url"] for h in hits if h["engine"] == "google"}
    by_page = pages_of(web)
    bing_sha = {(r["series_id"], r["url"]): r["sha256"] for r in bing}
    seen = set()
    for row in google:
        img = by_page[page_by_thumb[row["url"]]]
        status, source = web.catalog.expected_through_page(img.url_path)
        assert (row["status"], row["source"]) == (status, source), (img.plant, img.page_plant)
        seen.add((status, source))
        # The row is the hit's: its URL (the thumbnail) and id, whatever was stored.
        assert row["image_id"] == image_id_for(row["series_id"], canonical_url(row["url"]))
        if source == "og_image" and status == "ok":
            # The full image, the very bytes Bing's hit of it stored: bigger than a thumbnail.
            assert row["final_url"] == base + img.url_path and row["error_message"] is None
            assert row["sha256"] == bing_sha[(row["series_id"], base + img.url_path)]
            if img.plant != "junk_tiny":
                assert max(row["width"], row["height"]) > THUMBNAIL_SIDE
        elif source == "og_image":  # the image's own X-Robots-Tag
            assert row["error_message"] == "X-Robots-Tag: noai" and row["path"] is None
        elif source == "thumbnail" and status == "ok":
            assert row["final_url"] == row["url"] and row["error_message"] is None
            assert max(row["width"], row["height"]) <= THUMBNAIL_SIDE
        elif source == "thumbnail":  # the thumbnail failed too: both reasons
            assert row["http_status"] == 404
            assert "(thumbnail; the page's image was not used: " in row["error_message"]
        else:  # the page opted out: nothing downloaded, not even the thumbnail
            assert row["error_message"] == 'source page: <meta name="robots"> noai'
            assert row["final_url"] == base + img.page_path and row["path"] is None
            assert not requested(web, row["url"].removeprefix(base))
    assert {
        ("ok", "og_image"),
        ("ok", "thumbnail"),
        ("opted_out", "source_page"),
        ("http_error", "thumbnail"),
    } <= seen


def test_pages_honour_robots_and_are_read_once(web, collected):
    """A page's image under a robots-disallowed path is never requested: the thumbnail is
    stored instead; each source page is fetched once."""
    root, _ids, _result = collected
    rows = [r for r in read_table(root, "images").to_pylist() if r["engine"] == "google"]
    hits = [h for h in read_table(root, "search_hits").to_pylist() if h["engine"] == "google"]
    private = [i for i in web.catalog.images if i.plant == "fault_robots"]
    private_pages = {web.base_url + i.page_path for i in private}
    listed = [h for h in hits if h["page_url"] in private_pages]
    assert listed, "no robots-disallowed image among the Google results"
    for hit in listed:
        (row,) = [r for r in rows if r["url"] == hit["image_url"]]
        assert (row["status"], row["source"]) == ("ok", "thumbnail")
    assert not any(requested(web, i.url_path) for i in private)
    log = list(web.server.request_log)
    for hit in hits:
        path = hit["page_url"].removeprefix(web.base_url)
        assert sum(1 for line in log if line.startswith(f'"GET {path} ')) == 1


def test_rerun_downloads_nothing(web, collected):
    root, _ids, _result = collected
    before = open(root.path("tables", "images.parquet"), "rb").read()
    config = DownloadConfig(http=HttpConfig(allow_hosts=(web.host_port,), retries=0))
    again = download_hits(read_table(root, "search_hits"), root, config)
    assert again.downloaded_now == 0
    assert open(root.path("tables", "images.parquet"), "rb").read() == before


def test_page_opt_out_not_honoured_and_hits_without_a_page(web, tmp_path):
    """With opt-outs off the opting-out page's image is stored; a thumbnail-only hit without
    a page, or whose page is missing, stores the thumbnail (an ok row: no error message)."""
    base = web.base_url
    site = web.engines
    noai = next(i for i in web.catalog.images if i.page_plant == "page_noai")
    plain = next(
        i for i in site.results("google", noai.series_id) if i.plant is None and not i.page_plant
    )
    thumb = {i.url_path: f"{base}/google/images?q=tbn:{site._thumb_id(i)}" for i in (noai, plain)}
    hits = pa.table({
        "series_id": [noai.series_id] * 3,
        "engine": ["google"] * 3,
        "rank": pa.array([1, 2, 3], pa.int32()),
        "image_url": [thumb[noai.url_path], thumb[plain.url_path], thumb[plain.url_path] + "&s"],
        "page_url": [base + noai.page_path, None, base + "/page/000000000000.html"],
        "thumbnail_only": [True, True, True],
    })
    root = DataRoot(str(tmp_path / "data")).ensure()
    http = HttpConfig(allow_hosts=(web.host_port,), retries=0, timeout_s=TIMEOUT_S)
    download_hits(hits, root, DownloadConfig(honour_opt_out=False, http=http))
    rows = {r["rank"]: r for r in read_table(root, "images").to_pylist()}
    assert (rows[1]["status"], rows[1]["source"], rows[1]["final_url"]) == (
        "ok", "og_image", base + noai.url_path
    )
    for rank in (2, 3):
        assert (rows[rank]["status"], rows[rank]["source"]) == ("ok", "thumbnail"), rank
        assert rows[rank]["error_message"] is None and rows[rank]["final_url"] == rows[rank]["url"]
