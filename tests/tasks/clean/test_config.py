"""tasks/clean/config.py: every knob validated, naming the value and what was expected."""

from __future__ import annotations

import pytest

from tv100.tasks.clean.config import (
    CLEAN,
    CleanConfig,
    HashConfig,
    NearDupConfig,
    QualityConfig,
)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"phash_threshold": 33}, "phash_threshold"),
        ({"phash_threshold": -1}, "phash_threshold"),
        ({"dhash_threshold": 40}, "dhash_threshold"),
        ({"dhash_phash_max": 5}, "dhash_phash_max"),
        ({"clip_threshold": 1.0}, "clip_threshold"),
        ({"flat_max": 0}, "flat_max"),
        ({"leakage_action": "ignore"}, "leakage_action"),
    ],
    ids=[
        "phash-33",
        "phash-negative",
        "dhash-40",
        "grey-zone-below-t",
        "clip-1",
        "flat-0",
        "unknown-action",
    ],
)
def test_neardup_config_rejects_out_of_range(kwargs, field):
    with pytest.raises(ValueError, match=f"NearDupConfig.{field}=.*expected"):
        NearDupConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"workers": 0}, "workers"),
        ({"draft_size": 16}, "draft_size"),
        ({"chunksize": 0}, "chunksize"),
    ],
    ids=["workers-0", "draft-below-phash-input", "chunksize-0"],
)
def test_hash_config_rejects_out_of_range(kwargs, field):
    with pytest.raises(ValueError, match=f"HashConfig.{field}=.*expected"):
        HashConfig(**kwargs)


def test_default_workers_is_two_not_cpu_count():
    assert HashConfig().workers == 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"min_std": -1}, "min_std"),
        ({"min_entropy": 9}, "min_entropy"),
        ({"min_side": 0}, "min_side"),
        ({"max_aspect": 0.5}, "max_aspect"),
        ({"analysis_size": 8}, "analysis_size"),
    ],
    ids=["std-negative", "entropy-above-8", "side-0", "aspect-below-1", "analysis-tiny"],
)
def test_quality_config_rejects_out_of_range(kwargs, field):
    with pytest.raises(ValueError, match=f"QualityConfig.{field}=.*expected"):
        QualityConfig(**kwargs)


def test_clean_config_hands_each_step_its_knobs():
    cfg = CleanConfig(
        phash_threshold=6, dhash_threshold=None, drop_cross_series=False, min_side=50,
        max_aspect=2.0, min_std=1.0, min_entropy=2.0, workers=3,
    )
    assert cfg.hashing == HashConfig(workers=3)
    assert cfg.quality == QualityConfig(min_side=50, max_aspect=2.0, min_std=1.0, min_entropy=2.0)
    assert cfg.neardup == NearDupConfig(
        phash_threshold=6, dhash_threshold=None, drop_cross_series=False
    )


def test_clean_defaults_are_the_step_defaults():
    assert CLEAN.hashing == HashConfig()
    assert CLEAN.quality == QualityConfig()
    assert CLEAN.neardup == NearDupConfig()
    assert CLEAN.phash_threshold == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"phash_threshold": 33}, "phash_threshold=33"),
        ({"min_side": 0}, "min_side=0"),
        ({"workers": 0}, "workers=0"),
    ],
    ids=["phash-33", "side-0", "workers-0"],
)
def test_clean_config_is_validated_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CleanConfig(**kwargs)
