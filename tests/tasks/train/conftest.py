"""Fixtures of the train-stage unit tests: the tiny recipe dataset (`recipe_data`) and
every recipe run once on it, shared by the whole package."""

from __future__ import annotations

import pytest

from tests.tasks.train.recipe_data import (
    FT,
    NAMES,
    PROBE,
    SPEC,
    THREADS,
    build_dataset,
    register_arch,
)


@pytest.fixture(scope="package")
def arch(tmp_path_factory):
    return register_arch(tmp_path_factory.mktemp("oc-config"))


@pytest.fixture(scope="package")
def dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("ft") / "data")


@pytest.fixture(scope="package")
def results(arch, dataset):
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.recipes import run_recipe

    root, splits, paths = dataset
    configs = {
        "zeroshot": TrainConfig(recipe="zeroshot", threads=THREADS),
        "linear": TrainConfig(recipe="linear", **PROBE),
        "finetune": TrainConfig(recipe="finetune", **FT),
        "wiseft": TrainConfig(recipe="wiseft", **FT),
    }
    return {r: run_recipe(root, splits, NAMES, SPEC, c, paths=paths) for r, c in configs.items()}
