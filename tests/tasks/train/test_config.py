"""The train stage's config: validation names the bad value and what was expected."""

from __future__ import annotations

import pytest

from tv100.tasks.train.config import (
    DEFAULT_RECIPES,
    RECIPES,
    TrainConfig,
    TrainResult,
    TrainStageConfig,
)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"recipe": "mixup"}, "recipe"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"sampling": "oversample"}, "sampling"),
        ({"wiseft_alphas": (0.5, 1.5)}, "wiseft_alphas"),
        ({"probe_weight_decays": ()}, "probe_weight_decays"),
        ({"hflip": 2.0}, "hflip"),
        ({"threads": 0}, "threads"),
        ({"workers": -1}, "workers"),
    ],
)
def test_train_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}="):
        TrainConfig(**kwargs)


def test_templates_need_a_placeholder():
    with pytest.raises(ValueError, match="placeholder"):
        TrainConfig(templates=("no placeholder",))


def test_stage_config_one_train_config_per_recipe():
    cfg = TrainStageConfig(model="m@x", recipes=("linear", "wiseft"),
                           train=TrainConfig(epochs=3, seed=2))
    assert [(c.recipe, c.epochs, c.seed) for c in cfg.recipe_configs()] == [
        ("linear", 3, 2), ("wiseft", 3, 2)]
    assert TrainStageConfig(model="m@x").recipes == DEFAULT_RECIPES
    assert set(DEFAULT_RECIPES) <= set(RECIPES)
    with pytest.raises(ValueError, match="recipe 'bogus' is unknown"):
        TrainStageConfig(model="m@x", recipes=("bogus",))
    with pytest.raises(ValueError, match="TrainStageConfig.recipes="):
        TrainStageConfig(model="m@x", recipes=())
    with pytest.raises(ValueError, match="TrainStageConfig.model="):
        TrainStageConfig(model="")


def test_results_are_frozen():
    from dataclasses import FrozenInstanceError

    out = TrainResult(classes=2, chance=0.5, splits={}, leakage=0, exported=None, runs=(),
                      tables={})
    with pytest.raises(FrozenInstanceError):
        out.classes = 3  # type: ignore[misc]
    with pytest.raises(KeyError, match="did not run"):
        out.run("linear")
