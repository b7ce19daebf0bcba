"""tasks/rank/config.py: every knob of the rank stage is validated where it is defined."""

from __future__ import annotations

import pytest

from tv100.tasks.rank.config import (
    DEFAULT_MODELS,
    DEFAULT_TEMPLATES,
    EmbedConfig,
    RankConfig,
    SelectConfig,
    ZeroShotConfig,
    check_templates,
)


def test_templates_are_checked():
    assert check_templates(DEFAULT_TEMPLATES) == ("a photo of the TV series {}",)
    for bad in (["no placeholder"], ["{} and {}"], ["{name}"], "a {}", []):
        with pytest.raises(ValueError, match="template"):
            check_templates(bad)


def test_embed_config_validation():
    for kwargs, field in [
        ({"batch_size": 0}, "batch_size"),
        ({"workers": -1}, "workers"),
        ({"threads": 0}, "threads"),
        ({"shard_size": 0}, "shard_size"),
        ({"prefetch_batches": 0}, "prefetch_batches"),
        ({"device": "tpu"}, "device"),
    ]:
        with pytest.raises(ValueError, match=field):
            EmbedConfig(**kwargs)


def test_zeroshot_and_select_config_validation():
    for kwargs, field in [
        ({"templates": ("no slot",)}, "template"),
        ({"logit_scale": 0.5}, "logit_scale"),
        ({"top_k": 0}, "top_k"),
        ({"classes_per_batch": 0}, "classes_per_batch"),
        ({"threads": 0}, "threads"),
        ({"device": "tpu"}, "device"),
    ]:
        with pytest.raises(ValueError, match=field):
            ZeroShotConfig(**kwargs)
    for kwargs, field in [({"k": 0}, "k"), ({"min_images": -1}, "min_images"),
                          ({"aggregate": "median"}, "aggregate")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            SelectConfig(**kwargs)


def test_rank_config_checks_the_models():
    assert RankConfig().models == DEFAULT_MODELS
    two = RankConfig(models=["A@b", "local-dir:/x"])  # type: ignore[arg-type]
    assert two.models == ("A@b", "local-dir:/x")
    for bad in ((), "A@b", ("no-weights",)):
        with pytest.raises(ValueError, match="models"):
            RankConfig(models=bad)  # type: ignore[arg-type]
