"""tasks/zeroshot.py: zero-shot metrics per series, novelty across models, class selection.

The peer check (`test_top1_equals_clip_benchmark`) runs LAION's CLIP_benchmark on the same
model, images, class names and template and requires the same top-1 as tv100.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from tests.rank_fixtures import sandbox_clip, sandbox_eval, tiny_arch  # noqa: F401
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.tasks.rank.clip import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    ModelSpec,
    class_weights,
    load_clip,
)
from tv100.tasks.rank.embed import EmbedConfig, embed_images, load_embeddings
from tv100.tasks.rank.zeroshot import (
    CLASSES,
    ZEROSHOT,
    SelectConfig,
    ZeroShotConfig,
    classify,
    novelty,
    overall_top1,
    select_classes,
    series_table,
    softmax_scores,
    summarize,
    top_k_indices,
    zero_shot,
    zero_shot_models,
)

# ============================================================================ pure parts


def test_config_validation():
    for kwargs, field in [
        ({"templates": ("no slot",)}, "template"),
        ({"logit_scale": 0.5}, "logit_scale"),
        ({"top_k": 0}, "top_k"),
        ({"classes_per_batch": 0}, "classes_per_batch"),
        ({"threads": 0}, "threads"),
    ]:
        with pytest.raises(ValueError, match=field):
            ZeroShotConfig(**kwargs)
    for kwargs, field in [({"k": 0}, "k"), ({"min_images": -1}, "min_images"),
                          ({"aggregate": "median"}, "aggregate")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            SelectConfig(**kwargs)


def test_softmax_and_top_k():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    w = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)  # classes 1 and 2 tie
    p = softmax_scores(v, w, 100.0)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] > 0.999 and np.isclose(p[1, 1], p[1, 2])
    top = top_k_indices(p, 5)
    assert top.shape == (3, 3)
    assert top[1].tolist() == [1, 2, 0]  # a tie goes to the lower index, like argmax
    assert top[2, 0] == 1
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(11, 4)).astype(np.float32)
    ws = rng.normal(size=(7, 4)).astype(np.float32)
    truth = rng.integers(0, 7, size=11)
    whole = classify(vecs, ws, truth, 100.0, 5)
    chunked = classify(vecs, ws, truth, 100.0, 5, chunk=3)  # memory-bounded, same result
    assert np.array_equal(whole[0], chunked[0]) and np.allclose(whole[1], chunked[1])


def test_series_table_metrics():
    ids = ["tt3", "tt1", "tt2"]  # class order is not series order
    titles = ["C", "A", "B"]
    # four images of tt1 (class 1): two right, two taken for tt3 (class 0); none of tt2
    true_index = np.array([1, 1, 1, 1, 0])
    scores = np.array(
        [
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.6, 0.3, 0.1],
            [0.5, 0.2, 0.3],
            [0.9, 0.05, 0.05],
        ]
    )
    top, true_prob = classify(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32),
                              np.arange(3), 1.0, top_k=2)  # fmt: skip
    assert top.shape == (3, 2) and top[:, 0].tolist() == [0, 1, 2]
    top = top_k_indices(scores, 2)
    true_prob = scores[np.arange(5), true_index]
    t = series_table("m@1", ids, titles, true_index, top, true_prob, ZeroShotConfig())
    assert t.schema.equals(ZEROSHOT)
    rows = {r["series_id"]: r for r in t.to_pylist()}
    assert t.column("series_id").to_pylist() == ["tt1", "tt2", "tt3"]
    a = rows["tt1"]
    assert (a["n_images"], a["top1"], a["top5"]) == (4, 0.5, 0.75)
    assert a["mean_true_prob"] == pytest.approx((0.8 + 0.7 + 0.3 + 0.2) / 4)
    assert (a["confused_with"], a["confused_title"], a["confused_share"]) == ("tt3", "C", 0.5)
    assert rows["tt2"]["n_images"] == 0 and rows["tt2"]["top1"] is None
    assert rows["tt3"]["top1"] == 1.0 and rows["tt3"]["confused_with"] is None
    assert {r["n_classes"] for r in rows.values()} == {3}
    assert rows["tt1"]["templates"] == list(DEFAULT_TEMPLATES)
    assert overall_top1(t) == pytest.approx(3 / 5)


def _zs(model: str, acc: dict[str, float | None], n: dict[str, int] | None = None) -> pa.Table:
    rows = []
    for sid, a in acc.items():
        k = (n or {}).get(sid, 100 if a is not None else 0)
        rows.append(
            {"model_key": model, "series_id": sid, "title": sid.upper(), "n_images": k,
             "top1": a, "top5": a, "mean_true_prob": a, "confused_with": None,
             "confused_title": None, "confused_share": None, "n_classes": len(acc),
             "templates": list(DEFAULT_TEMPLATES)}  # fmt: skip
        )
    return pa.Table.from_pylist(rows, schema=ZEROSHOT)


def test_select_keeps_the_k_hardest_ties_by_series_id():
    zs = _zs("m", {"s5": 0.1, "s1": 0.5, "s3": 0.1, "s2": 0.9, "s4": 0.1, "s6": 0.0},
             n={"s6": 3})  # fmt: skip
    classes = select_classes(zs, SelectConfig(k=3, min_images=10))
    assert classes.schema.equals(CLASSES)
    rows = {r["series_id"]: r for r in classes.to_pylist()}
    assert classes.column("series_id").to_pylist() == ["s1", "s2", "s3", "s4", "s5", "s6"]
    # s3, s4, s5 tie at 0.1: all three fit; s6 is hardest but has too few images
    assert {s for s, r in rows.items() if r["kept"]} == {"s3", "s4", "s5"}
    assert [rows[s]["class_index"] for s in ("s3", "s4", "s5")] == [0, 1, 2]
    assert rows["s6"]["reason"] == "too_few_images" and rows["s6"]["rank"] is None
    assert rows["s1"]["reason"] == rows["s2"]["reason"] == "too_easy"
    assert [rows[s]["rank"] for s in ("s3", "s4", "s5", "s1", "s2")] == [1, 2, 3, 4, 5]
    # k=2 among a three-way tie: the lower series ids win
    two = {r["series_id"] for r in select_classes(zs, SelectConfig(k=2, min_images=10))
           .to_pylist() if r["kept"]}  # fmt: skip
    assert two == {"s3", "s4"}


def test_class_index_is_by_series_id_not_by_rank():
    zs = _zs("m", {"b": 0.3, "a": 0.2, "c": 0.1})
    rows = {r["series_id"]: r for r in select_classes(zs, SelectConfig(k=3)).to_pylist()}
    assert [rows[s]["class_index"] for s in "abc"] == [0, 1, 2]
    assert [rows[s]["rank"] for s in "abc"] == [2, 3, 1]


def test_novelty_is_judged_by_the_best_model_or_the_mean():
    zs = pa.concat_tables(
        [_zs("m1", {"x": 0.1, "y": 0.4, "z": None}), _zs("m2", {"x": 0.7, "y": 0.5, "z": None})]
    )
    best = {r["series_id"]: r["accuracy"] for r in novelty(zs, "max")}
    mean = {r["series_id"]: r["accuracy"] for r in novelty(zs, "mean")}
    assert best == {"x": 0.7, "y": 0.5, "z": None}
    assert mean["x"] == pytest.approx(0.4) and mean["y"] == pytest.approx(0.45)
    by_max = select_classes(zs, SelectConfig(k=1, min_images=1, aggregate="max"))
    by_mean = select_classes(zs, SelectConfig(k=1, min_images=1, aggregate="mean"))
    assert [r["series_id"] for r in by_max.to_pylist() if r["kept"]] == ["y"]
    assert [r["series_id"] for r in by_mean.to_pylist() if r["kept"]] == ["x"]
    assert by_max.column("models").to_pylist()[0] == ["m1", "m2"]


def test_image_counts_override_and_summary():
    zs = _zs("m", {"a": 0.0, "b": 0.25, "c": 1.0, "d": 0.5})
    counts = {"a": 10, "b": 60, "c": 60, "d": 60}  # missing from the counts: 0 images
    classes = select_classes(zs, SelectConfig(k=2, min_images=50), image_counts=counts)
    rows = {r["series_id"]: r for r in classes.to_pylist()}
    assert rows["a"]["reason"] == "too_few_images" and rows["a"]["n_images"] == 10
    assert rows["b"]["kept"] and rows["d"]["kept"] and not rows["c"]["kept"]
    summary = summarize(classes, n=2)
    assert summary["chance"] == 0.25 and summary["candidates"] == 4 and summary["kept"] == 2
    assert [h["series_id"] for h in summary["hardest"]] == ["a", "b"]
    assert [e["series_id"] for e in summary["easiest"]] == ["c", "d"]
    assert summary["kept_mean_accuracy"] == pytest.approx(0.375)


# ============================================================================ with a model


def _jpeg(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def tiny_setup(data_root, tiny_arch):  # noqa: F811
    store = ImageStore(data_root)
    series = pa.table(
        {
            "series_id": ["tt1", "tt2", "tt3"],
            "title": ["The Jade Lantern", "Moonlit Harbor", "Love in Busan"],
        }
    )
    rows = []
    for i in range(24):
        _, rel = store.put(_jpeg(i), "jpg")
        rows.append({"image_id": f"i{i:02d}", "series_id": f"tt{1 + i % 2}", "path": rel})
    images = pa.Table.from_pylist(rows)
    clip = load_clip(ModelSpec(tiny_arch, "random", seed=11), "cpu")
    embed_images(data_root, images, clip)
    return data_root, clip, images, series


@pytest.mark.parametrize("templates", [DEFAULT_TEMPLATES, ENSEMBLE_TEMPLATES])
def test_zero_shot_matches_a_direct_computation(tiny_setup, templates):
    root, clip, images, series = tiny_setup
    zs = zero_shot(root, clip, images, series, ZeroShotConfig(templates=templates))
    ids, vectors = load_embeddings(root, clip.key)
    weights = class_weights(clip, series.column("title").to_pylist(), templates)
    pred = (vectors @ weights.T).argmax(axis=1)
    truth = {r["image_id"]: int(r["series_id"][2:]) - 1 for r in images.to_pylist()}
    hits = [pred[k] == truth[i] for k, i in enumerate(ids)]
    assert overall_top1(zs) == pytest.approx(float(np.mean(hits)))
    rows = {r["series_id"]: r for r in zs.to_pylist()}
    assert rows["tt1"]["n_images"] == rows["tt2"]["n_images"] == 12
    assert rows["tt3"]["n_images"] == 0  # a candidate without images still competes
    assert rows["tt1"]["n_classes"] == 3 and rows["tt1"]["templates"] == list(templates)
    assert all(r["top5"] == 1.0 for r in rows.values() if r["n_images"])  # 3 classes < 5


def test_several_models_in_one_table(tiny_setup, tiny_arch):  # noqa: F811
    root, clip, images, series = tiny_setup
    other = load_clip(ModelSpec(tiny_arch, "random", seed=12), "cpu")
    embed_images(root, images, other)
    zs = zero_shot_models(root, [clip, other], images, series)
    assert zs.num_rows == 6 and set(zs.column("model_key").to_pylist()) == {clip.key, other.key}
    with pytest.raises(ValueError, match="model_key"):
        overall_top1(zs)
    classes = select_classes(zs, SelectConfig(k=1, min_images=1))
    assert classes.column("models").to_pylist()[0] == sorted([clip.key, other.key])


def test_zero_shot_input_errors(tiny_setup, tiny_arch):  # noqa: F811
    root, clip, images, series = tiny_setup
    with pytest.raises(ValueError, match="not candidates"):
        zero_shot(root, clip, images, series.slice(0, 1))
    with pytest.raises(ValueError, match="embed_images"):
        zero_shot(root, ModelSpec(tiny_arch, "random", seed=99), images, series)
    with pytest.raises(ValueError, match="twice"):
        zero_shot(root, clip, images, pa.concat_tables([series, series]))


# ============================================================================ Prefect wrappers


def test_task_wrappers_run_in_a_flow(tiny_setup, prefect_harness):
    from prefect import flow

    from tv100.tasks.rank.embed import embed_task
    from tv100.tasks.rank.zeroshot import select_task, zeroshot_task

    root, clip, images, series = tiny_setup
    spec = str(clip.spec)

    @flow
    def rank(data: str) -> tuple[pa.Table, pa.Table]:
        embedded = embed_task(data, images.select(["image_id", "path"]), spec)
        zs = zeroshot_task(data, [spec], images, series, embedded["table_sha256"])
        return zs, select_task(zs, SelectConfig(k=1, min_images=1))

    zs, classes = rank(root.url)
    assert zs.num_rows == 3 and classes.num_rows == 3
    assert sum(classes.column("kept").to_pylist()) == 1


# ============================================================================ peer check


def test_top1_equals_clip_benchmark(request, tmp_path):
    """CLIP_benchmark's zero-shot evaluation of the same model, images, names and template."""
    zsc = pytest.importorskip(
        "clip_benchmark.metrics.zeroshot_classification",
        reason="clip-benchmark is not installed: pip install clip-benchmark==1.6.2 "
        "(needs numpy<2.4)",
    )
    import torch

    ev = request.getfixturevalue("sandbox_eval")  # the shared pre-trained sandbox CLIP
    clip = load_clip(ev.spec, "cpu")
    # Decode every pixel, as the peer does (tv100's default drafts large JPEGs), in a root
    # of its own so the acceptance test's embeddings stay the default ones.
    root = DataRoot(str(tmp_path / "exact")).ensure()
    store = ImageStore(root)
    for rel in ev.images.column("path").to_pylist():
        assert store.put(open(ev.root.path(rel), "rb").read(), "jpg")[1] == rel
    embed_images(root, ev.images, clip, EmbedConfig(draft=False, workers=0))
    zs = zero_shot(root, clip, ev.images, ev.series)
    titles = ev.series.column("title").to_pylist()
    index = {sid: i for i, sid in enumerate(ev.series.column("series_id").to_pylist())}
    samples = [(r["path"], index[r["series_id"]]) for r in ev.images.to_pylist()]

    class Files(torch.utils.data.Dataset):
        classes = titles

        def __len__(self) -> int:
            return len(samples)

        def __getitem__(self, i: int):
            path, label = samples[i]
            with Image.open(root.path(path)) as img:
                return clip.preprocess(img), label

    loader = torch.utils.data.DataLoader(Files(), batch_size=64, num_workers=0)
    templates = [t.replace("{}", "{c}") for t in DEFAULT_TEMPLATES]  # its placeholder
    try:
        peer = zsc.evaluate(clip.model, loader, clip.tokenizer, titles, templates, "cpu", amp=False)
    except TypeError as err:  # float() of a 1-element array: removed in numpy 2.4
        pytest.fail(f"clip-benchmark 1.6.2 fails with numpy {np.__version__}: {err}; pin numpy<2.4")
    assert peer["acc1"] == pytest.approx(overall_top1(zs), abs=1e-12)
    n = sum(r["n_images"] for r in zs.to_pylist())
    top5 = sum(r["top5"] * r["n_images"] for r in zs.to_pylist()) / n
    assert peer["acc5"] == pytest.approx(top5, abs=1e-12)
    per_series = [r["top1"] for r in zs.to_pylist() if r["n_images"]]
    assert peer["mean_per_class_recall"] == pytest.approx(float(np.mean(per_series)), abs=1e-9)
