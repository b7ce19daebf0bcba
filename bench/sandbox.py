"""Sandbox benchmark: generating the sandbox web at two sizes, and how it grows.

For each size (listed images; 400 series by default, the scale set to reach it) a fresh
process builds the sandbox (`tv100.sandbox.web.SandboxWeb`: the world, the image catalog,
every search listing) and then its ground truth (`SandboxWeb.manifest_tables`, which
renders every image once for its sha256, as ``tv100 demo`` does before its build). Printed
per size: images, seconds of each part, images/s and peak RSS (the process's own
``ru_maxrss``), then the growth exponent ``log(t2/t1) / log(n2/n1)`` of each part and of
peak RSS. Goal (issue 15): 100,000+ images with time and memory growing linearly (exponent
<= 1.1). The image cache is bounded (`SandboxWeb` ``cache_bytes``), so memory is the
catalog's. Nothing is asserted; the last line is one JSON object.

    .venv/bin/python bench/sandbox.py                       # ~10,000 and ~100,000 images
    .venv/bin/python bench/sandbox.py --images 2000 20000   # a quicker pair
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

N_SERIES = 400
SIZES = (10_000, 100_000)
#: Listed images per unit of scale and series, measured at 400 series (105,712 at scale 11).
LISTED_PER_SCALE_SERIES = 105_712 / (11 * 400)


def measure(n_series: int, scale: float) -> dict[str, Any]:
    """Child mode: build the sandbox and its ground truth; the figures of one size."""
    from tv100.sandbox.web import SandboxWeb

    t0 = time.perf_counter()
    web = SandboxWeb(seed=0, n_series=n_series, scale=scale, port=0)
    build_s = time.perf_counter() - t0
    build_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    web.world.manifest_tables()
    images = web.catalog.manifest_table().num_rows  # SandboxWeb.manifest_tables, unserved
    manifest_s = time.perf_counter() - t0
    return {"n_series": n_series, "scale": scale, "images": images,
            "build_s": round(build_s, 2), "manifest_s": round(manifest_s, 2),
            "images_per_s": round(images / (build_s + manifest_s), 1),
            "build_peak_rss_mb": round(build_rss, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def exponent(a: float, b: float, n1: int, n2: int) -> float | None:
    if a <= 0 or b <= 0 or n1 == n2:
        return None
    return round(math.log(b / a) / math.log(n2 / n1), 3)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs=2, default=SIZES, metavar="N")
    parser.add_argument("--n-series", type=int, default=N_SERIES)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(int(args.child[0]), float(args.child[1]))))
        return None
    n1, n2 = args.images
    if not 0 < n1 < n2:
        parser.error(f"--images {n1} {n2}; expected two increasing sizes")
    sizes = []
    for n in (n1, n2):
        scale = round(n / (LISTED_PER_SCALE_SERIES * args.n_series), 4)
        out = subprocess.run([sys.executable, __file__, "--child", str(args.n_series),
                              str(scale)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"size {n}: exited {out.returncode}\n{out.stderr[-3000:]}")
        sizes.append(json.loads(out.stdout.strip().splitlines()[-1]))
        s = sizes[-1]
        print(f"{s['images']:>8,} images ({args.n_series} series, scale {scale}): build "
              f"{s['build_s']:7.1f} s, ground truth {s['manifest_s']:7.1f} s, "
              f"{s['images_per_s']:7.1f} images/s, peak RSS {s['peak_rss_mb']:7.0f} MiB",
              flush=True)
    a, b = sizes
    summary = {
        "bench": "sandbox", "sizes": sizes,
        "exponents": {k: exponent(a[k], b[k], a["images"], b["images"])
                      for k in ("build_s", "manifest_s", "peak_rss_mb")},
    }
    print(f"growth exponents: {summary['exponents']}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
