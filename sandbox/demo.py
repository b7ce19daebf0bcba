"""The sandbox demo: serve the offline stand-in web, build against it, summarise."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tv100.flows.build import BuildResult, build_flow
from tv100.sandbox.pretrain import PretrainConfig, PretrainResult, pretrain
from tv100.sandbox.web import SandboxWeb
from tv100.storage.lock import hold_root
from tv100.storage.root import DataRoot, default_data, resolve_root
from tv100.storage.tables import write_table
from tv100.tasks.discover.config import DISCOVER

#: The demo's data root is this folder inside the default one (``./data/demo``, or
#: ``$TV100_DATA/demo``): sandbox tables, models and snapshots never mix into a real build's.
DEMO_FOLDER = "demo"
#: A fixed port keeps every URL in the tables (and so every cache key) stable between
#: demo runs; `tv100 sandbox serve` picks a free port instead.
DEMO_PORT = 47100
#: The planted slow image stalls longer than the demo's image timeout, so it times out.
DEMO_IMAGE_TIMEOUT_S = 4.0
DEMO_SLOW_S = 10.0
#: The sandbox's largest series has ~300 images: a cap above it lets search find them all.
DEMO_PER_SERIES_CAP = 400
#: The smallest sandbox series keeps ~20 cleaned images; 10 keeps every one eligible.
DEMO_MIN_IMAGES = 10
#: Fine-tuning knobs for the sandbox CLIP (a 9M-parameter ViT trained from scratch wants a
#: far larger step than a real CLIP's 1e-5); class-balanced sampling for the long tail.
DEMO_TRAIN: Mapping[str, Any] = {
    "epochs": 6,
    "lr": 5e-4,
    "batch_size": 32,
    "warmup_steps": 20,
    "sampling": "balanced",
}

#: The sandbox CLIP's default training (`PretrainConfig`); `demo_flow` can shorten it.
_PRETRAIN = PretrainConfig()


def demo_data() -> str:
    """The demo's data root when none is given: ``$TV100_DATA/demo``, else ``./data/demo``."""
    return posixpath.join(default_data().rstrip("/"), DEMO_FOLDER)


def pretrain_config(seed: int, n_series: int, steps: int, renders: int) -> PretrainConfig:
    """The sandbox CLIP's training with `steps` steps on `renders` images per known series;
    the warm-up keeps its share of the steps (the defaults give the default config)."""
    warmup = round(_PRETRAIN.warmup_steps * steps / _PRETRAIN.steps)
    return PretrainConfig(world_seed=seed, n_series=n_series, steps=steps,
                          warmup_steps=min(warmup, steps), renders_per_series=renders)


@dataclass(frozen=True)
class DemoResult:
    """What the demo did.

    Attributes:
        build: the build's result.
        manifest: ``{table: sha256}`` of the sandbox's ground truth (`sandbox_*` tables).
        base_url: where the sandbox web was served (stopped since).
        model: the sandbox CLIP (None with ``rank=False``).
    """

    build: BuildResult
    manifest: Mapping[str, str]
    base_url: str
    model: PretrainResult | None


@task(name="pretrain-sandbox-clip", cache_policy=NO_CACHE)
def pretrain_task(root: DataRoot, config: PretrainConfig) -> PretrainResult:
    """The sandbox CLIP, trained on the known half of the series (cached in the data root)."""
    if not root.is_local:
        raise ValueError(f"the sandbox CLIP is saved to a local folder; {root.url!r} is not local")
    return pretrain(root.path(), config)


@flow(name="sandbox-demo")
def demo_flow(
    data: str | None = None,
    seed: int = 0,
    n_series: int = 48,
    scale: float = 1.0,
    port: int = DEMO_PORT,
    since: int = DISCOVER.since,
    rank: bool = True,
    train: bool = True,
    runner: str = "threads",
    min_images: int = DEMO_MIN_IMAGES,
    recipes: list[str] | None = None,
    epochs: int = DEMO_TRAIN["epochs"],
    pretrain_steps: int = _PRETRAIN.steps,
    pretrain_renders: int = _PRETRAIN.renders_per_series,
) -> DemoResult:
    """Start the sandbox web, write its ground truth, run the build against it, stop it.

    Args:
        data: data root for the demo build (default ``$TV100_DATA/demo``, else
            ``./data/demo``: apart from real builds).
        seed: sandbox seed (same seed, same web, same tables).
        n_series: number of candidate series the sandbox invents.
        scale: multiplies the sandbox's images per series.
        port: loopback port for the sandbox (fixed so reruns are cache hits).
        since: keep series that started after this year.
        rank: pre-train the sandbox CLIP and run the rank stage (False: stop after clean).
        train: run the train stage (zero-shot vs linear probe vs fine-tune).
        runner: task runner of collect and clean (`tv100.flows.runners`).
        min_images: fewest cleaned images a kept series needs (lower it with `scale`).
        recipes: the train stage's recipes (default the build's).
        epochs: fine-tuning epochs.
        pretrain_steps: training steps of the sandbox CLIP (fewer: faster, a weaker CLIP).
        pretrain_renders: training images per known series of the sandbox CLIP.
    """
    logger = get_run_logger()
    root = resolve_root(data or demo_data()).ensure()
    clip_config = pretrain_config(seed, n_series, pretrain_steps, pretrain_renders)
    # One run per data root: the pre-training writes models/, the build nests its hold.
    with hold_root(root, what="demo"):
        model: PretrainResult | None = pretrain_task(root, clip_config) if rank else None
        logger.info("sandbox CLIP: %s", model.spec if model else None)
        with SandboxWeb(
            seed=seed, n_series=n_series, scale=scale, port=port, slow_s=DEMO_SLOW_S
        ) as web:
            base_url = web.base_url
            logger.info("sandbox web at %s", base_url)
            manifest = {
                name: write_table(root, name, table, schema=table.schema)
                for name, table in web.manifest_tables().items()
            }
            result = build_flow(
                location=f"{base_url}/datasets/",
                source="imdb-datasets",
                since=since,
                data=root.url,
                engine_urls=web.engine_urls(),
                per_series_cap=DEMO_PER_SERIES_CAP,
                image_timeout_s=DEMO_IMAGE_TIMEOUT_S,
                image_retries=1,
                allow_hosts=[web.host_port],
                rank=rank,
                models=[model.spec] if model else None,
                k=sum(1 for t in web.world.titles if t.expected and not t.known),
                min_images=min_images,
                train=train,
                recipes=recipes,
                runner=runner,
                **{**DEMO_TRAIN, "epochs": epochs},
            )
    logger.info("demo result: %s", result)
    return DemoResult(build=result, manifest=manifest, base_url=base_url, model=model)
