"""Download benchmark: tv100's downloader vs img2dataset vs the decode+resize floor.

Serves N photo-like 640×480 JPEGs (30–100 KB) from a loopback server (nginx when
installed, else Python's threaded server: the script says which) and measures images/s:

  (a) tv100's downloader (`tv100.tasks.collect.download.download_hits`), longer side ≤ 256;
  (b) img2dataset on the same URL list with the same resize, 2 processes;
  (c) the floor: a local loop on 2 processes that only decodes (with draft) and resizes.

Runs are sequential (never side by side: 2 cores). The last line is one JSON object.

    .venv/bin/python bench/download.py [--n 2000] [--img2dataset .venv-bench/bin/img2dataset]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import pyarrow as pa
from PIL import Image

from tv100.sandbox.imagegen import encode_under, make_photo

#: The checkout (where `.venv-bench`, img2dataset's own venv, lives).
ROOT = Path(__file__).resolve().parents[1]

SIZE = 256
#: Where the generated inputs are kept across runs (named after the generator).
CACHE = os.path.join(tempfile.gettempdir(), "tv100-bench-photos-imagegen")


def photo_jpeg(i: int) -> bytes:
    """Input `i`: the shared photo generator's 640×480 picture as a JPEG of 100 KB at most."""
    return encode_under(make_photo(i), 100_000)


def prepare(n: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i:05d}.jpg"
        if not p.exists():
            p.write_bytes(photo_jpeg(i))
        paths.append(p)
    return paths


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Keep-alive, and no log line per request (attributes set on a functools.partial
    never reach the class: the server used to write every request to stderr)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server:
    """nginx serving `folder` on a free loopback port, else Python's threaded server."""

    def __init__(self, folder: Path, work: Path) -> None:
        self.folder, self.work = folder, work
        self.proc: subprocess.Popen[bytes] | None = None
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.kind = "python"
        self.port = 0

    def __enter__(self) -> Server:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                          else None)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if nginx:
            conf = self.work / "nginx.conf"
            conf.write_text(
                f"""worker_processes 1; daemon off; pid {self.work}/nginx.pid;
error_log {self.work}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; keepalive_requests 100000;
  client_body_temp_path {self.work}/body; proxy_temp_path {self.work}/proxy;
  fastcgi_temp_path {self.work}/fcgi; uwsgi_temp_path {self.work}/uwsgi;
  scgi_temp_path {self.work}/scgi;
  types {{ image/jpeg jpg; }}
  server {{ listen 127.0.0.1:{self.port}; root {self.folder}; }} }}
"""
            )
            self.proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(self.work)])
            self.kind = "nginx"
        else:
            handler = functools.partial(_QuietHandler, directory=str(self.folder))
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
            threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        import httpx

        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/00000.jpg", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
        if self.httpd:
            self.httpd.shutdown()


def run_tv100(urls: list[str], work: Path, port: int) -> float:
    from tv100.storage.root import DataRoot
    from tv100.tasks.collect.config import DownloadConfig
    from tv100.tasks.collect.download import download_hits
    from tv100.tasks.web.config import HttpConfig

    root = DataRoot(str(work / "tv100-data")).ensure()
    hits = pa.table(
        {
            "series_id": ["bench"] * len(urls),
            "engine": ["bing"] * len(urls),
            "rank": pa.array(range(1, len(urls) + 1), pa.int32()),
            "image_url": urls,
        }
    )
    config = DownloadConfig(
        max_side=SIZE, http=HttpConfig(allow_hosts=(f"127.0.0.1:{port}",), per_host=8)
    )
    t0 = time.perf_counter()
    summary = download_hits(hits, root, config)
    elapsed = time.perf_counter() - t0
    assert summary.status_counts.get("ok") == len(urls), summary
    return len(urls) / elapsed


def run_img2dataset(exe: str, urls: list[str], work: Path) -> float:
    listing = work / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    out = work / "img2dataset-out"
    cmd = [
        exe, "--url_list", str(listing), "--input_format", "txt",
        "--output_folder", str(out), "--output_format", "files",
        "--processes_count", "2", "--thread_count", "32",
        "--image_size", str(SIZE), "--resize_mode", "keep_ratio_largest",
        "--number_sample_per_shard", "500", "--timeout", "10", "--retries", "0",
        "--disable_all_reencoding", "False", "--enable_wandb", "False",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    got = len(list(out.rglob("*.jpg")))
    assert got == len(urls), f"img2dataset stored {got} of {len(urls)} images"
    return len(urls) / elapsed


def _floor_one(path: str) -> int:
    im = Image.open(path)
    w, h = im.size
    scale = SIZE / max(w, h)
    im.draft("RGB", (int(w * scale + 0.999), int(h * scale + 0.999)))
    im = im.convert("RGB")
    im.thumbnail((SIZE, SIZE), Image.Resampling.BICUBIC)
    return im.size[0]


def run_floor(paths: list[Path]) -> float:
    with Pool(2) as pool:
        pool.map(_floor_one, [str(p) for p in paths[:50]])  # warm the workers
        t0 = time.perf_counter()
        pool.map(_floor_one, [str(p) for p in paths], chunksize=16)
        elapsed = time.perf_counter() - t0
    return len(paths) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--img2dataset", default=str(ROOT / ".venv-bench" / "bin" / "img2dataset"))
    ap.add_argument("--cache", default=CACHE)
    args = ap.parse_args()

    paths = prepare(args.n, Path(args.cache))
    sizes = [p.stat().st_size for p in paths]
    digest = hashlib.sha256(b"".join(p.name.encode() for p in paths)).hexdigest()[:8]
    print(f"{len(paths)} JPEGs 640x480, {min(sizes)//1000}-{max(sizes)//1000} KB ({digest})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with Server(Path(args.cache), work) as srv:
            urls = [f"http://127.0.0.1:{srv.port}/{p.name}" for p in paths]
            print(f"server: {srv.kind} on 127.0.0.1:{srv.port}")
            tv = run_tv100(urls, work, srv.port)
            print(f"tv100 downloader: {tv:.1f} images/s")
            base = None
            if os.path.exists(args.img2dataset):
                base = run_img2dataset(args.img2dataset, urls, work)
                print(f"img2dataset:      {base:.1f} images/s")
            else:
                print(f"img2dataset not found at {args.img2dataset}: python3 -m venv "
                      ".venv-bench && .venv-bench/bin/pip install img2dataset==1.47.0")
        floor = run_floor(paths)
        print(f"floor (decode+resize, 2 processes): {floor:.1f} images/s")
    print(json.dumps({
        "bench": "download",
        "n": len(paths),
        "server": srv.kind,
        "tv100_per_s": round(tv, 1),
        "img2dataset_per_s": round(base, 1) if base else None,
        "floor_per_s": round(floor, 1),
        "ratio_vs_img2dataset": round(tv / base, 3) if base else None,
        "ratio_vs_floor": round(tv / floor, 3),
    }))


if __name__ == "__main__":
    main()
