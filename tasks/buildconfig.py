"""A build's settings in one place: every stage's options, from a TOML file (``tv100 build
--config build.toml``), a deployment's ``config`` parameter and the command line.

The settings are one table per stage, whose keys are that stage flow's parameters (the
options of its ``tv100`` command), plus ``[build]`` (the data root, the task runner, and
whether the rank and train stages run)::

    [build]
    data = "./data"
    [discover]
    location = "https://datasets.imdbws.com/"
    since = 2022
    [collect]
    engines = ["bing", "duckduckgo"]
    per_series_cap = 300
    [train]
    recipes = ["zeroshot", "linear", "finetune"]
    epochs = 10

Layers are applied in order (defaults, the file, the command line), each checked as it
comes: an unknown table or key, a value of the wrong type, or a value the stage's own
frozen config refuses (`stage_config`: `DiscoverConfig`, `CollectConfig`, `CleanConfig`,
`RankConfig`, `TrainStageConfig`, `ReportConfig`, the very objects the stage flows build)
is a `ConfigError`: one line naming where the value came from, the key, and what was
expected. `to_toml` writes resolved settings back in the same format.
"""

from __future__ import annotations

import inspect
import json
import math
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tv100.tasks.clean.config import CleanConfig, NearDupConfig
from tv100.tasks.collect.config import CollectConfig
from tv100.tasks.discover.config import DiscoverConfig, Source
from tv100.tasks.rank.config import (
    DEFAULT_MODELS,
    DEFAULT_TEMPLATES,
    EmbedConfig,
    RankConfig,
    RelevanceConfig,
    SelectConfig,
    ZeroShotConfig,
    check_models,
)
from tv100.tasks.report.config import REPORT, ReportConfig
from tv100.tasks.review.decisions import REVIEW_TIMEOUT_S
from tv100.tasks.train.config import (
    DEFAULT_RECIPES,
    LEAKAGE,
    SplitConfig,
    TrainConfig,
    TrainStageConfig,
)
from tv100.tasks.train.metrics import Tiers
from tv100.tasks.web.config import HttpConfig

#: The tables of a settings file, in the order they run (and are printed).
SECTIONS = ("build", "discover", "collect", "clean", "rank", "train", "report")
#: The largest settings file read.
MAX_FILE_BYTES = 1 << 20

Settings = dict[str, dict[str, Any]]


class ConfigError(ValueError):
    """Settings that cannot be used: one line naming their origin, the key and what was
    expected."""


# -- each stage's frozen config, from its options (the stage flows build theirs here too) ----


def discover_config(
    source: Source, since: int, min_votes: int | None, max_pages: int, locale: str | None,
    page_size: int | None, allow_hosts: Iterable[str] | None, max_file_bytes: int,
) -> tuple[DiscoverConfig, HttpConfig]:
    """The discover stage's config and its HTTP settings."""
    config = DiscoverConfig(source=source, since=since, min_votes=min_votes,
                            max_pages=max_pages, locale=locale, page_size=page_size)
    http = HttpConfig(allow_hosts=tuple(allow_hosts or ()), max_file_bytes=max_file_bytes)
    return config, http


def clean_config(
    phash_threshold: int, dhash_threshold: int | None, drop_cross_series: bool, min_side: int,
    max_aspect: float, min_std: float, min_entropy: float, exclusions: str | None, workers: int,
) -> CleanConfig:
    """The clean stage's config."""
    return CleanConfig(
        phash_threshold=phash_threshold, dhash_threshold=dhash_threshold,
        drop_cross_series=drop_cross_series, min_side=min_side, max_aspect=max_aspect,
        min_std=min_std, min_entropy=min_entropy, exclusions=exclusions, workers=workers,
    )


