"""Shared fixtures of the rank-stage tests (clip, embed, zeroshot, pretrain).

Import the fixtures into a test module (``from tests.support.rank_fixtures import sandbox_eval``).
pytest makes one fixture definition per importing module, so the expensive results are
memoised here at module level: the sandbox CLIP is pre-trained once per test session
however many modules use it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

#: A tiny open_clip architecture for fast tests (registered by `tiny_arch`).
TINY_ARCH = "tv100-test-tiny"
TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
}

#: Served ordinary images per candidate series used to evaluate the sandbox CLIP.
EVAL_IMAGES_PER_SERIES = 10

_LOCK = threading.Lock()
_MEMO: dict[str, Any] = {}


@pytest.fixture(scope="session")
def tiny_arch(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register `TINY_ARCH` with open_clip (once per process) and return its name."""
    import open_clip

    with _LOCK:
        if "tiny" not in _MEMO:
            folder = tmp_path_factory.mktemp("open-clip-configs")
            path = folder / f"{TINY_ARCH}.json"
            path.write_text(json.dumps(TINY_CFG))
            open_clip.add_model_config(path)
            _MEMO["tiny"] = TINY_ARCH
    return TINY_ARCH


@pytest.fixture(scope="session")
def sandbox_clip(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The sandbox CLIP pre-trained once per session (`tv100.sandbox.pretrain.PretrainResult`)."""
    from tv100.sandbox.pretrain import PretrainConfig, pretrain

    with _LOCK:
        if "sandbox_clip" not in _MEMO:
            root = tmp_path_factory.mktemp("sandbox-clip-root")
            _MEMO["sandbox_clip"] = pretrain(root, PretrainConfig())
            _MEMO["sandbox_clip_root"] = root
    return _MEMO["sandbox_clip"]


@dataclass(frozen=True)
class SandboxEval:
    """The served images of every candidate series, stored and embedded with the sandbox CLIP.

    Attributes:
        root: the data root (`tv100.storage.root.DataRoot`).
        spec: the sandbox CLIP's spec (``local-dir:...``).
        model_key: its key.
        images: image_id, series_id, path (relative to the root).
        series: series_id, title of every candidate.
        known: ids of the series the model was trained on.
        embed_summary: what `tv100.tasks.rank.embed.embed_images` returned.
    """

    root: Any
    spec: str
    model_key: str
    images: pa.Table
    series: pa.Table
    known: frozenset[str]
    embed_summary: Any  # tv100.tasks.rank.config.EmbedSummary


@pytest.fixture(scope="session")
def sandbox_eval(sandbox_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> SandboxEval:
    """Store `EVAL_IMAGES_PER_SERIES` served images per candidate and embed them (once)."""
    from tv100.sandbox.imagehost import build_catalog
    from tv100.sandbox.world import build_world
    from tv100.storage.images import ImageStore
    from tv100.storage.root import DataRoot
    from tv100.tasks.rank.clip import load_clip
    from tv100.tasks.rank.config import EmbedConfig
    from tv100.tasks.rank.embed import embed_images

    with _LOCK:
        if "sandbox_eval" in _MEMO:
            result: SandboxEval = _MEMO["sandbox_eval"]
            return result
        world = build_world(seed=0)
        catalog = build_catalog(world)
        root = DataRoot(str(Path(tmp_path_factory.mktemp("sandbox-eval")) / "data")).ensure()
        store = ImageStore(root)
        rows = []
        for t in world.titles:
            if not t.expected:
                continue
            ordinary = [i for i in catalog.for_series(t.series_id) if i.plant is None]
            for img in ordinary[:EVAL_IMAGES_PER_SERIES]:
                data = catalog.content(img.url_path)
                assert data is not None
                sha, rel = store.put(data, "jpg")
                rows.append({"image_id": sha[:16], "series_id": t.series_id, "path": rel})
        images = pa.Table.from_pylist(rows)
        series = pa.Table.from_pylist(
            [{"series_id": t.series_id, "title": t.title} for t in world.titles if t.expected]
        )
        clip = load_clip(sandbox_clip.spec, "cpu")
        summary = embed_images(root, images, clip, EmbedConfig(workers=0))
        result = SandboxEval(
            root=root,
            spec=sandbox_clip.spec,
            model_key=clip.key,
            images=images,
            series=series,
            known=frozenset(t.series_id for t in world.titles if t.known),
            embed_summary=summary,
        )
        _MEMO["sandbox_eval"] = result
        return result


def noise_jpeg(seed: int, w: int = 48, h: int = 40, quality: int = 75) -> bytes:
    """A JPEG of seeded uniform noise: a distinct, decodable image per seed."""
    import io

    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()
