"""Download benchmark: tv100's downloader vs img2dataset vs the decode+resize floor.

Serves N photo-like 640×480 JPEGs (30–100 KB) from a loopback server (nginx when
installed, else Python's threaded server: the script says which) and measures images/s:

  (a) tv100's downloader (`tv100.tasks.collect.download.download_hits`), longer side ≤ 256;
  (b) img2dataset on the same URL list with the same resize, 2 processes;
  (c) the floor: a local loop on 2 processes that only decodes (Pillow, with draft) and
      resizes (Pillow's bicubic), as the issue defined it; and (d) the same loop with
      tv100's own decode and resize (libjpeg-turbo's API, OpenCV), cheaper than (c) since
      2026-12-03 (`own_floor_per_s`, `ratio_vs_own_floor`).

Every input is read just before each run, so none starts with files evicted from the page
cache.

Runs are sequential (never side by side: 2 cores), in `--repeat` rounds (default 3): each
round runs every side in turn, and each ratio is the median over rounds of the two rates of
one round (this VM's speed drifts by tens of percent over minutes: a floor measured minutes
after tv100 compared a faster or slower machine). tv100's run starts a new Python process
each round, as each ``tv100 collect`` does, so no round finds the downloader's worker pool
(its forkserver) started by an earlier one: its start-up is timed every round. Then a
profiling pass (`profile_parts`) downloads a few hundred of the images again in this
process, as one of the downloader's workers does, and reports the CPU milliseconds per
image of each part (`PARTS`) in `cpu_ms_per_image`, read from thread CPU clocks. The last
line is one JSON object (each round's rates in `rounds`).

Python's server stands in for nginx, and like nginx (``tcp_nodelay on``) it sends without
Nagle's delay: with it (``--nagle``, the server before 2026-12-03), every keep-alive
response waited for the client's delayed ACK (~25 ms), which capped each connection near
40 requests/s whatever the client did.

    .venv/bin/python bench/download.py [--n 2000] [--repeat 3] [--profile 500] [--nagle]
        [--img2dataset .venv-bench/bin/img2dataset]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import http.server
import io
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import Pool
from pathlib import Path
from typing import Any

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
    """Keep-alive, TCP_NODELAY as nginx, and no log line per request (attributes set on a
    functools.partial never reach the class: the server used to write every request to
    stderr)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

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
            # nginx started by root serves as `nobody`, who cannot read a private folder
            # (pytest's tmp_path): its worker then runs as whoever started it.
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
            conf.write_text(
                f"""{user} worker_processes 1; daemon off; pid {self.work}/nginx.pid;
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


def _hits(urls: list[str]) -> pa.Table:
    return pa.table(
        {
            "series_id": ["bench"] * len(urls),
            "engine": ["bing"] * len(urls),
            "rank": pa.array(range(1, len(urls) + 1), pa.int32()),
            "image_url": urls,
        }
    )


def tv100_config(port: int) -> Any:
    """The downloader's settings for the loopback server (every other knob its default)."""
    from tv100.tasks.collect.config import DownloadConfig
    from tv100.tasks.web.config import HttpConfig

    return DownloadConfig(
        max_side=SIZE, http=HttpConfig(allow_hosts=(f"127.0.0.1:{port}",), per_host=8)
    )


def run_tv100(urls: list[str], work: Path, port: int) -> float:
    """tv100's downloader over `urls` into a fresh data root under `work`, in this process
    (imports done before the clock starts; its worker pool and forkserver start within it)."""
    from tv100.storage.root import DataRoot
    from tv100.tasks.collect.download import download_hits

    root = DataRoot(str(work / "tv100-data")).ensure()
    hits, config = _hits(urls), tv100_config(port)
    t0 = time.perf_counter()
    summary = download_hits(hits, root, config)
    elapsed = time.perf_counter() - t0
    assert summary.status_counts.get("ok") == len(urls), summary
    return len(urls) / elapsed


def run_tv100_fresh(urls: list[str], work: Path, port: int) -> float:
    """`run_tv100` in a new Python process, as each ``tv100 collect`` starts: no worker pool
    or forkserver left warm by an earlier round of the same bench."""
    work.mkdir(parents=True, exist_ok=True)
    listing = work / "urls.json"
    listing.write_text(json.dumps(urls))
    out = subprocess.run(
        [sys.executable, __file__, "--tv100-run", str(listing), str(work), str(port)],
        check=True, capture_output=True, text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["tv100_per_s"])


def run_img2dataset(exe: str, urls: list[str], work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
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


#: The parts of the downloader's CPU cost per image, in `cpu_ms_per_image`.
PARTS = ("http", "decode", "resize", "encode", "hash", "write")


class _ThreadCpu:
    """Thread CPU seconds (`time.thread_time`: user + system of the calling thread) spent
    in wrapped functions, summed by name over every thread that calls them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.thread_time() - t0)

        return timed


@contextmanager
def _patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set attributes (object, name, value) for the block, then put the originals back."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def profile_parts(urls: list[str], work: Path, port: int) -> dict[str, float]:
    """CPU milliseconds per image of each of `PARTS`, measured on one downloader worker.

    `urls` are downloaded into a fresh data root by `download_pending` in this process with
    one worker's settings of the timed run (`per_worker_config`: the same per-host
    connections, in-flight bound and decode threads), the functions of each part wrapped
    in thread CPU timers (the server's threads are not counted):

    - http: the event loop thread's CPU: httpx and tv100's HTTP layer, with the loop's
      scheduling of the requests and the rows (the images' processing is not on it);
    - decode: `normalise` less `shrink` and `encode_jpeg`: parsing the header, checks,
      the JPEG decode at a reduced DCT scale (libjpeg-turbo), the EXIF orientation;
    - resize: `shrink` (OpenCV's resize);
    - encode: `encode_jpeg`;
    - hash: the sha256 of the body and of the stored JPEG (the latter timed on a second
      hash of the same bytes, `ImageStore.put` hashing inside);
    - write: `ImageStore.put` less its hash (file, rename), the shard's batch of fsyncs
      (`ImageStore.sync`) and the shards' Parquet.
    """
    import tv100.tasks.collect.normalise as norm_mod
    import tv100.tasks.collect.shards as shards_mod
    from tv100.storage.images import ImageStore
    from tv100.storage.root import DataRoot
    from tv100.tasks.collect.workers import per_worker_config

    config = per_worker_config(tv100_config(port), tv100_config(port).processes)

    def pending(urls: list[str], root: DataRoot) -> list[dict[str, Any]]:
        return shards_mod.pending_hits(shards_mod.plan_hits(_hits(urls)), root, config)

    # A first few images untimed: this process's first request imports and sets up.
    warm = DataRoot(str(work / "tv100-profile-warm")).ensure()
    asyncio.run(shards_mod.download_pending(pending(urls[:16], warm), warm, config, 16, 0, None))
    root = DataRoot(str(work / "tv100-profile")).ensure()
    hits = pending(urls, root)
    cpu = _ThreadCpu()
    put = ImageStore.put

    def timed_put(store: ImageStore, data: bytes, ext: str, **kwargs: Any) -> tuple[str, str]:
        t0 = time.thread_time()
        hashlib.sha256(data).hexdigest()
        cpu.add("put_hash", time.thread_time() - t0)
        return cpu.wrap("put", put)(store, data, ext, **kwargs)

    patches = [
        (shards_mod, "_store", cpu.wrap("store", shards_mod._store)),
        (shards_mod, "normalise", cpu.wrap("normalise", shards_mod.normalise)),
        (norm_mod, "shrink", cpu.wrap("shrink", norm_mod.shrink)),
        (norm_mod, "encode_jpeg", cpu.wrap("encode", norm_mod.encode_jpeg)),
        (shards_mod, "write_shard", cpu.wrap("shards", shards_mod.write_shard)),
        (ImageStore, "put", timed_put),
        (ImageStore, "sync", cpu.wrap("sync", ImageStore.sync)),
    ]
    with _patched(patches):
        t0 = time.thread_time()
        asyncio.run(shards_mod.download_pending(hits, root, config, len(hits), 0, None))
        loop_s = time.thread_time() - t0
    s = cpu.seconds
    put_write = s.get("put", 0.0) - s.get("put_hash", 0.0)
    parts = {
        "http": loop_s,
        "decode": s["normalise"] - s.get("shrink", 0.0) - s.get("encode", 0.0),
        "resize": s.get("shrink", 0.0),
        "encode": s.get("encode", 0.0),
        "hash": s["store"] - s["normalise"] - s.get("put", 0.0) + s.get("put_hash", 0.0),
        "write": put_write + s.get("sync", 0.0) + s.get("shards", 0.0),
    }
    return {k: round(max(v, 0.0) / len(hits) * 1000, 3) for k, v in parts.items()}


def _floor_one(path: str) -> int:
    im = Image.open(path)
    w, h = im.size
    scale = SIZE / max(w, h)
    im.draft("RGB", (int(w * scale + 0.999), int(h * scale + 0.999)))
    im = im.convert("RGB")
    im.thumbnail((SIZE, SIZE), Image.Resampling.BICUBIC)
    return im.size[0]


def _floor_own(path: str) -> int:
    """The floor's work done by tv100's own code: `decode_jpeg` (libjpeg-turbo at a reduced
    DCT scale) and `shrink` (OpenCV), as `normalise` does before encoding."""
    from tv100.tasks.collect.config import DownloadConfig
    from tv100.tasks.collect.normalise import decode_jpeg, fitted_size, shrink

    content = Path(path).read_bytes()
    im = Image.open(io.BytesIO(content))
    pixels = decode_jpeg(content, im, fitted_size(im.size, SIZE))
    assert pixels is not None
    return int(shrink(pixels, DownloadConfig(max_side=SIZE)).shape[1])


def warm(paths: list[Path]) -> None:
    """Read every input once, so each run starts with them in the page cache (this VM's
    memory reclaim evicts files left unread for a while: runs then wait on the disk)."""
    for p in paths:
        p.read_bytes()


def run_floor(paths: list[Path], one: Callable[[str], int] = _floor_one) -> float:
    with Pool(2) as pool:
        pool.map(one, [str(p) for p in paths[:50]])  # warm the workers
        t0 = time.perf_counter()
        pool.map(one, [str(p) for p in paths], chunksize=16)
        elapsed = time.perf_counter() - t0
    return len(paths) / elapsed


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the rounds of measurements and the profile; print, and return, the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds, each every measurement in turn; figures are medians")
    ap.add_argument("--img2dataset", default=str(ROOT / ".venv-bench" / "bin" / "img2dataset"))
    ap.add_argument("--cache", default=CACHE)
    ap.add_argument("--profile", type=int, default=500,
                    help="images of the profiling pass (cpu_ms_per_image); 0 skips it")
    ap.add_argument("--nagle", action="store_true",
                    help="Python's server with Nagle's delay, as before 2026-12-03 (to compare)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat}: expected at least 1")
    _QuietHandler.disable_nagle_algorithm = not args.nagle
    has_base = os.path.exists(args.img2dataset)
    if not has_base:
        print(f"img2dataset not found at {args.img2dataset}: python3 -m venv .venv-bench && "
              ".venv-bench/bin/pip install img2dataset==1.47.0")

    paths = prepare(args.n, Path(args.cache))
    sizes = [p.stat().st_size for p in paths]
    digest = hashlib.sha256(b"".join(p.name.encode() for p in paths)).hexdigest()[:8]
    print(f"{len(paths)} JPEGs 640x480, {min(sizes)//1000}-{max(sizes)//1000} KB ({digest})")
    rounds: list[dict[str, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with Server(Path(args.cache), work) as srv:
            urls = [f"http://127.0.0.1:{srv.port}/{p.name}" for p in paths]
            print(f"server: {srv.kind} on 127.0.0.1:{srv.port}")
            for r in range(args.repeat):
                # One round: every side in turn, close together in time (this VM's speed
                # drifts by tens of percent over minutes: ratios are taken within a round).
                warm(paths)
                tv = run_tv100_fresh(urls, work / f"tv100-{r}", srv.port)
                base = None
                if has_base:
                    warm(paths)
                    base = run_img2dataset(args.img2dataset, urls, work / f"img2dataset-{r}")
                warm(paths)
                floor = run_floor(paths)
                own = run_floor(paths, _floor_own)
                rounds.append({"tv100_per_s": round(tv, 1),
                               "img2dataset_per_s": round(base, 1) if base else None,
                               "floor_per_s": round(floor, 1), "own_floor_per_s": round(own, 1)})
                print(f"round {r + 1}: tv100 {tv:.1f}/s, img2dataset "
                      f"{f'{base:.1f}/s' if base else '-'}, floor {floor:.1f}/s, "
                      f"floor with tv100's decode+resize {own:.1f}/s")
            parts = None
            if args.profile > 0:
                parts = profile_parts(urls[: args.profile], work, srv.port)
                print("tv100 CPU ms per image: " + ", ".join(f"{k} {v}" for k, v in
                                                              parts.items()))

    def median_of(key: str) -> float | None:
        values = [r[key] for r in rounds]
        return round(_median(values), 1) if all(values) else None  # type: ignore[arg-type]

    def ratio(over: str) -> float | None:
        """The median over rounds of tv100's rate against `over`'s in the same round."""
        if not all(r[over] for r in rounds):
            return None
        return round(_median([r["tv100_per_s"] / r[over] for r in rounds]), 3)  # type: ignore[operator]

    summary = {
        "bench": "download",
        "n": len(paths),
        "repeat": args.repeat,
        "server": srv.kind + ("+nagle" if args.nagle and srv.kind == "python" else ""),
        "tv100_per_s": median_of("tv100_per_s"),
        "img2dataset_per_s": median_of("img2dataset_per_s"),
        "floor_per_s": median_of("floor_per_s"),
        "ratio_vs_img2dataset": ratio("img2dataset_per_s"),
        "ratio_vs_floor": ratio("floor_per_s"),
        "own_floor_per_s": median_of("own_floor_per_s"),
        "ratio_vs_own_floor": ratio("own_floor_per_s"),
        "rounds": rounds,
        "cpu_ms_per_image": parts,
    }
    print(json.dumps(summary))
    return summary


def _tv100_run(argv: list[str]) -> None:
    """The child of `run_tv100_fresh`: one timed run, its rate as a JSON line."""
    listing, work, port = argv
    rate = run_tv100(json.loads(Path(listing).read_text()), Path(work), int(port))
    print(json.dumps({"tv100_per_s": rate}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tv100-run"]:
        _tv100_run(sys.argv[2:])
    else:
        main()