def rank_config(
    models: Iterable[str] | None, k: int, min_images: int, aggregate: str,
    templates: Iterable[str] | None, batch_size: int, workers: int | None, device: str,
    shard_size: int, relevance: bool = True, min_unseen: int | None = None,
    seen_threshold: float | None = None,
) -> RankConfig:
    """The rank stage's config (`models` None: `DEFAULT_MODELS`; the flow passes the data
    root's recorded ones, `tv100.tasks.rank.recorded.default_models`)."""
    return RankConfig(
        models=tuple(models or DEFAULT_MODELS),
        embed=EmbedConfig(
            batch_size=batch_size, workers=workers, device=device, shard_size=shard_size
        ),
        relevance=RelevanceConfig(enabled=relevance),
        zeroshot=ZeroShotConfig(
            templates=tuple(templates) if templates else DEFAULT_TEMPLATES, device=device
        ),
        select=SelectConfig(k=k, min_images=min_images, aggregate=aggregate,
                            min_unseen=min_unseen, seen_threshold=seen_threshold),
    )


def train_config(
    model: str | None, recipes: Iterable[str] | None, test_ratio: float, val_ratio: float,
    split_seed: int, phash_threshold: int, clip_threshold: float | None, leakage_action: str,
    export: bool, epochs: int, batch_size: int, lr: float, weight_decay: float,
    warmup_steps: int, sampling: str, logit_adjust_tau: float, seed: int, workers: int,
    device: str | None,
) -> TrainStageConfig:
    """The train stage's config (`model` None: the first of `DEFAULT_MODELS`; the flow
    passes the data root's recorded one, `tv100.tasks.rank.recorded.ranked_models`)."""
    spec = model or DEFAULT_MODELS[0]
    check_models("TrainStageConfig", [spec])
    return TrainStageConfig(
        model=spec,
        recipes=tuple(recipes or DEFAULT_RECIPES),
        split=SplitConfig(test_ratio=test_ratio, val_ratio=val_ratio, seed=split_seed),
        leakage=NearDupConfig(
            phash_threshold=phash_threshold, leakage_action=leakage_action,
            clip_threshold=clip_threshold or LEAKAGE.clip_threshold,
        ),
        clip_leakage=clip_threshold is not None,
        export=export,
        train=TrainConfig(
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            warmup_steps=warmup_steps, sampling=sampling, logit_adjust_tau=logit_adjust_tau,
            seed=seed, workers=workers,
        ),
        device=device,
    )


def report_config(
    many: int = REPORT.tiers.many, few: int = REPORT.tiers.few, metric: str = REPORT.metric,
    split: str = REPORT.split,
) -> ReportConfig:
    """The report's config (its options are this function's parameters)."""
    return ReportConfig(tiers=Tiers(many=many, few=few), metric=metric, split=split)


def build_config(review_timeout_s: float = REVIEW_TIMEOUT_S) -> None:
    """Check the ``[build]`` table's values (it has no frozen config of its own).

    Raises:
        ValueError: a review timeout that is not a positive number of seconds.
    """
    if not review_timeout_s > 0:
        raise ValueError(
            f"review_timeout_s={review_timeout_s!r}; expected a positive number of seconds")


#: Per table, the function that builds (and so validates) the stage's frozen config.
STAGE_CONFIGS: dict[str, Callable[..., Any]] = {
    "build": build_config,
    "discover": discover_config,
    "collect": CollectConfig.from_options,
    "clean": clean_config,
    "rank": rank_config,
    "train": train_config,
    "report": report_config,
}


def stage_config(section: str, values: Mapping[str, Any]) -> Any:
    """The frozen config of table `section` from its `values` (keys it does not take are
    not config: ``location``, ``refresh``, ...).

    Raises:
        ValueError: the config refused a value (the message names it).
    """
    build = STAGE_CONFIGS.get(section)
    if build is None:
        return None
    params = inspect.signature(build).parameters
    return build(**{k: v for k, v in values.items() if k in params})


# -- the options of each table --------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One key of a table: its type (a type hint pydantic checks) and its default."""

    name: str
    hint: Any
    default: Any


