"""tv100.sandbox.imagehost: the sandbox image host, its plants and its ground truth."""

from __future__ import annotations

import collections
import hashlib
import io
import statistics
import time

import httpx
import imagehash
import numpy as np
import pytest
from PIL import Image

from tv100.sandbox.imagegen import SIZES
from tv100.sandbox.imagehost import (
    DUP_KINDS,
    EXPECTED_STATUS,
    FAULT_KINDS,
    IRRELEVANT_KINDS,
    JUNK_KINDS,
    MIN_PER_SERIES,
    PAGE_PLANTS,
    PLANT_KINDS,
    PRERENDER_CHUNK,
    THUMBNAIL_SIDE,
    HostedImage,
    build_catalog,
)
from tv100.sandbox.server import SandboxServer
from tv100.sandbox.world import build_world
from tv100.tasks.collect.config import OPT_OUT_DIRECTIVES
from tv100.tasks.collect.optout import page_opt_out
from tv100.tasks.collect.source_page import PageImage, page_image

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
SLOW_S = 3.0
TOO_LARGE = 3 * MIB


@pytest.fixture(scope="module")
def catalog(world):
    """The default world's catalog (scale 1.0)."""
    return build_catalog(world)


@pytest.fixture(scope="module")
def small(world):
    """A scaled-down catalog with a short slow fault and a small oversized body."""
    return build_catalog(world, scale=0.1, slow_s=SLOW_S, too_large_bytes=TOO_LARGE)


@pytest.fixture(scope="module")
def host(world, small):
    with SandboxServer(world) as server:
        small.register(server)
        yield server
        assert server.errors == []


@pytest.fixture
def client(host):
    with httpx.Client(base_url=host.base_url, timeout=10.0) as c:
        yield c


def first(cat, plant: str | None) -> HostedImage:
    return next(i for i in cat.images if i.plant == plant)


def phash(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return imagehash.phash(im).hash.flatten()


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))


# -- catalog structure (nothing rendered) -----------------------------------------------------


