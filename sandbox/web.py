"""The whole sandbox web on one server: IMDb, the image-search engines and the image host.

`SandboxWeb` is what the demo, `tv100 sandbox serve` and the tests start; its ground truth
(`manifest_tables`) is written into the data root as the `sandbox_*` views.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tv100.sandbox.engines import EngineSite, engine_urls, register_engines
from tv100.sandbox.imagehost import ImageCatalog, build_catalog
from tv100.sandbox.server import SandboxServer
from tv100.sandbox.world import World, build_world
from tv100.tasks.parallel import local_cores


@dataclass
class SandboxWeb:
    """A started sandbox: `base_url`, `world`, `catalog`, `engines`, `server`.

    Args:
        seed: the world's seed (same seed, same web byte for byte).
        n_series: candidate series invented.
        scale: multiplies images per series.
        port: loopback port (0 picks a free one).
        host: address to bind.
        slow_s: how long the planted slow image stalls (make it exceed the client timeout).
        noise: plant irrelevant images (label noise) beside every series' own.
    """

    seed: int = 0
    n_series: int = 48
    scale: float = 1.0
    port: int = 0
    host: str = "127.0.0.1"
    slow_s: float = 30.0
    noise: bool = True
    world: World = field(init=False)
    catalog: ImageCatalog = field(init=False)
    server: SandboxServer = field(init=False)
    engines: EngineSite = field(init=False)
    world_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.world = build_world(seed=self.seed, n_series=self.n_series)
        self.catalog = build_catalog(self.world, self.scale, slow_s=self.slow_s,
                                     noise=self.noise)
        self.server = SandboxServer(self.world, host=self.host, port=self.port)
        self.catalog.register(self.server)
        self.engines = register_engines(self.server, self.world, self.catalog)
        self.world_prefix = self.engines.mount_world(self.server, self.catalog.listing_key())

    def start(self) -> SandboxWeb:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SandboxWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT``: what the HTTP layer's allow-list needs."""
        return self.base_url.split("://", 1)[1]

    def engine_urls(self) -> dict[str, str]:
        """Base URLs of the sandbox's engines, as the search stage takes them: under its
        world prefix, so a cached search names the world it was made against."""
        return engine_urls(self.base_url, world=self.world_prefix)

    def manifest_tables(self) -> dict[str, pa.Table]:
        """Ground truth: `sandbox_series` and `sandbox_images` (absolute URLs); every image
        is rendered for it, on every core (`ImageCatalog.prerender`)."""
        tables = self.world.manifest_tables()
        images = self.catalog.manifest_table(workers=local_cores())
        for col in ("url", "original_url"):
            i = images.schema.get_field_index(col)
            absolute = pc.binary_join_element_wise(
                pa.scalar(self.base_url), images.column(col), ""
            )
            images = images.set_column(i, images.schema.field(i), absolute)
        tables["sandbox_images"] = images
        return tables


def serve_forever(
    seed: int = 0,
    port: int = 0,
    host: str = "127.0.0.1",
    n_series: int = 48,
    scale: float = 1.0,
) -> None:
    """Serve the whole sandbox web until Ctrl-C, printing its URLs first."""
    web = SandboxWeb(seed=seed, n_series=n_series, scale=scale, port=port, host=host).start()
    print(f"sandbox web: {web.base_url}", flush=True)
    for name, url in web.engine_urls().items():
        print(f"  {name:<11} {url}", flush=True)
    print(f"  imdb        {web.base_url}  (datasets: {web.base_url}/datasets/)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        web.stop()