def options_of(fn: Callable[..., Any], exclude: Iterable[str] = ("data", "wait")) -> dict[
    str, Option
]:
    """The options of a function's parameters (a stage flow's, or `report_config`'s); a
    required one defaults to None (unset: the build asks for it)."""
    fn = getattr(fn, "fn", fn)  # a Prefect flow: its function
    hints = typing.get_type_hints(fn)
    skip = set(exclude)
    return {
        name: Option(name, hints.get(name, Any),
                     None if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(fn).parameters.items()
        if name not in skip
    }


def _expected(err: Any) -> str:
    error = err.errors(include_url=False)[0]
    msg = str(error["msg"]).replace("Input should be", "expected")
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "")
    return f"{msg} (at {where})" if where else msg


def _checked(origin: str, section: str, option: Option, value: Any) -> Any:
    """`value` as the option's type (pydantic, as Prefect checks flow parameters)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(option.hint).validate_python(value)
    except ValidationError as err:
        raise ConfigError(
            f"{origin}: [{section}] {option.name} = {_show(value)}: {_expected(err)}"
        ) from None


def _show(value: Any) -> str:
    text = _toml_value(value) if _is_toml(value) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def defaults(options: Mapping[str, Mapping[str, Option]]) -> Settings:
    """Every table with every key at its default."""
    return {s: {k: o.default for k, o in opts.items()} for s, opts in options.items()}


def apply(
    settings: Settings, layer: Mapping[str, Any], origin: str,
    options: Mapping[str, Mapping[str, Option]],
) -> Settings:
    """`settings` with the tables of `layer` applied on top, each value checked.

    Args:
        settings: the settings so far (every table, every key).
        layer: ``{table: {key: value}}`` (a settings file, a deployment's ``config``).
        origin: where `layer` came from, for the error (a file name, ``config``).
        options: the keys each table takes.

    Raises:
        ConfigError: an unknown table or key, a value of the wrong type, or a value the
            stage's config refuses.
    """
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{origin}: expected tables of settings, got {_show(layer)}")
    out = {s: dict(v) for s, v in settings.items()}
    for section, values in layer.items():
        if section not in options:
            raise ConfigError(
                f"{origin}: unknown table [{section}]; expected one of "
                f"{', '.join(f'[{s}]' for s in options)}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table of settings, got "
                              f"{_show(values)}")
        for key, value in values.items():
            option = options[section].get(key)
            if option is None:
                known = ", ".join(options[section])
                raise ConfigError(
                    f"{origin}: unknown key {key!r} in [{section}]; expected one of: {known}"
                )
            out[section][key] = _checked(origin, section, option, value)
            _check_values(origin, section, out[section], key)
    return out


def _check_values(origin: str, section: str, values: Mapping[str, Any], key: str) -> None:
    try:
        stage_config(section, values)
    except ValueError as err:
        raise ConfigError(
            f"{origin}: [{section}] {key} = {_show(values[key])}: {' '.join(str(err).split())}"
        ) from None


def read_file(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML settings file.

    Raises:
        ConfigError: the file is missing, unreadable, too large or not valid TOML.
    """
    from tv100.tasks.localfiles import LocalFileError, read_local_file

    try:
        content = read_local_file(Path(path), MAX_FILE_BYTES)
    except LocalFileError as err:
        raise ConfigError(f"--config: {err} (a TOML settings file)") from None
    except OSError as err:
        raise ConfigError(
            f"--config {str(path)!r} is not a readable file: {err.strerror or err}"
        ) from None
    try:
        return tomllib.loads(content.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


# -- writing settings back as TOML ------------------------------------------------------------


def _is_toml(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list | tuple):
        return all(_is_toml(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_toml(v) for k, v in value.items())
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else json.dumps(name)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def to_toml(settings: Settings) -> str:
    """Settings as a TOML file that reads back to the same settings.

    A key whose value is None (TOML has no null: the stage's own default applies) is
    written as a comment.
    """
    lines: list[str] = []
    for section in [s for s in SECTIONS if s in settings] + [
        s for s in settings if s not in SECTIONS
    ]:
        lines.append(f"[{section}]")
        for key, value in settings[section].items():
            if value is None:
                lines.append(f"# {_key(key)} = (none: the default)")
            else:
                lines.append(f"{_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