def test_long_tail_counts_without_rendering(world, catalog):
    candidates = [t.series_id for t in world.titles if t.expected]
    assert catalog.series_ids == candidates
    counts = [len(catalog.for_series(s)) for s in candidates]
    assert sum(counts) == len(catalog.images) >= 2000
    assert max(counts) / min(counts) >= 8
    # a long tail: the top eighth of the series holds far more than an eighth of the images
    top = sorted(counts, reverse=True)[: len(counts) // 8]
    assert sum(top) > 0.25 * sum(counts)
    for t in world.titles:
        if not t.expected:
            assert catalog.for_series(t.series_id) == []
    assert catalog.cache_info()["misses"] == 0, "building the catalog must not render"


def test_scale_multiplies_counts_with_a_floor(world, catalog, small):
    for sid in catalog.series_ids:
        n_big, n_small = len(catalog.for_series(sid)), len(small.for_series(sid))
        assert n_small >= MIN_PER_SERIES
        assert n_small <= max(MIN_PER_SERIES, 0.15 * n_big) + 6  # + world-level plants
    assert len(small.images) < 0.25 * len(catalog.images)


def test_every_plant_kind_is_present_and_modest(catalog):
    plants = collections.Counter(i.plant for i in catalog.images)
    assert set(plants) - {None} == set(PLANT_KINDS)
    for kind in (*JUNK_KINDS, *FAULT_KINDS):
        assert 1 <= plants[kind] <= 2, kind
    noise = sum(plants[k] for k in IRRELEVANT_KINDS)
    listed = len(catalog.images) - noise  # the share of duplicates predates the label noise
    dups = sum(plants[k] for k in (*DUP_KINDS, "cross_series"))
    assert 0.05 <= dups / listed <= 0.15
    assert plants[None] / listed > 0.8
    assert 0.08 <= noise / len(catalog.images) <= 0.2


def test_label_noise_is_drawn_per_series_long_tailed_with_its_truth(world, catalog):
    rates = []
    for sid in catalog.series_ids:
        own = catalog.for_series(sid)
        noisy = [i for i in own if i.plant in IRRELEVANT_KINDS]
        rates.append(len(noisy) / len(own))
        for img in noisy:
            assert img.expected_status == "ok" and img.original_url_path is None
            if img.plant == "irrelevant_other_series":
                assert img.true_series_id != sid and img.true_series_id in catalog.series_ids
                assert img.signature == catalog.signature_id(img.true_series_id)
            else:
                assert img.true_series_id is None and img.signature is None
        assert len(noisy) >= 1
    assert 0.04 <= min(rates) and max(rates) <= 0.36
    assert statistics.median(rates) < statistics.mean(rates) + 0.02  # skewed to few
    assert sum(r > 0.2 for r in rates) < len(rates) / 4  # long-tailed: few very noisy series
    plain = [i for i in catalog.images if i.plant is None]
    assert all(i.true_series_id == i.series_id for i in plain)
    pos = [catalog.for_series(i.series_id).index(i) / len(catalog.for_series(i.series_id))
           for i in catalog.images if i.plant in IRRELEVANT_KINDS]
    assert statistics.mean(pos) > 0.55


def test_irrelevant_images_are_fresh_pictures_not_junk(small):
    from tv100.tasks.clean.quality import assess_image  # the clean stage's junk checks

    noisy = [i for i in small.images if i.plant in IRRELEVANT_KINDS]
    kinds = collections.Counter(i.plant for i in noisy)
    assert set(kinds) == set(IRRELEVANT_KINDS)
    digests = {hashlib.sha256(small.content(i.url_path)).hexdigest() for i in noisy}
    assert len(digests) == len(noisy)  # no byte copies
    others = {hashlib.sha256(small.content(i.url_path)).hexdigest()
              for i in small.images if i.plant is None}
    assert not digests & others
    for img in noisy:
        assert not assess_image(small.content(img.url_path))["is_junk"], img


def test_image_records_are_consistent(world, catalog):
    paths = [i.url_path for i in catalog.images]
    assert len(set(paths)) == len(paths) == len(catalog.by_path)
    assert len({i.page_path for i in catalog.images}) == len(paths)
    no_ext = sum(1 for p in paths if "." not in p.rsplit("/", 1)[1])
    assert 0 < no_ext < len(paths) / 2
    sig_ids = {catalog.signature_id(s) for s in catalog.series_ids}
    assert sig_ids == set(range(len(catalog.series_ids)))
    for img in catalog.images:
        assert img.url_path.startswith("/img/") and img.page_path.startswith("/page/")
        assert img.expected_status == EXPECTED_STATUS[img.plant]
        assert img.title and img.width > 0 and img.height > 0
        if img.plant is None:
            assert (img.width, img.height) in SIZES
            assert img.signature == catalog.signature_id(img.series_id)
        if img.plant in (*DUP_KINDS, "cross_series"):
            orig = catalog.by_path[img.original_url_path]
            assert orig.plant is None
            assert img.signature == orig.signature
            if img.plant == "cross_series":
                assert orig.series_id != img.series_id
            else:
                assert orig.series_id == img.series_id
        else:
            assert img.original_url_path is None


def test_catalog_is_deterministic_and_seeded(world):
    a = build_catalog(world, scale=0.1)
    b = build_catalog(build_world(seed=0), scale=0.1)
    assert [i.url_path for i in a.images] == [i.url_path for i in b.images]
    assert a.images == b.images
    # same bytes: one image of every kind that has bytes, plus a few ordinary ones
    sample = [i for i in a.images if i.plant is None][:8]
    sample += [first(a, k) for k in PLANT_KINDS if a.content(first(a, k).url_path) is not None]
    for img in sample:
        assert a.content(img.url_path) == b.content(img.url_path), img.plant
    other = build_catalog(build_world(seed=1), scale=0.1)
    assert {i.url_path for i in other.images}.isdisjoint(i.url_path for i in a.images)
    x = [i for i in other.images if i.plant is None][0]
    y = [i for i in a.images if i.plant is None][0]
    assert other.content(x.url_path) != a.content(y.url_path)


def test_page_plants_are_two_of_each_on_ordinary_images(world, catalog):
    planted = [i for i in catalog.images if i.page_plant is not None]
    assert sorted(i.page_plant for i in planted) == sorted(PAGE_PLANTS * 2)
    assert all(i.plant is None and i.expected_status == "ok" for i in planted)
    again = build_catalog(world)
    assert [i.url_path for i in again.images if i.page_plant] == [i.url_path for i in planted]
    # A stream of their own: the images and their other plants are as without page plants.
    assert {i.url_path: i.plant for i in again.images} == {
        i.url_path: i.plant for i in catalog.images
    }


# -- pixels ---------------------------------------------------------------------------------


def test_phash_separates_distinct_images(catalog):
    # 7 ordinary images of each of the 48 series: 336 images, within- and across-series pairs
    sample = [img for sid in catalog.series_ids for img in
              [i for i in catalog.for_series(sid) if i.plant is None][:7]]  # fmt: skip
    assert len(sample) >= 300
    hashes = np.array([phash(catalog.content(i.url_path)) for i in sample])
    sig = np.array([i.signature for i in sample])
    within, across = [], []
    for k in range(len(sample) - 1):
        d = np.count_nonzero(hashes[k + 1 :] != hashes[k], axis=1)
        same = sig[k + 1 :] == sig[k]
        within.extend(d[same].tolist())
        across.extend(d[~same].tolist())
    assert min(within) >= 12 and min(across) >= 12
    assert 28 <= statistics.mean(within) <= 36  # as far apart as unrelated images


def test_near_duplicates_stay_close(catalog):
    by_kind = collections.defaultdict(list)
    for img in catalog.images:
        if img.plant in (*DUP_KINDS, "cross_series") and len(by_kind[img.plant]) < 10:
            by_kind[img.plant].append(img)
    assert set(by_kind) == {*DUP_KINDS, "cross_series"}
    dist: dict[str, list[int]] = {}
    for kind, imgs in by_kind.items():
        dist[kind] = [
            hamming(phash(catalog.content(i.url_path)), phash(catalog.content(i.original_url_path)))
            for i in imgs
        ]
    for kind in ("exact_duplicate", "cross_series"):
        assert dist[kind] == [0] * len(dist[kind])
        for img in by_kind[kind]:
            assert catalog.content(img.url_path) == catalog.content(img.original_url_path)
    for kind in ("near_jpeg", "near_resize", "near_brightness", "near_grayscale"):
        assert max(dist[kind]) <= 8, (kind, dist[kind])
    # a 10% crop moves pHash more, but stays well under unrelated images (mean ~31)
    assert statistics.mean(dist["near_crop"]) <= 20, dist["near_crop"]
    for img in by_kind["near_crop"] + by_kind["near_resize"]:
        with Image.open(io.BytesIO(catalog.content(img.url_path))) as im:
            assert im.size == (img.width, img.height)


def test_rendering_is_fast_and_cached(world):
    cat = build_catalog(world, scale=0.1)
    imgs = [i for i in cat.images if i.plant is None][:20]
    cpu, first = [], []
    for img in imgs:
        t = time.thread_time()  # this thread's CPU: other processes on the machine do not count
        first.append(cat.content(img.url_path))
        cpu.append(time.thread_time() - t)
    # ~8 ms of CPU each; a generous bound
    assert statistics.median(cpu) < 0.04, cpu
    again = [cat.content(img.url_path) for img in imgs]
    assert all(a is b for a, b in zip(again, first, strict=True)), "served from the cache"
    assert cat.cache_info()["hits"] >= len(imgs)


def test_junk_bytes_are_what_they_claim(small):
    def data(kind: str) -> bytes:
        return small.content(first(small, kind).url_path)

    with Image.open(io.BytesIO(data("junk_blank"))) as im:
        assert im.convert("RGB").getextrema()[0][1] - im.convert("RGB").getextrema()[0][0] <= 4
    with Image.open(io.BytesIO(data("junk_tiny"))) as im:
        assert im.size == (16, 16)
    corrupt = data("junk_corrupt")
    assert corrupt[:3] == b"\xff\xd8\xff"
    with pytest.raises(OSError):
        with Image.open(io.BytesIO(corrupt)) as im:
            im.load()
    assert data("junk_html").lstrip().lower().startswith(b"<!doctype html")
    with Image.open(io.BytesIO(data("junk_gif_as_jpg"))) as im:
        assert im.format == "GIF" and getattr(im, "n_frames", 1) == 1
    bomb = data("junk_bomb")
    assert len(bomb) < MIB and bomb[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))
    with Image.open(io.BytesIO(data("junk_cmyk"))) as im:
        assert (im.format, im.mode) == ("JPEG", "CMYK")
    with Image.open(io.BytesIO(data("junk_alpha_png"))) as im:
        assert (im.format, im.mode) == ("PNG", "RGBA")
        assert im.getextrema()[3][0] < 255
    with Image.open(io.BytesIO(data("junk_webp"))) as im:
        assert im.format == "WEBP"


