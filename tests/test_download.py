"""The downloader: validation by decoding, normalisation, statuses, resume, idempotence."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from tv100.storage.tables import read_table
from tv100.tasks.collect.download import DownloadConfig, download_hits, normalise, opted_out
from tv100.tasks.web.http import HttpConfig

CFG = DownloadConfig(max_side=256)


def photo(w: int = 640, h: int = 480, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h))], -1)
    noise = rng.integers(0, 40, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8"), "RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bomb_png(w: int = 30000, h: int = 30000) -> bytes:
    """A tiny-on-the-wire PNG claiming w×h pixels (never allocated here)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * (w // 8 + 1) * 16, 9)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    im = photo(400, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    return encode(im, "JPEG", exif=exif.tobytes())


CASES = {
    "jpeg": (encode(photo(), "JPEG", quality=85), "ok", (256, 192), "JPEG"),
    "png-alpha": (encode(photo(300, 300).convert("RGBA"), "PNG"), "ok", (256, 256), "PNG"),
    "cmyk-jpeg": (encode(photo(320, 240).convert("CMYK"), "JPEG"), "ok", (256, 192), "JPEG"),
    "webp": (encode(photo(200, 100), "WEBP"), "ok", (200, 100), "WEBP"),
    "gif-palette": (encode(photo(120, 90).convert("P"), "GIF"), "ok", (120, 90), "GIF"),
    "png-16bit": (encode(Image.fromarray(
        np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16), "PNG"),
        "ok", (64, 64), "PNG"),
    "exif-orientation": (exif_rotated_jpeg(), "ok", (128, 256), "JPEG"),
    "html-as-jpeg": (b"<!DOCTYPE html><html><body>nope</body></html>", "not_image", None, None),
    "corrupt": (b"\xff\xd8\xff\xe0" + b"\x13garbage" * 100, "decode_error", None, None),
    "garbage": (b"\x13garbage" * 100, "not_image", None, None),
    "truncated": (encode(photo(), "JPEG")[:3000], "decode_error", None, "JPEG"),
    "bomb": (bomb_png(), "decode_error", None, None),  # Pillow refuses it at open
    "bomb-under-pillow-limit": (bomb_png(9000, 9000), "decode_error", None, "PNG"),
    "empty": (b"", "not_image", None, None),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_normalise(case):
    content, status, size, fmt = CASES[case]
    out = normalise(content, CFG)
    assert out.status == status, out.error_message
    assert out.format == fmt
    if status == "ok":
        im = Image.open(io.BytesIO(out.data))
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.size == size == (out.width, out.height)
    else:
        assert out.error_message and not out.data
    if case.startswith("bomb"):
        assert "decompression bomb" in out.error_message


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    out = normalise(encode(im, "PNG"), CFG)
    assert Image.open(io.BytesIO(out.data)).getpixel((5, 5)) >= (250, 250, 250)


@pytest.mark.parametrize(
    "header,expected",
    [("noai", "noai"), ("googlebot: noimageai", "noimageai"), ("noindex, nofollow", "noindex"),
     ("nofollow", None), ("", None), ("otherbot: noai;", "noai")],
)
def test_opt_out_header(header, expected):
    assert opted_out({"x-robots-tag": header} if header else {}, CFG.opt_out_directives) == expected


def test_config_validation():
    with pytest.raises(ValueError, match="max_side"):
        DownloadConfig(max_side=0)
    with pytest.raises(ValueError, match="shard_size"):
        DownloadConfig(shard_size=True)


@pytest.fixture(scope="module")
def host(sandbox):
    """A tiny image host on the sandbox server: /t/<name> serves CASES[name] bytes."""
    from tv100.sandbox.server import Response

    def handler(req):
        name = req.path.rsplit("/", 1)[-1]
        if name == "noai":
            return Response(200, {"Content-Type": "image/jpeg", "X-Robots-Tag": "noai"},
                            CASES["jpeg"][0])
        if name in CASES:
            return Response(200, {"Content-Type": "image/jpeg"}, CASES[name][0])
        return None

    sandbox.register("/t/", handler)
    return sandbox


def hits_table(urls: list[tuple[str, str]]) -> pa.Table:
    return pa.table({
        "series_id": [s for s, _ in urls],
        "engine": ["bing"] * len(urls),
        "rank": pa.array(range(1, len(urls) + 1), pa.int32()),
        "image_url": [u for _, u in urls],
    })


def test_download_statuses_and_rerun(host, data_root):
    b = host.base_url
    urls = [("tt1", f"{b}/t/{n}") for n in CASES] + [
        ("tt1", f"{b}/t/noai"),
        ("tt1", f"{b}/t/missing"),
        ("tt2", f"{b}/t/jpeg"),  # the same URL under another series: its own row
        ("tt2", f"{b}/_fault/status?code=503&times=99&key=dl"),
        ("tt2", f"{b}/_fault/redirect-loop?n=0"),
        ("tt2", "http://10.1.2.3/x.jpg"),
    ]
    cfg = DownloadConfig(max_side=256, shard_size=4, http=HttpConfig(
        allow_hosts=(b.split("://")[1],), retries=1, backoff_base_s=0.01, timeout_s=5))
    seen = []
    summary = download_hits(hits_table(urls), data_root, cfg, progress=lambda d, t: seen.append(d))
    images = read_table(data_root, "images")
    assert images.num_rows == len(urls) == summary["hits"]
    assert seen[-1] == len(urls)
    by_url = {}
    for r in images.to_pylist():
        by_url.setdefault(r["url"].rsplit("/", 1)[-1], r)
    for name, (_, status, _size, _) in CASES.items():
        assert by_url[name]["status"] == status, name
    assert by_url["noai"]["status"] == "opted_out"
    assert by_url["missing"]["status"] == "http_error" and by_url["missing"]["http_status"] == 404
    statuses = {r["url"]: r["status"] for r in images.to_pylist()}
    assert statuses[f"{b}/_fault/status?code=503&times=99&key=dl"] == "http_error"
    assert statuses[f"{b}/_fault/redirect-loop?n=0"] == "http_error"
    assert statuses["http://10.1.2.3/x.jpg"] == "blocked"
    ok = [r for r in images.to_pylist() if r["status"] == "ok"]
    for r in ok:
        sha = r["sha256"]
        assert r["path"] == f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
        assert (data_root.base + "/" + r["path"]) and r["bytes"] > 0
    assert all(r["error_message"] for r in images.to_pylist() if r["status"] != "ok")
    # Sorted, compacted, and a rerun downloads nothing and leaves the bytes as they were.
    path = data_root.path("tables", "images.parquet")
    before = open(path, "rb").read()
    again = download_hits(hits_table(urls), data_root, cfg)
    assert again["downloaded_now"] == 0
    assert open(path, "rb").read() == before


def test_plan_merges_engines_per_series():
    from tv100.tasks.collect.download import plan_hits

    hits = pa.table({
        "series_id": ["tt1", "tt1", "tt1", "tt2"],
        "engine": ["google", "bing", "bing", "bing"],
        "rank": pa.array([1, 3, 1, 2], pa.int32()),
        "image_url": ["http://H/a.jpg", "http://h/a.jpg#x", "http://h/b", "http://h/a.jpg"],
    })
    plan = plan_hits(hits)
    assert [(p["series_id"], p["engine"], p["rank"]) for p in plan] == [
        ("tt1", "bing", 1), ("tt1", "google", 1), ("tt2", "bing", 2)]
    assert len({p["image_id"] for p in plan}) == 3
