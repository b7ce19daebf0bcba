"""Fine-tuning on the tiny recipe dataset: training options change training and workers do
not; a run killed right after its first epoch checkpoint resumes to the same numbers as an
uninterrupted one, bit for bit."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq

from tests.tasks.train.recipe_data import FT, NAMES, SPEC, build_dataset


def test_training_options_change_training_and_workers_do_not(arch, dataset):
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.recipes import run_recipe

    root, splits, paths = dataset
    one = {**FT, "epochs": 1}
    runs = {
        name: run_recipe(root, splits, NAMES, SPEC, TrainConfig(**one, **kw), paths=paths)
        for name, kw in {
            "base": {},
            "balanced": {"sampling": "balanced"},
            "adjusted": {"logit_adjust_tau": 1.0},
        }.items()
    }
    base = runs["base"]
    assert base.resumed_from_epoch == 0
    # Augmentation is seeded per (seed, epoch, position), so loading in a worker process
    # changes nothing. Same knobs, same run: drop its folder (checkpoint, scores, result)
    # to train it again (with them, the run is reused).
    root.fs.rm(root.path(f"runs/{base.run_id}"), recursive=True)
    again = run_recipe(root, splits, NAMES, SPEC, TrainConfig(**one, workers=1), paths=paths)
    assert again.run_id == base.run_id and again.resumed_from_epoch == 0
    assert again.history == base.history
    assert np.array_equal(again.scores_by_split["test"][0], base.scores_by_split["test"][0])
    for name in ("balanced", "adjusted"):
        r = runs[name]
        assert r.run_id != base.run_id
        assert r.history[0]["loss"] != base.history[0]["loss"]
        assert not np.array_equal(r.scores_by_split["val"][0], base.scores_by_split["val"][0])


#: Trains, and SIGKILLs itself right after the first checkpoint is in place (no polling,
#: no clock: the kill lands at the same point however busy the machine is).
RESUME_SCRIPT = """
import json, os, signal, sys
import open_clip
import pyarrow.parquet as pq
open_clip.add_model_config(sys.argv[1])
import tv100.tasks.train.finetune as finetune
from tv100.storage.root import DataRoot
from tv100.tasks.train.config import TrainConfig
from tv100.tasks.train.recipes import run_recipe
save = finetune._save_checkpoint
def save_then_die(*args, **kwargs):
    save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
finetune._save_checkpoint = save_then_die
args = json.loads(sys.argv[2])
splits = pq.read_table(args["splits"])
paths = json.loads(open(args["paths"]).read())
run_recipe(DataRoot(args["root"]), splits, args["names"], args["spec"],
           TrainConfig(**args["config"]), paths=paths)
"""


def test_resume_after_kill_matches_uninterrupted_run(arch, results, tmp_path):
    import torch

    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.recipes import run_recipe

    reference = results["finetune"]
    root, splits, paths = build_dataset(tmp_path / "data")
    pq.write_table(splits, tmp_path / "splits.parquet")
    (tmp_path / "paths.json").write_text(json.dumps(paths))
    args = {"root": root.url, "splits": str(tmp_path / "splits.parquet"),
            "paths": str(tmp_path / "paths.json"), "names": NAMES, "spec": SPEC,
            "config": {"recipe": "finetune", **FT}}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RESUME_SCRIPT), arch, json.dumps(args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ckpt = root.path(f"runs/{reference.run_id}/ckpt-last.pt")
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1
    assert {"visual", "head", "optimizer", "scheduler", "scaler", "rng", "step", "history",
            "sampler"} <= set(state)
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert state["step"] == math.ceil(90 / FT["batch_size"])
    assert not root.fs.exists(root.path(f"runs/{reference.run_id}/result.json"))

    resumed = run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="finetune", **FT),
                         paths=paths)
    assert resumed.run_id == reference.run_id
    assert resumed.resumed_from_epoch == 1
    assert resumed.history == reference.history
    for split in ("val", "test"):
        assert np.array_equal(resumed.scores_by_split[split][0],
                              reference.scores_by_split[split][0])
        assert resumed.metrics_by_split[split] == reference.metrics_by_split[split]