def test_manifest_table(small):
    table = small.manifest_table()
    assert table.column_names == [
        "url", "series_id", "plant", "original_url", "expected_status", "width", "height",
        "sha256", "signature", "page_plant", "true_series_id",
    ]  # fmt: skip
    assert str(table.schema.field("signature").type) == "int32"
    rows = table.to_pylist()
    assert len(rows) == len(small.images)
    assert {r["plant"] for r in rows} - {None} == set(PLANT_KINDS)
    for row in rows:
        img = small.by_path[row["url"]]
        assert row["series_id"] == img.series_id and row["plant"] == img.plant
        assert row["original_url"] == img.original_url_path
        assert row["expected_status"] == img.expected_status
        assert row["page_plant"] == img.page_plant
        assert row["true_series_id"] == img.true_series_id
        if img.plant in FAULT_KINDS and img.plant != "fault_429":
            assert row["sha256"] is None
        else:
            assert row["sha256"] == hashlib.sha256(small.content(img.url_path)).hexdigest()
        if img.plant in ("exact_duplicate", "cross_series"):
            assert row["sha256"] == small.sha256(img.original_url_path)
    assert sum(r["signature"] is None and r["plant"] != "irrelevant_offtopic" for r in rows) < 20
    assert sorted(r["page_plant"] for r in rows if r["page_plant"]) == sorted(PAGE_PLANTS * 2)


