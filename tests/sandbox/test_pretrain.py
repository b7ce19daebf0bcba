"""sandbox/pretrain.py and the `known` flag: a pre-trained sandbox CLIP, and the acceptance
test of the rank stage on it (the right series are selected)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.support.rank_fixtures import sandbox_clip, sandbox_eval  # noqa: F401  (fixtures)
from tv100.sandbox.pretrain import PretrainConfig, known_series, model_folder, pretrain
from tv100.sandbox.world import build_world, pick_known
from tv100.tasks.rank.clip import load_clip
from tv100.tasks.rank.config import SelectConfig
from tv100.tasks.rank.models import model_key
from tv100.tasks.rank.select import select_classes, summarize
from tv100.tasks.rank.zeroshot import overall_top1, zero_shot

#: A hang guard: the first test that needs `sandbox_clip` pre-trains it (~2 min on 2 idle
#: cores, several times that on a busy machine).
pytestmark = pytest.mark.timeout(1800)

#: A pretrain config that runs in about a second (for determinism and caching tests).
TINY = PretrainConfig(
    n_series=4,
    image_size=16,
    patch_size=8,
    width=32,
    head_width=16,
    layers=1,
    embed_dim=16,
    text_width=64,
    text_layers=1,
    context_length=16,
    renders_per_series=2,
    render_scale=0.2,
    steps=3,
    warmup_steps=1,
    batch_size=2,
)

# ============================================================================ world


def test_half_of_the_candidates_are_known():
    world = build_world(seed=0)
    candidates = [t for t in world.titles if t.expected]
    known = [t for t in candidates if t.known]
    assert len(known) == len(candidates) // 2 == 24
    assert not any(t.known for t in world.titles if not t.expected)
    assert [sid for sid, _ in known_series(world)] == sorted(t.series_id for t in known)
    table = world.manifest_tables()["sandbox_series"]
    assert str(table.schema.field("known").type) == "bool"
    assert table.column("known").to_pylist() == [t.known for t in world.titles]


def test_known_is_seeded_and_order_free():
    a, b, c = build_world(seed=5), build_world(seed=5), build_world(seed=6)
    assert [t.known for t in a.titles] == [t.known for t in b.titles]
    ids = [t.series_id for t in a.titles if t.expected]
    known_a = {t.series_id for t in a.titles if t.known}
    assert pick_known(5, ids) == pick_known(5, ids[::-1]) == known_a
    assert pick_known(5, ids) != pick_known(6, ids)
    assert {t.series_id for t in c.titles if t.known} != {t.series_id for t in a.titles if t.known}
    # the flag draws from its own stream: every other attribute is as before
    assert [replace(t, known=False) for t in a.titles] == [
        replace(t, known=False) for t in build_world(seed=5).titles
    ]
    odd = build_world(seed=1, n_series=7)
    assert sum(t.known for t in odd.titles) == 3


# ============================================================================ config


def test_config_validation_and_hash():
    with pytest.raises(ValueError, match="width"):
        PretrainConfig(width=100, head_width=64)
    with pytest.raises(ValueError, match="image_size"):
        PretrainConfig(image_size=60, patch_size=8)
    with pytest.raises(ValueError, match="steps"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="templates"):
        PretrainConfig(templates=("no slot",))
    base = PretrainConfig()
    assert replace(base, threads=1).config_hash() == base.config_hash()
    assert replace(base, steps=base.steps + 1).config_hash() != base.config_hash()
    assert replace(base, world_seed=1).config_hash() != base.config_hash()
    assert model_folder("/data", base).name == f"sandbox-clip-{base.config_hash()}"


# ============================================================================ training


def test_tiny_pretrain_is_deterministic_cached_and_loadable(tmp_path):
    first = pretrain(tmp_path / "a", TINY)
    second = pretrain(tmp_path / "b", TINY)
    assert first.trained and second.trained
    wa = Path(first.folder, "open_clip_model.safetensors").read_bytes()
    wb = Path(second.folder, "open_clip_model.safetensors").read_bytes()
    assert wa == wb  # same config and threads, same weights
    assert model_key(first.spec).split("@")[1] == model_key(second.spec).split("@")[1]
    meta = json.loads(Path(first.folder, "pretrain.json").read_text())
    assert meta["config_hash"] == TINY.config_hash() and len(meta["known"]) == 2
    again = pretrain(tmp_path / "a", TINY)
    assert not again.trained and again.spec == first.spec and again.known == first.known
    clip = load_clip(first.spec, "cpu", reuse=False)
    assert clip.image_size == 16 and clip.embed_dim == 16
    with pytest.raises(ValueError, match="world"):
        pretrain(tmp_path / "c", TINY, world=build_world(seed=3, n_series=4))


def test_sandbox_pretrain_is_cached(sandbox_clip):  # noqa: F811
    root = Path(sandbox_clip.folder).parents[1]
    again = pretrain(root, PretrainConfig())
    assert not again.trained and again.spec == sandbox_clip.spec  # a cache hit
    r = sandbox_clip
    print(f"\nsandbox CLIP pretrain: {r.seconds:.1f} s, final loss {r.final_loss:.4f}")


def test_rank_selects_the_series_the_sandbox_clip_has_not_seen(sandbox_eval, record_property):  # noqa: F811
    """Acceptance: known series recognised, unknown ones at chance, the K hardest = unknown."""
    ev = sandbox_eval
    zs = zero_shot(ev.root, ev.spec, ev.images, ev.series)
    top1 = {r["series_id"]: r["top1"] for r in zs.to_pylist()}
    unknown = set(top1) - ev.known
    chance = 1 / len(top1)
    known_acc = float(np.mean([top1[s] for s in ev.known]))
    unknown_acc = float(np.mean([top1[s] for s in unknown]))
    classes = select_classes(zs, SelectConfig(k=len(unknown), min_images=5))
    kept = {r["series_id"] for r in classes.to_pylist() if r["kept"]}
    precision = len(kept & unknown) / len(unknown)
    summary = summarize(classes)
    figures = {
        "known_top1": round(known_acc, 3),
        "unknown_top1": round(unknown_acc, 3),
        "chance": round(chance, 3),
        "overall_top1": round(overall_top1(zs), 3),
        "selection_precision": round(precision, 3),
        "images": ev.images.num_rows,
    }
    for k, v in figures.items():
        record_property(k, v)
    print(f"\nsandbox CLIP zero-shot: {json.dumps(figures)}")
    print("hardest:", [(h.title, h.accuracy) for h in summary.hardest])
    print("easiest:", [(e.title, e.accuracy) for e in summary.easiest])
    assert ev.embed_summary.failed_now == 0
    assert known_acc >= 0.8
    assert abs(unknown_acc - chance) <= 0.05
    assert precision >= 0.9
    assert summary.chance == pytest.approx(chance)
    assert summary.kept == len(unknown)
