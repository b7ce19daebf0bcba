"""tasks/rank/zeroshot.py: zero-shot metrics per series, one or several models.

The peer check (`test_top1_equals_clip_benchmark`) runs LAION's CLIP_benchmark on the same
model, images, class names and template and requires the same top-1 as tv100.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from tests.support.rank_fixtures import noise_jpeg, sandbox_clip, sandbox_eval, tiny_arch  # noqa: F401
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import ZEROSHOT
from tv100.tasks.rank.clip import class_weights, load_clip
from tv100.tasks.rank.config import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    EmbedConfig,
    SelectConfig,
    ZeroShotConfig,
)
from tv100.tasks.rank.embed import embed_images, load_embeddings
from tv100.tasks.rank.models import ModelSpec
from tv100.tasks.rank.select import select_classes
from tv100.tasks.rank.zeroshot import (
    classify,
    overall_top1,
    series_table,
    softmax_scores,
    top_k_indices,
    zero_shot,
    zero_shot_models,
)


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
        _, rel = store.put(noise_jpeg(i), "jpg")
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


def test_task_wrappers_run_in_a_flow(tiny_setup, prefect_harness):
    from prefect import flow

    from tv100.tasks.rank.embed import embed_task
    from tv100.tasks.rank.select import select_task
    from tv100.tasks.rank.zeroshot import classify_images, zeroshot_task

    root, clip, images, series = tiny_setup
    spec = str(clip.spec)

    @flow
    def rank(data: str) -> tuple[pa.Table, pa.Table, pa.Table]:
        droot = DataRoot(data)
        embedded = embed_task(droot, images.select(["image_id", "path"]), spec)
        zs = zeroshot_task(droot, [spec], images, series, embedded.table_sha256)
        both = classify_images(droot, [spec], images, series, EmbedConfig(), ZeroShotConfig())
        return zs, both, select_task(zs, SelectConfig(k=1, min_images=1))

    zs, both, classes = rank(root.url)
    assert zs.num_rows == 3 and classes.num_rows == 3 and both.equals(zs)
    assert sum(classes.column("kept").to_pylist()) == 1


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