# -- served over HTTP ---------------------------------------------------------------------------


def test_one_image_of_each_series_decodes_at_its_size(small, client):
    for sid in small.series_ids:
        img = next(i for i in small.for_series(sid) if i.plant is None)
        r = client.get(img.url_path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content == small.content(img.url_path)
        with Image.open(io.BytesIO(r.content)) as im:
            im.load()
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (img.width, img.height))


@pytest.mark.parametrize(
    ("kind", "content_type", "magic"),
    [
        (None, "image/jpeg", b"\xff\xd8\xff"),
        ("near_grayscale", "image/jpeg", b"\xff\xd8\xff"),
        ("junk_cmyk", "image/jpeg", b"\xff\xd8\xff"),
        ("junk_corrupt", "image/jpeg", b"\xff\xd8\xff"),
        ("junk_html", "image/jpeg", b"<!DOCTYPE html"),
        ("junk_gif_as_jpg", "image/jpeg", b"GIF8"),
        ("junk_bomb", "image/png", b"\x89PNG"),
        ("junk_alpha_png", "image/png", b"\x89PNG"),
        ("junk_webp", "image/webp", b"RIFF"),
    ],
)
def test_content_types(small, client, kind, content_type, magic):
    img = first(small, kind)
    r = client.get(img.url_path)
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.content.startswith(magic)
    if kind == "junk_gif_as_jpg":
        assert img.url_path.endswith(".jpg")


