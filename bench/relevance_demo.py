"""Relevance cleaning on the sandbox demo: the same noisy build with and without it.

The sandbox plants 5-35% irrelevant images per series (`tv100.sandbox.imagehost`, other
series' scenes and off-topic pictures, recorded in `sandbox_images.plant`). This script:

1. runs the demo (`tv100 demo`, relevance cleaning on, its default) into `--data` unless a
   finished demo build is already there (``classes`` and ``metrics`` tables);
2. copies that data root and, on the copy, runs the rank stage with ``relevance=False``
   (every cleaned image ranked, the baseline) and the train stage with the demo's settings;
3. prints, side by side: relevance detection against the planted truth (recall and
   precision per kind, `tv100.sandbox.noise`), selection precision with K = the number of
   series the sandbox CLIP has not seen, and test top-1 of each recipe.

The last line printed is one JSON object.

    .venv/bin/python bench/relevance_demo.py [--data ./data/demo]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tv100.flows.rank import rank_flow
from tv100.flows.train import train_flow
from tv100.sandbox.demo import DEMO_MIN_IMAGES, DEMO_TRAIN, demo_data, demo_flow
from tv100.sandbox.noise import noise_figures
from tv100.storage.catalog import query
from tv100.storage.root import DataRoot
from tv100.storage.tables import table_exists

SELECTION_SQL = """
select count(*) filter (where not s.known) as unknown_kept, count(*) as kept,
       (select count(*) from sandbox_series where expected and not known) as unknown
from classes c join sandbox_series s using (series_id) where c.kept
"""
TOP1_SQL = """
select recipe, value from metrics
where split = 'test' and metric = 'top1'
qualify row_number() over (partition by recipe order by created_at desc, run_id desc) = 1
order by recipe
"""


def figures(root: DataRoot) -> dict[str, Any]:
    """Selection precision and the latest test top-1 per recipe of the build in `root`."""
    sel = query(root, SELECTION_SQL).to_pylist()[0]
    top1 = {r["recipe"]: round(r["value"], 4) for r in query(root, TOP1_SQL).to_pylist()}
    return {
        "selection_precision": round(sel["unknown_kept"] / sel["kept"], 4) if sel["kept"] else None,
        "kept": sel["kept"], "unknown": sel["unknown"], "top1": top1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=demo_data(), help="the demo's data root")
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    root = DataRoot(data)
    t0 = time.perf_counter()
    if not (table_exists(root, "classes") and table_exists(root, "metrics")):
        demo_flow(data=data)
    t_demo = time.perf_counter() - t0
    noise = noise_figures(root)
    assert noise is not None, f"{data} holds no sandbox ground truth (run `tv100 demo`)"
    with_cleaning = figures(root)
    k = with_cleaning["unknown"]
    with tempfile.TemporaryDirectory(prefix="tv100-bench-norel-") as tmp:
        copy = str(Path(tmp, "data"))
        shutil.copytree(data, copy, ignore=shutil.ignore_patterns(".tv100.lock"))
        t1 = time.perf_counter()
        rank_flow(data=copy, k=k, min_images=DEMO_MIN_IMAGES, relevance=False)
        train_flow(data=copy, **DEMO_TRAIN)
        t_base = time.perf_counter() - t1
        without = figures(DataRoot(copy))
    kinds = {k.kind: {"planted": k.planted, "found": k.found, "recall": k.recall,
                      "flagged": k.flagged, "precision": k.precision} for k in noise.kinds}
    print(f"label noise: {sum(noise.planted.values())} of {noise.listed} listed "
          f"({noise.rate:.1%}; per series {noise.min_rate:.0%}-{noise.max_rate:.0%})")
    for kind, f in kinds.items():
        print(f"  {kind:26s} recall {f['recall']}  precision {f['precision']}  "
              f"({f['found']}/{f['planted']} found, {f['flagged']} flagged as such)")
    print(f"  both kinds                 recall {noise.recall}  precision {noise.precision}")
    print(f"{'':28s}{'with relevance':>16s}{'without':>10s}")
    print(f"{'selection precision (K=' + str(k) + ')':28s}"
          f"{with_cleaning['selection_precision']!s:>16s}{without['selection_precision']!s:>10s}")
    for recipe in sorted(set(with_cleaning["top1"]) | set(without["top1"])):
        print(f"{'test top-1 ' + recipe:28s}{with_cleaning['top1'].get(recipe)!s:>16s}"
              f"{without['top1'].get(recipe)!s:>10s}")
    print(json.dumps({
        "noise_rate": round(noise.rate, 4), "kinds": kinds,
        "recall": noise.recall, "precision": noise.precision,
        "with_relevance": with_cleaning, "without_relevance": without,
        "seconds": {"demo": round(t_demo, 1), "rank_and_train_without": round(t_base, 1)},
    }))


if __name__ == "__main__":
    main()
