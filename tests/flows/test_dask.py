"""Scale-out: collect and clean on a real Dask cluster give the thread runner's tables.

The Dask run happens in a subprocess against a real `prefect server start` (its own
PREFECT_HOME), with PREFECT_API_URL pointing there: the cluster's worker processes report
their task runs to that server (left alone, each would start an ephemeral server of its
own on one SQLite file). The cluster is `--runner dask`'s: a `distributed.LocalCluster`
with a single-threaded worker process per core (2 here). The thread runner's tables are
those of the session's `collected` build (sandbox scale 0.15), cleaned on a copy.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.builds import TIMEOUT_S
from tests.support.prefect_server import run_or_dump, running_server, tail
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, write_table

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
TABLES = ("search_hits", "search_pages", "images", "hashes", "quality", "duplicates")

SCRIPT = textwrap.dedent(
    """
    import dataclasses
    import json
    import sys
    import time

    from tv100.flows.clean import clean_flow
    from tv100.flows.collect import collect_flow
    from tv100.flows.runners import run_flow

    if __name__ == "__main__":
        runner, params = sys.argv[1], json.loads(sys.argv[2])
        started = time.monotonic()
        collected = run_flow(collect_flow, runner, **params)
        middle = time.monotonic()
        cleaned = run_flow(clean_flow, runner, data=params["data"])
        print(json.dumps({
            "collect": dataclasses.asdict(collected), "clean": dataclasses.asdict(cleaned),
            "collect_s": middle - started, "clean_s": time.monotonic() - middle,
        }, default=str))
    """
)


def _collect_params(web, data: str) -> dict:
    """What the `collected` fixture passes to collect_flow."""
    return {
        "data": data,
        "engine_urls": web.engine_urls(),
        "per_series_cap": 400,
        "image_timeout_s": TIMEOUT_S,
        "image_retries": 1,
        "allow_hosts": [web.host_port],
    }


def _comparable(data: str, name: str) -> pa.Table:
    """A table without its timestamp columns (fetched_at, downloaded_at)."""
    t = read_table(DataRoot(data), name)
    return t.drop_columns([f.name for f in t.schema if pa.types.is_timestamp(f.type)])


def test_make_task_runner_validates_the_spec():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from tv100.flows.runners import local_cores, make_task_runner

    assert isinstance(make_task_runner("threads"), ThreadPoolTaskRunner)
    local = make_task_runner("dask")
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {
        "n_workers": local_cores(), "threads_per_worker": 1, "processes": True
    }
    remote = make_task_runner("tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    for bad in ("", "Dask", "process", "tcp://host", "tcp://host:0", "tcp://host:99999",
                "http://host:8786", "host:8786"):
        with pytest.raises(ValueError, match="expected 'threads', 'dask'") as err:
            make_task_runner(bad)
        assert repr(bad) in str(err.value)


@pytest.mark.parametrize("command", [["collect"], ["clean"]])
def test_cli_rejects_an_unknown_runner(command, tmp_path):
    from typer.testing import CliRunner

    from tv100.flows.cli import app

    res = CliRunner().invoke(app, [*command, "--data", str(tmp_path / "d"), "--runner", "spark"])
    assert res.exit_code == 2, res.output
    assert "--runner" in res.output and "'spark'" in res.output and "tcp://HOST:PORT" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "d").exists()  # refused before anything is written


def test_search_per_engine_merges_into_one_search(sandbox_web, collected):
    """The collect flow searches one engine per task; put together, that is one search."""
    from tv100.tasks.collect.config import SearchConfig
    from tv100.tasks.collect.engines import ENGINE_NAMES
    from tv100.tasks.collect.search import merge_search_tables, search_series_tables
    from tv100.tasks.web.config import HttpConfig

    web = sandbox_web
    data, _ = collected
    series = read_table(DataRoot(data), "series").to_pylist()[:12]
    config = SearchConfig.from_engine_urls(web.engine_urls(), per_series_cap=400)
    http = HttpConfig(allow_hosts=(web.host_port,))
    engines = list(ENGINE_NAMES)
    whole = search_series_tables(series, engines, config, http)
    parts = merge_search_tables(
        [search_series_tables(series, [e], config, http) for e in reversed(engines)]
    )
    assert whole.hits.num_rows > 0 and whole.pages.num_rows > 0
    for a, b in ((whole.hits, parts.hits), (whole.pages, parts.pages)):
        keep = [f.name for f in a.schema if not pa.types.is_timestamp(f.type)]
        assert a.select(keep).equals(b.select(keep))


def test_dask_runner_gives_the_thread_runners_tables(collected, sandbox_web, tmp_path):
    from tv100.flows.clean import clean_flow

    web = sandbox_web
    built, _ = collected
    # The thread runner: the session's collect, cleaned on a copy.
    threads = str(tmp_path / "threads")
    shutil.copytree(built, threads)
    started = time.monotonic()
    clean_flow(data=threads)
    threads_clean_s = time.monotonic() - started
    # Dask: the same series in a fresh data root.
    dask = DataRoot(str(tmp_path / "dask")).ensure()
    series = read_table(DataRoot(built), "series")
    write_table(dask, "series", series, schema=series.schema)
    script = tmp_path / "run_on_dask.py"
    script.write_text(SCRIPT)
    home = tmp_path / "prefect"
    home.mkdir()
    log = tmp_path / "dask-run.log"
    started = time.monotonic()
    with running_server(home) as server:
        server_s = time.monotonic() - started
        env = {**server.env, "PREFECT_LOGGING_LEVEL": "WARNING"}
        proc = run_or_dump(
            [sys.executable, str(script), "dask", json.dumps(_collect_params(web, dask.url))],
            cwd=REPO, env=env, log=log, timeout=420,
        )
        assert proc.returncode == 0, f"dask run exited {proc.returncode}:\n{tail(log)}"
        # The worker processes reported their task runs to the server: every mapped part.
        runs = server.post("/task_runs/filter", {"limit": 200})
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    names: dict[str, int] = {}
    for r in runs:
        assert r["state"]["type"] == "COMPLETED", (r["name"], r["state"])
        name = r["name"].rsplit("-", 1)[0]
        names[name] = names.get(name, 0) + 1
    assert names["search-images"] == 3, names
    assert names["download-shards"] == 2, names  # one group per worker process
    assert names["hash-images"] == names["assess-quality"] >= 2, names  # chunks of images
    assert result["collect"]["images"]["downloaded_now"] > 0
    for name in TABLES:
        a, b = _comparable(threads, name), _comparable(dask.url, name)
        assert a.num_rows > 0, name
        assert a.equals(b), (name, a.num_rows, b.num_rows)
    print(
        f"prefect server {server_s:.0f}s; dask collect {result['collect_s']:.0f}s, "
        f"dask clean {result['clean_s']:.0f}s (threads clean {threads_clean_s:.0f}s); "
        f"task runs {names}"
    )
