"""`tv100 build --config build.toml`, `--set`, `--print-config`, and the build flow's
`config` parameter (what `prefect.yaml` deployments set): every stage's options, checked
by the stage's own config objects.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tv100.flows.cli import app

REPO = Path(__file__).resolve().parents[2]

BUILD_TOML = """
[build]
runner = "threads"
train = false

[discover]
location = "https://datasets.imdbws.com/"
since = 2022
min_votes = 500

[collect]
engines = ["bing", "duckduckgo"]
per_series_cap = 300
engine_urls = { bing = "http://127.0.0.1:9000" }

[clean]
phash_threshold = 8
min_side = 64

[rank]
models = ["RN50@openai", "ViT-B-16@openai"]
k = 50

[train]
recipes = ["zeroshot", "linear"]
epochs = 3
sampling = "balanced"

[report]
few = 10
"""


def printed(args: list[str]) -> dict:
    res = CliRunner().invoke(app, ["build", "--print-config", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return tomllib.loads(res.output)


def test_print_config_layers_defaults_file_set_and_options(tmp_path: Path):
    path = tmp_path / "build.toml"
    path.write_text(BUILD_TOML)
    data = tmp_path / "data"
    got = printed(["--config", str(path), "--set", "train.epochs=5", "--set",
                   "collect.query_template={title} drama", "--k", "7",
                   "--data", str(data)])  # fmt: skip
    assert got["discover"]["since"] == 2022 and got["discover"]["min_votes"] == 500
    assert got["collect"]["engines"] == ["bing", "duckduckgo"]
    assert got["collect"]["engine_urls"] == {"bing": "http://127.0.0.1:9000"}
    assert got["clean"]["phash_threshold"] == 8 and got["clean"]["min_side"] == 64
    assert got["rank"]["models"] == ["RN50@openai", "ViT-B-16@openai"]
    assert got["rank"]["k"] == 7  # the command line overrides the file
    assert got["train"]["epochs"] == 5 and got["train"]["recipes"] == ["zeroshot", "linear"]
    assert got["train"]["model"] == "RN50@openai"  # the first rank model
    assert got["collect"]["query_template"] == "{title} drama"  # --set: text when not TOML
    assert got["build"]["train"] is False and got["build"]["data"] == str(data)
    assert got["report"]["few"] == 10 and got["report"]["many"] == 100  # defaults kept
    assert got["discover"]["max_pages"] == 200 and got["rank"]["aggregate"] == "max"
    assert not data.exists()  # printing the settings creates nothing


def test_printed_settings_read_back_the_same(tmp_path: Path):
    path = tmp_path / "build.toml"
    path.write_text(BUILD_TOML)
    first = CliRunner().invoke(app, ["build", "--print-config", "--config", str(path)]).output
    again = tmp_path / "again.toml"
    again.write_text(first)
    second = CliRunner().invoke(app, ["build", "--print-config", "--config", str(again)])
    assert second.exit_code == 0, second.output
    assert second.output == first


BAD = {
    "unknown key": ("[collect]\nper_series_capp = 3\n",
                    "unknown key 'per_series_capp' in [collect]"),
    "unknown table": ("[dedupe]\nthreshold = 3\n", "unknown table [dedupe]"),
    "wrong type": ('[train]\nepochs = "many"\n',
                   '[train] epochs = "many": expected a valid integer'),
    "out of range": ("[rank]\nk = 0\n", "[rank] k = 0: SelectConfig.k=0; expected 1..100000"),
    "stage config refuses": ("[collect]\nquery_template = \"{year}\"\n",
                             "[collect] query_template"),
    "unknown engine": ('[collect]\nengines = ["altavista"]\n', "altavista"),
    "unknown recipe": ('[train]\nrecipes = ["magic"]\n', "[train] recipes"),
    "bad model": ('[rank]\nmodels = ["ViT-Z"]\n', "ViT-Z"),
    "bad runner": ('[build]\nrunner = "slurm"\n', "[build] runner = 'slurm'"),
    "not toml": ("[collect\n", "not valid TOML"),
    "splits over 1": ("[train]\ntest_ratio = 0.6\nval_ratio = 0.6\n", "[train] val_ratio"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settings_are_one_line_naming_file_and_key(case: str, tmp_path: Path):
    content, needle = BAD[case]
    path = tmp_path / "build.toml"
    path.write_text(content)
    data = tmp_path / "data"
    res = CliRunner().invoke(app, ["build", "--config", str(path), "--location", "x",
                                   "--data", str(data)])  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"tv100: error: {path}"), res.output
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.output and not data.exists()


def test_missing_config_file_and_bad_set(tmp_path: Path):
    res = CliRunner().invoke(app, ["build", "--config", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "nope.toml" in res.output and "not a readable file" in res.output
    res = CliRunner().invoke(app, ["build", "--location", "x", "--set", "epochs=3"])
    assert res.exit_code == 2 and "expected TABLE.KEY=VALUE" in res.output
    res = CliRunner().invoke(app, ["build", "--location", "x", "--set", "train.epoch=3"])
    assert res.exit_code == 2 and "unknown key 'epoch' in [train]" in res.output


def test_build_without_location_is_one_line():
    res = CliRunner().invoke(app, ["build"])
    assert res.exit_code == 2 and "--location" in res.output and "[discover] location" in (
        res.output)


def test_every_table_takes_its_stage_flows_parameters():
    """The settings are the stage flows' own parameters (a new option appears by itself)."""
    import inspect

    from tv100.flows.build import OPTIONS, build_flow
    from tv100.flows.clean import clean_flow
    from tv100.flows.collect import collect_flow
    from tv100.flows.discover import discover_flow
    from tv100.flows.rank import rank_flow
    from tv100.flows.train import train_flow

    for section, flow in [("discover", discover_flow), ("collect", collect_flow),
                          ("clean", clean_flow), ("rank", rank_flow), ("train", train_flow)]:
        params = set(inspect.signature(flow.fn).parameters) - {"data", "wait"}
        assert set(OPTIONS[section]) == params, section
    # The build flow's parameter schema (what deployments are validated against) has config.
    assert "config" in build_flow.parameters.properties


def test_build_flow_config_parameter_is_checked_like_the_file():
    from tv100.flows.build import resolve_settings
    from tv100.tasks.buildconfig import ConfigError

    settings = resolve_settings([("config", {"discover": {"location": "x"},
                                             "train": {"epochs": 2}})])
    assert settings["train"]["epochs"] == 2
    with pytest.raises(ConfigError, match=r"^config: \[clean\] min_side = 0: "):
        resolve_settings([("config", {"discover": {"location": "x"}, "clean": {"min_side": 0}})])


def test_prefect_yaml_parameters_are_valid_settings():
    """Every deployment of the build flow: its parameters are the flow's, and its `config`
    resolves (the same check the flow makes when it starts)."""
    from tv100.flows.build import build_flow, parameter_layer, resolve_settings

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    import prefect

    assert spec["prefect-version"] == prefect.__version__
    builds = [d for d in spec["deployments"] if d["entrypoint"] == "flows/build.py:build_flow"]
    assert builds
    accepted = set(build_flow.parameters.properties)
    for d in builds:
        params = d.get("parameters", {})
        assert set(params) <= accepted, d["name"]
        build_flow.validate_parameters(params)
        resolve_settings([("config", params.get("config") or {}),
                          ("parameters", parameter_layer(params))])
