"""tasks/rank/embed.py: batched image embeddings into the sharded, resumable `embeddings` table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import tv100.tasks.rank.decoding as decoding
import tv100.tasks.rank.embed as embed_mod
from tests.support.rank_fixtures import (
    noise_jpeg,
    tiny_arch,  # noqa: F401  (fixture)
)
from tv100.storage.catalog import query
from tv100.storage.images import ImageStore
from tv100.storage.schemas import EMBEDDINGS
from tv100.storage.tables import done_shards, read_table, table_path
from tv100.tasks.rank.clip import load_clip
from tv100.tasks.rank.config import EmbedConfig
from tv100.tasks.rank.embed import (
    embed_images,
    embedded_ids,
    encode_tensor,
    load_embeddings,
    plan_parallelism,
)
from tv100.tasks.rank.models import ModelSpec


def _jpeg(seed: int, w: int = 48, h: int = 40) -> bytes:
    return noise_jpeg(seed, w, h, quality=90)


@pytest.fixture
def stored(data_root):
    """40 stored JPEGs, a missing file and a file that is no image."""
    store = ImageStore(data_root)
    items = []
    for i in range(40):
        _, rel = store.put(_jpeg(i), "jpg")
        items.append((f"img{i:03d}", rel))
    _, junk = store.put(b"<html>not an image</html>", "jpg")
    items += [("missing", "images/00/00/absent.jpg"), ("junk", junk)]
    return data_root, items


@pytest.fixture
def tiny(tiny_arch):  # noqa: F811
    return load_clip(ModelSpec(tiny_arch, "random", seed=5), "cpu")


def test_plan_never_oversubscribes(monkeypatch):
    monkeypatch.setattr(embed_mod.os, "cpu_count", lambda: 2)
    assert plan_parallelism(EmbedConfig(batch_size=64), 100) == (0, 2)  # tiny input
    assert plan_parallelism(EmbedConfig(batch_size=64), 10_000) == (0, 2)  # no spare core
    assert plan_parallelism(EmbedConfig(workers=1, threads=1), 10_000) == (1, 1)
    assert plan_parallelism(EmbedConfig(threads=1), 10_000) == (1, 1)
    monkeypatch.setattr(embed_mod.os, "cpu_count", lambda: 16)
    assert plan_parallelism(EmbedConfig(), 10_000) == (4, 2)
    assert plan_parallelism(EmbedConfig(), 100) == (0, 2)
    monkeypatch.setattr(embed_mod.os, "cpu_count", lambda: 3)
    assert plan_parallelism(EmbedConfig(), 10_000) == (1, 2)


def test_vectors_match_a_plain_loop_and_failures_are_rows(stored, tiny):
    root, items = stored
    summary = embed_images(root, items, tiny, EmbedConfig(batch_size=16, shard_size=1000))
    assert summary.embedded_now == 40 and summary.failed_now == 2
    table = read_table(root, "embeddings")
    assert table.column_names == EMBEDDINGS.names
    status = dict(
        zip(table.column("image_id").to_pylist(), table.column("status").to_pylist(), strict=True)
    )
    assert status["missing"] == "read_error" and status["junk"] == "decode_error"
    errors = {
        r["image_id"]: r["error_message"] for r in table.to_pylist() if r["status"] != "ok"
    }
    assert "FileNotFoundError" in errors["missing"] and errors["junk"]
    ids, vectors = load_embeddings(root, tiny.key)
    assert ids == sorted(f"img{i:03d}" for i in range(40))
    assert vectors.shape == (40, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The reference: PIL decode + the model's preprocess + encode_image, one image at a time.
    paths = dict(items)
    for k in (0, 17, 39):
        with Image.open(root.path(paths[ids[k]])) as img:
            x = tiny.preprocess(img).unsqueeze(0)
        with torch.inference_mode():
            ref = torch.nn.functional.normalize(tiny.model.encode_image(x), dim=-1)[0].numpy()
        assert np.abs(vectors[k] - ref).max() < 1e-5


def test_rerun_is_a_no_op_and_table_is_byte_identical(stored, tiny):
    root, items = stored
    first = embed_images(root, items, tiny, EmbedConfig(shard_size=16))
    assert first.shards == 3 and done_shards(root, "embeddings") == set()  # compacted
    before = open(table_path(root, "embeddings"), "rb").read()
    again = embed_images(root, items, tiny, EmbedConfig(shard_size=16))
    assert again.embedded_now == 0 and again.already == 42 and again.shards == 0
    assert again.table_sha256 == first.table_sha256
    assert open(table_path(root, "embeddings"), "rb").read() == before
    meta = pq.read_metadata(table_path(root, "embeddings"))
    assert meta.num_rows == 42


def test_nothing_left_to_embed_builds_no_model(stored, tiny_arch, monkeypatch):  # noqa: F811
    # A warm re-run given a spec: the key says everything is embedded; the model (seconds
    # to build for a real CLIP) is never loaded. New images load it.
    root, items = stored
    spec = ModelSpec(tiny_arch, "random", seed=5)
    first = embed_images(root, items[:30], spec)
    loads: list[object] = []
    real = embed_mod.load_clip
    monkeypatch.setattr(embed_mod, "load_clip", lambda *a, **k: loads.append(a) or real(*a, **k))
    again = embed_images(root, items[:30], spec)
    assert loads == [] and again.embedded_now == 0 and again.model_key == first.model_key
    assert again.table_sha256 == first.table_sha256
    more = embed_images(root, items, spec)
    assert len(loads) == 1 and more.embedded_now + more.failed_now == len(items) - 30


def test_interrupted_run_resumes_where_it_stopped(stored, tiny, monkeypatch):
    root, items = stored
    real = embed_mod.encode_batches

    def dies_in_second_shard(*args, **kwargs):
        for n, batch in enumerate(real(*args, **kwargs)):
            if n == 3:  # batches of 8: the first shard of 16 is written, the second is not
                raise KeyboardInterrupt("power cut")
            yield batch

    monkeypatch.setattr(embed_mod, "encode_batches", dies_in_second_shard)
    with pytest.raises(KeyboardInterrupt):
        embed_images(root, items, tiny, EmbedConfig(shard_size=16, batch_size=8, workers=0))
    assert len(done_shards(root, "embeddings")) == 1
    assert len(embedded_ids(root, tiny.key)) == 16
    monkeypatch.setattr(embed_mod, "encode_batches", real)
    resumed = embed_images(root, items, tiny, EmbedConfig(shard_size=16))
    assert resumed.already == 16 and resumed.embedded_now + resumed.failed_now == 26
    table = read_table(root, "embeddings")
    assert table.num_rows == 42 and len(set(table.column("image_id").to_pylist())) == 42


def test_new_images_only_are_embedded(stored, tiny):
    root, items = stored
    embed_images(root, items[:10], tiny)
    later = embed_images(root, items, tiny)
    assert later.already == 10 and later.embedded_now + later.failed_now == 32


def test_worker_process_gives_the_same_vectors(stored, tiny):
    root, items = stored
    ok = items[:40]
    embed_images(root, ok, tiny, EmbedConfig(workers=0, batch_size=8))
    _, in_process = load_embeddings(root, tiny.key)
    other = root.__class__(root.path("other-root")).ensure()
    store = ImageStore(other)
    for _, rel in ok:
        store.put(open(root.path(rel), "rb").read(), "jpg")
    summary = embed_images(other, ok, tiny, EmbedConfig(workers=1, threads=1, batch_size=8))
    assert summary.embedded_now == 40
    _, with_worker = load_embeddings(other, tiny.key)
    assert np.array_equal(in_process, with_worker)


def test_two_models_of_different_width_share_the_table(stored, tiny, tiny_arch, tmp_path):  # noqa: F811
    import json

    import open_clip

    root, items = stored
    cfg_path = tmp_path / "tv100-test-wide.json"
    cfg_path.write_text(
        json.dumps(
            {
                "embed_dim": 48,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
                "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 64, "heads": 1,
                             "layers": 1},
            }
        )
    )
    open_clip.add_model_config(cfg_path)
    wide = load_clip("tv100-test-wide@random", "cpu")
    embed_images(root, items, tiny)
    embed_images(root, items, wide)
    assert load_embeddings(root, tiny.key)[1].shape == (40, 32)
    assert load_embeddings(root, wide.key)[1].shape == (40, 48)
    counts = query(root, "select model_key, count(*) n from embeddings group by 1 order by 1")
    assert counts.column("n").to_pylist() == [42, 42]
    some = load_embeddings(root, wide.key, ["img001", "img003", "nope"])
    assert some[0] == ["img001", "img003"]


def test_input_validation(data_root, tiny):
    with pytest.raises(ValueError, match="path"):
        embed_images(data_root, pa.table({"image_id": ["a"]}), tiny)
    with pytest.raises(ValueError, match="twice"):
        embed_images(data_root, [("a", "x.jpg"), ("a", "y.jpg")], tiny)
    assert embed_images(data_root, [], tiny).images == 0


def test_encode_tensor_is_unit_length(tiny):
    v = encode_tensor(tiny, torch.rand(3, 3, 32, 32))
    assert v.shape == (3, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_draft_decoding_is_close_and_off_is_exact(data_root, tiny):
    """Large JPEGs decode at reduced scale by default; draft=False is a plain PIL loop."""
    from tv100.sandbox import imagegen

    store = ImageStore(data_root)
    items = []
    for i in range(6):
        rng = np.random.default_rng(i)
        sig = imagegen.make_signature(i, rng)
        _, rel = store.put(imagegen.encode(imagegen.render_scene(sig, rng, 640, 480)), "jpg")
        items.append((f"big{i}", rel))
    exact_root = data_root.__class__(data_root.path("exact")).ensure()
    exact_store = ImageStore(exact_root)
    for _, rel in items:
        exact_store.put(open(data_root.path(rel), "rb").read(), "jpg")
    embed_images(data_root, items, tiny)  # draft: 640x480 decodes at 1/8 (80x60 >= 32)
    embed_images(exact_root, items, tiny, EmbedConfig(draft=False))
    _, drafted = load_embeddings(data_root, tiny.key)
    _, exact = load_embeddings(exact_root, tiny.key)
    for (_, rel), v in zip(items, exact, strict=True):
        with Image.open(data_root.path(rel)) as img:
            x = tiny.preprocess(img).unsqueeze(0)
        with torch.inference_mode():
            ref = torch.nn.functional.normalize(tiny.model.encode_image(x), dim=-1)[0].numpy()
        assert np.abs(v - ref).max() < 1e-5
    cosine = (drafted * exact).sum(axis=1)
    assert cosine.min() > 0.98 and not np.array_equal(drafted, exact)


def _odd_images() -> list[Image.Image]:
    """Images of the modes and shapes the fast preprocess must match bit for bit."""
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), np.uint8), "RGB")
    return [
        rgb,
        Image.fromarray(rng.integers(0, 256, (90, 41, 3), np.uint8), "RGB"),
        Image.fromarray(rng.integers(0, 256, (20, 20), np.uint8), "L"),
        rgb.convert("P"),
        rgb.convert("RGBA"),
        rgb.convert("CMYK"),
        Image.fromarray(rng.integers(0, 2, (40, 33), np.uint8).astype(bool)),
    ]


def test_fast_preprocess_is_bit_for_bit_the_model_preprocess(tiny):
    fast = decoding.FastPreprocess.of(tiny.preprocess)
    assert fast is not None
    for img in _odd_images():
        ref = tiny.preprocess(img).numpy()
        out = np.empty_like(ref)
        fast.into(fast.pil(img), out)
        assert np.array_equal(out, ref), img.mode


def test_fast_preprocess_declines_other_transforms(tiny):
    assert decoding.FastPreprocess.of(lambda img: img) is None
    from torchvision import transforms as tv

    assert decoding.FastPreprocess.of(tv.Compose(tiny.preprocess.transforms[:-1])) is None


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain-preprocess"])
def test_prefetcher_matches_the_dataloader_batches(stored, tiny, fast, monkeypatch):
    root, items = stored
    rels = [rel for _, rel in items]
    order = [41, 3, 40, 7, *range(10, 30)]  # failures in the first batch and a short last one
    rels = [rels[i] for i in order]
    if not fast:
        monkeypatch.setattr(decoding.FastPreprocess, "of", classmethod(lambda cls, p: None))
    files = decoding.ImageFiles(root.url, rels, tiny.preprocess, tiny.image_size)
    got = list(decoding.Prefetcher(files, 5))
    want = [
        decoding.collate([files[i] for i in range(s, min(s + 5, len(rels)))])
        for s in range(0, len(rels), 5)
    ]
    assert len(got) == len(want) == 5
    for (gi, gx, gf), (wi, wx, wf) in zip(got, want, strict=True):
        assert gi == wi and gf == wf
        assert torch.equal(gx, wx)
    assert [f[1] for f in got[0][2]] == ["decode_error", "read_error"]


def test_prefetcher_thread_stops_when_the_consumer_does(stored, tiny):
    root, items = stored
    files = decoding.ImageFiles(root.url, [rel for _, rel in items], tiny.preprocess)
    batches = iter(decoding.Prefetcher(files, 4))
    next(batches)
    batches.close()  # type: ignore[attr-defined]
    import threading

    assert not [t for t in threading.enumerate() if t.name == "tv100-embed-decode"]


def test_a_bug_in_decoding_is_raised_not_hidden(stored, tiny, monkeypatch):
    root, items = stored
    files = decoding.ImageFiles(root.url, [rel for _, rel in items], tiny.preprocess)

    def broken(self, img, out):
        raise RuntimeError("bug")

    monkeypatch.setattr(decoding.FastPreprocess, "into", broken)
    with pytest.raises(RuntimeError, match="bug"):
        list(decoding.Prefetcher(files, 4))


def test_lanes_match_the_prefetcher_in_order_with_failure_rows(stored, tiny):
    """Two lanes of one torch thread each give the same vectors (to rounding), in order."""
    root, items = stored
    rels = [rel for _, rel in items]
    order = [41, 3, 40, 7, *range(10, 30)]  # failures in the first batch and a short last one
    rels = [rels[i] for i in order]
    files = decoding.ImageFiles(root.url, rels, tiny.preprocess, tiny.image_size)
    got = list(decoding.Lanes(files, 5, lambda x: encode_tensor(tiny, x), 2))
    want = list(decoding.Prefetcher(files, 5))
    assert len(got) == len(want) == 5
    for (gi, gv, gf), (wi, wx, wf) in zip(got, want, strict=True):
        assert gi == wi and gf == wf
        # one torch thread per lane: the same up to float rounding of the thread split
        assert np.abs(gv - encode_tensor(tiny, wx)).max() < 1e-6
    assert [f[1] for f in got[0][2]] == ["decode_error", "read_error"]


def test_lanes_stop_with_the_consumer_and_raise_bugs(stored, tiny, monkeypatch):
    import threading

    root, items = stored
    files = decoding.ImageFiles(root.url, [rel for _, rel in items], tiny.preprocess)
    batches = iter(decoding.Lanes(files, 4, lambda x: encode_tensor(tiny, x), 2))
    next(batches)
    batches.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name == "tv100-embed-lane"]

    def broken(images):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        list(decoding.Lanes(files, 4, broken, 2))
    assert not [t for t in threading.enumerate() if t.name == "tv100-embed-lane"]


def test_two_threads_on_cpu_use_lanes(stored, tiny, monkeypatch):
    root, items = stored
    used = []
    real = decoding.Lanes

    def spy(*args, **kwargs):
        used.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(embed_mod, "Lanes", spy)
    rels = [rel for _, rel in items]
    for threads in (2, 1):
        cfg = EmbedConfig(workers=0, threads=threads, batch_size=8)
        got = list(embed_mod.encode_batches(tiny, root, rels, cfg))
        assert sum(len(i) + len(f) for i, _, f in got) == len(rels)
    assert used == [2]  # one thread: the prefetching thread as before
