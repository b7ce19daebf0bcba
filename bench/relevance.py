"""Relevance scoring benchmark: tv100's cleanlab + kNN scoring of a million CLIP-like vectors
against a plain baseline, sklearn ``LogisticRegression`` with cross-validation.

Inputs: `tv100.sandbox.labelnoise.noisy_embeddings` (default 1,000,000 unit vectors, 512-d,
800 series with long-tailed sizes and 5-35% planted noise per series, half other-series and
half off-topic), written once to ``$TMPDIR/tv100-bench-relevance/`` as ``.npy`` files.

Two measurements, one after the other, each in a fresh process that loads the inputs and
reports its wall time and its own peak RSS (``ru_maxrss``, so the 2 GB of vectors count):

  (a) tv100: `tv100.tasks.rank.relevance.score_relevance` with the default `RelevanceConfig`
      on all images: seconds, peak RSS, precision and recall per planted kind.
  (b) baseline: on random subsets of `--subsets` images (default 2,500 and 5,000: at 800
      classes the 5,000 alone takes minutes on 2 cores),
      ``cross_val_predict(LogisticRegression(), cv=5, method="predict_proba")`` (lbfgs,
      multinomial, default C and max_iter) then ``cleanlab.filter.find_label_issues`` on those
      probabilities (its default ``prune_by_noise_rate``), the plain recipe of cleanlab's
      tutorials: seconds, peak RSS, precision and recall of "flagged" against all noise.
      Its time at `--n` images is extrapolated from the two subsets with the power law they
      imply, ``t(n) = t(n2) * (n / n2) ** log(t2 / t1) / log(n2 / n1)`` (floored at linear:
      every lbfgs iteration touches every image), and its memory as the ``n x classes``
      float64 probabilities cross-validation returns plus the vectors as float64 (sklearn
      copies float32 input).

The last line printed is one JSON object.

    .venv/bin/python bench/relevance.py [--n 1000000] [--classes 800] [--subsets 2500 5000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tv100.sandbox.labelnoise import OFFTOPIC, OTHER_SERIES, noisy_embeddings
from tv100.tasks.rank.config import RelevanceConfig
from tv100.tasks.rank.relevance import KEEP, score_relevance


def inputs(n: int, dim: int, classes: int, seed: int) -> Path:
    """The generated inputs' folder (made once per size and seed)."""
    folder = Path(tempfile.gettempdir()) / "tv100-bench-relevance" / f"{n}-{dim}-{classes}-{seed}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        data = noisy_embeddings(n=n, dim=dim, n_classes=classes, seed=seed)
        for name in ("vectors", "labels", "truth", "kind"):
            np.save(folder / f"{name}.npy", getattr(data, name))
        (folder / "done").write_text("ok")
    return folder


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def precision_recall(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    tp = int((pred & true).sum())
    return round(tp / max(1, int(pred.sum())), 4), round(tp / max(1, int(true.sum())), 4)


def child_tv100(folder: str, classes: int) -> dict[str, Any]:
    vectors = np.load(Path(folder) / "vectors.npy")
    labels = np.load(Path(folder) / "labels.npy")
    kind = np.load(Path(folder) / "kind.npy")
    truth = np.load(Path(folder) / "truth.npy")
    loaded = peak_rss_mib()
    start = time.perf_counter()
    scores = score_relevance(vectors, labels, classes, RelevanceConfig())
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": round(seconds, 2), "peak_rss_mib": round(peak_rss_mib()),
                           "data_rss_mib": round(loaded)}
    for name, code in (("other_series", OTHER_SERIES), ("offtopic", OFFTOPIC)):
        p, r = precision_recall(scores.decision == code, kind == code)
        out[f"{name}_precision"], out[f"{name}_recall"] = p, r
    p, r = precision_recall(scores.decision != KEEP, kind != 0)
    out["precision"], out["recall"] = p, r
    hit = (scores.decision == OTHER_SERIES) & (kind == OTHER_SERIES)
    out["suspected_right"] = round(float((scores.suspected[hit] == truth[hit]).mean()), 4)
    return out


def child_baseline(folder: str, subset: int, seed: int) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    vectors = np.load(Path(folder) / "vectors.npy", mmap_mode="r")
    labels = np.load(Path(folder) / "labels.npy")
    kind = np.load(Path(folder) / "kind.npy")
    pick = np.sort(np.random.default_rng(seed).choice(len(labels), subset, replace=False))
    x, y, k = np.asarray(vectors[pick]), labels[pick], kind[pick]
    present, y = np.unique(y, return_inverse=True)  # classes of the subset, 0..m-1
    start = time.perf_counter()
    probs = cross_val_predict(LogisticRegression(), x, y, cv=5, method="predict_proba")
    issues = find_label_issues(y, probs, n_jobs=1)
    seconds = time.perf_counter() - start
    p, r = precision_recall(issues, k != 0)
    return {"n": subset, "classes": len(present), "seconds": round(seconds, 2),
            "peak_rss_mib": round(peak_rss_mib()), "precision": p, "recall": r,
            "other_series_recall": precision_recall(issues, k == OTHER_SERIES)[1],
            "offtopic_recall": precision_recall(issues, k == OFFTOPIC)[1]}


def run_child(*args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=800)
    ap.add_argument("--subsets", type=int, nargs=2, default=[2_500, 5_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        what, folder, *rest = args.child
        if what == "inputs":
            result = {"folder": str(inputs(*(int(v) for v in rest)))}
        elif what == "tv100":
            result = child_tv100(folder, int(rest[0]))
        else:
            result = child_baseline(folder, int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    t0 = time.perf_counter()
    # Generated in a child too: a child's ru_maxrss starts at its parent's peak at fork time.
    folder = run_child("inputs", "-", str(args.n), str(args.dim), str(args.classes),
                       str(args.seed))["folder"]
    print(f"inputs: {folder} ({time.perf_counter() - t0:.1f} s)", flush=True)
    tv = run_child("tv100", folder, str(args.classes))
    print(f"tv100: {tv}", flush=True)
    base = [run_child("baseline", folder, str(s), str(args.seed)) for s in args.subsets]
    for b in base:
        print(f"baseline: {b}", flush=True)
    (n1, t1), (n2, t2) = ((b["n"], b["seconds"]) for b in base)
    exponent = max(1.0, math.log(t2 / t1) / math.log(n2 / n1))
    base_s = t2 * (args.n / n2) ** exponent
    base_mib = args.n * (args.classes + args.dim) * 8 / 2**20
    print(json.dumps({
        "bench": "relevance", "n": args.n, "dim": args.dim, "classes": args.classes,
        "tv100_s": tv["seconds"], "tv100_peak_rss_mib": tv["peak_rss_mib"],
        "tv100_data_rss_mib": tv["data_rss_mib"],
        "tv100_other_series_pr": [tv["other_series_precision"], tv["other_series_recall"]],
        "tv100_offtopic_pr": [tv["offtopic_precision"], tv["offtopic_recall"]],
        "tv100_pr": [tv["precision"], tv["recall"]], "suspected_right": tv["suspected_right"],
        "baseline_subset_s": {str(b["n"]): b["seconds"] for b in base},
        "baseline_subset_peak_rss_mib": base[-1]["peak_rss_mib"],
        "baseline_pr_at_subset": [base[-1]["precision"], base[-1]["recall"]],
        "baseline_exponent": round(exponent, 2),
        "baseline_s_extrapolated": round(base_s), "baseline_mib_extrapolated": round(base_mib),
        "ratio": round(base_s / tv["seconds"], 1),
    }))


if __name__ == "__main__":
    main()