def test_unknown_image_and_page(small, client):
    assert client.get("/img/000000000000.jpg").status_code == 404
    assert client.get("/page/000000000000.html").status_code == 404
    img = first(small, None)
    r = client.get(img.page_path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'src="{img.url_path}"' in r.text


def page_of(small, client, page_plant: str | None) -> tuple[HostedImage, httpx.Response]:
    img = next(i for i in small.images if i.plant is None and i.page_plant == page_plant)
    r = client.get(img.page_path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    return img, r


def test_source_pages_name_their_image(small, client, host):
    img, r = page_of(small, client, None)
    assert page_image(r.content, str(r.url)) == PageImage(host.base_url + img.url_path,
                                                          "og:image")  # fmt: skip
    assert f'<meta name="twitter:image" content="{img.url_path}">' in r.text  # relative
    assert page_opt_out(r.content, dict(r.headers), OPT_OUT_DIRECTIVES, "tv100") is None


def test_page_plants_over_http(small, client):
    noai, r = page_of(small, client, "page_noai")
    assert page_opt_out(r.content, dict(r.headers), OPT_OUT_DIRECTIVES, "tv100") == (
        '<meta name="robots"> noai'
    )
    assert page_image(r.content, str(r.url)) is not None  # the page names it all the same
    bare, r = page_of(small, client, "page_no_og_image")
    assert page_image(r.content, str(r.url)) is None
    assert f'src="{bare.url_path}"' in r.text and 'property="og:title"' in r.text
    assert page_opt_out(r.content, dict(r.headers), OPT_OUT_DIRECTIVES, "tv100") is None


def test_thumbnails(small):
    for kind in (None, "junk_tiny", "junk_cmyk", "junk_alpha_png", "junk_webp", "fault_noai"):
        img = first(small, kind)
        data = small.thumbnail(img.url_path)
        assert data is not None and data == small.thumbnail(img.url_path), kind
        with Image.open(io.BytesIO(data)) as im:
            assert (im.format, im.mode) == ("JPEG", "RGB")
            expected = THUMBNAIL_SIDE if kind != "junk_tiny" else 16
            assert max(im.size) == expected, kind
    for kind in ("fault_5xx", "fault_redirect_loop", "fault_too_large", "junk_corrupt",
                 "junk_html", "junk_bomb"):  # fmt: skip
        assert small.thumbnail(first(small, kind).url_path) is None, kind


@pytest.mark.parametrize(
    ("plant", "page_plant", "expected"),
    [
        (None, None, ("ok", "og_image")),
        (None, "page_noai", ("opted_out", "source_page")),
        (None, "page_no_og_image", ("ok", "thumbnail")),
        ("fault_noai", None, ("opted_out", "og_image")),
        ("fault_429", None, ("ok", "og_image")),
        ("fault_robots", None, ("ok", "thumbnail")),
        ("fault_slow", None, ("ok", "thumbnail")),
        ("fault_5xx", None, ("http_error", "thumbnail")),
        ("junk_corrupt", None, ("http_error", "thumbnail")),
        ("junk_tiny", None, ("ok", "og_image")),
    ],
)
def test_expected_through_page(small, plant, page_plant, expected):
    img = next(i for i in small.images if i.plant == plant and i.page_plant == page_plant)
    assert small.expected_through_page(img.url_path) == expected


def test_429_then_200(small, client):
    img = first(small, "fault_429")
    small.reset_state()
    r1 = client.get(img.url_path)
    assert r1.status_code == 429 and r1.headers["retry-after"] == "1"
    r2 = client.get(img.url_path)
    assert r2.status_code == 200 and r2.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(r2.content).hexdigest() == small.sha256(img.url_path)
    assert small.request_count(img.url_path) == 2


def test_5xx_always(small, client):
    img = first(small, "fault_5xx")
    codes = {client.get(img.url_path).status_code for _ in range(3)}
    assert len(codes) == 1 and 500 <= codes.pop() < 600


def test_noai_header_on_a_valid_image(small, client):
    img = first(small, "fault_noai")
    r = client.get(img.url_path)
    assert r.status_code == 200 and r.headers["x-robots-tag"] == "noai"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (img.width, img.height)


def test_redirect_loop(small, client):
    img = first(small, "fault_redirect_loop")
    r = client.get(img.url_path)
    assert r.status_code == 302
    assert r.headers["location"].endswith(f"{img.url_path}?hop=1")
    assert client.get(r.headers["location"]).headers["location"].endswith("?hop=2")
    with pytest.raises(httpx.TooManyRedirects):
        client.get(img.url_path, follow_redirects=True)


def _short_body(client, path: str) -> tuple[int, bytes]:
    got = bytearray()
    with client.stream("GET", path) as r:
        declared = int(r.headers["content-length"])
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in r.iter_raw():
                got += chunk
    return declared, bytes(got)


def test_lying_length_and_truncated_bodies(small, client):
    lying = first(small, "fault_lying_length")
    declared, got = _short_body(client, lying.url_path)
    assert got == small.content(lying.url_path) and declared > len(got)
    cut = first(small, "fault_truncated")
    declared, got = _short_body(client, cut.url_path)
    full = small.content(cut.url_path)
    assert declared == len(full) and full.startswith(got) and len(got) < len(full)


def test_slow_and_too_large(small, host):
    slow = first(small, "fault_slow")
    with pytest.raises(httpx.ReadTimeout):  # the server stalls SLOW_S before any byte
        httpx.get(host.base_url + slow.url_path, timeout=1.0)
    big = first(small, "fault_too_large")
    with httpx.stream("GET", host.base_url + big.url_path, timeout=10.0) as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        body = r.read()
    assert len(body) == TOO_LARGE and body[:3] == b"\xff\xd8\xff"


def test_prerendering_in_processes_gives_the_same_bytes(world):
    # each worker builds its own copy of the catalog from the same arguments: the bytes it
    # sends back (into this cache and the sha256 table) equal those rendered here
    serial = build_catalog(world, scale=0.5, slow_s=1.0)
    parallel = build_catalog(world, scale=0.5, slow_s=1.0)
    n = parallel.prerender(workers=2)
    assert n > 2 * PRERENDER_CHUNK  # enough images for the process path
    before = parallel.cache_info()["misses"]
    parallel.content(next(i for i in parallel.images if i.plant is None).url_path)
    assert parallel.cache_info()["misses"] == before  # the workers' bytes are cached here
    table = parallel.manifest_table()
    assert table.column("sha256").to_pylist() == serial.manifest_table().column(
        "sha256").to_pylist()
