"""tv100's own log lines in the Prefect API, and Prefect's INFO lines off the console.

A flow runs in a process of its own against a real `prefect server start`, as a flow run
started by a worker does: Prefect's logging is set up before tv100 is imported, from an
environment without ``PREFECT_LOGGING_EXTRA_LOGGERS``, in a folder with no project
settings. A search task meets a closed port (the ``tv100.search`` warnings) and a tiny
CLIP is fine-tuned for one epoch in the flow itself (``epoch 1/1: loss ...`` on
``tv100.tasks.train.finetune``); ``prefect flow-run logs`` must show both, and the stages'
summary lines.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.prefect_server import free_port, running_server
from tests.support.rank_fixtures import TINY_CFG

#: The module (the package's ``app`` attribute is the typer app of the same name).
cli = importlib.import_module("tv100.flows.cli.app")
pytestmark = pytest.mark.timeout(900)

#: The flow, run by `sys.executable` with its spec as JSON; prints the flow run's id.
FLOW_SCRIPT = textwrap.dedent(
    """
    import json, sys

    from prefect import flow
    from prefect.context import get_run_context

    spec = json.loads(sys.argv[1])


    @flow(name="logs-in-api")
    def logs_in_api() -> str:
        import numpy as np

        from tv100.storage.root import DataRoot
        from tv100.tasks.collect.config import SearchConfig
        from tv100.tasks.collect.search import search_task
        from tv100.tasks.rank.clip import load_clip
        from tv100.tasks.train.config import TrainConfig
        from tv100.tasks.train.finetune import finetune
        from tv100.tasks.web.config import HttpConfig

        search_task([{"series_id": "tt0000001", "title": "Nowhere Show"}], ["bing"],
                    SearchConfig(bing_url=spec["closed"], max_pages=1),
                    HttpConfig(allow_hosts=(spec["closed_host"],), retries=0, timeout_s=10))
        clip = load_clip(spec["model"], "cpu")
        n = len(spec["paths"])
        weights = np.eye(2, spec["dim"], dtype="float32")
        config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, warmup_steps=1, threads=1,
                             workers=0)
        finetune(clip, DataRoot(spec["data"]), spec["paths"], np.arange(n) % 2, weights,
                 np.zeros(2, "float32"), config, "logs-in-api")
        return str(get_run_context().flow_run.id)


    print(logs_in_api())
    """
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ``local-dir:`` spec of a tiny untrained open_clip (`TINY_CFG`)."""
    import open_clip

    from tv100.tasks.rank.clip import save_local_dir

    folder = tmp_path_factory.mktemp("logs-model") / "tiny"
    save_local_dir(folder, open_clip.CLIP(**TINY_CFG), TINY_CFG)
    return f"local-dir:{folder}"


def _images(data: Path, n: int) -> list[str]:
    import numpy as np
    from PIL import Image

    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(n):
        rel = f"images/img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(data / rel)
        paths.append(rel)
    return paths


def test_task_warnings_and_epoch_lines_reach_the_api(tiny_model: str, tmp_path: Path):
    closed = free_port()  # nothing listens there: the search fails at once
    data = tmp_path / "data"
    spec = {
        "closed": f"http://127.0.0.1:{closed}",
        "closed_host": f"127.0.0.1:{closed}",
        "model": tiny_model,
        "dim": TINY_CFG["embed_dim"],
        "data": str(data),
        "paths": _images(data, 8),
    }
    work = tmp_path / "work"  # no pyproject.toml: nothing but tv100 itself routes its logs
    work.mkdir()
    (tmp_path / "prefect-home").mkdir()
    with running_server(tmp_path / "prefect-home") as server:
        assert not any(k.startswith("PREFECT_LOGGING_EXTRA") for k in server.env)
        run = subprocess.run(
            [sys.executable, "-c", FLOW_SCRIPT, json.dumps(spec)], cwd=work, env=server.env,
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        flow_run_id = run.stdout.strip().splitlines()[-1]
        wanted = [
            "search: 1 of 1 requests failed",  # tv100.search, in the search task
            "epoch 1/1: loss ",  # tv100.tasks.train.finetune, in the flow
            "fine-tune: 2/2 steps in ",  # the stage's summary line
        ]
        deadline = time.monotonic() + 120  # logs are sent in batches, after the run too
        while True:
            logs = server.run(["flow-run", "logs", flow_run_id], cwd=work, timeout=120,
                              name="flow-run-logs")
            missing = [w for w in wanted if w not in logs]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not missing, (missing, logs[-4000:])
        # The console of that process shows them as well (warnings; INFO with no CLI filter).
        assert "search: 1 of 1 requests failed" in run.stderr


# --- the console filter of the command line ---------------------------------------------------


def _record(name: str, level: int, message: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


@pytest.fixture
def cli_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.delenv(cli.VERBOSE_ENV, raising=False)
    state = {"debug": False, "verbose": False, "root": None}
    monkeypatch.setattr(cli, "_state", state)
    return state


PREFECT_INFO = [
    ("prefect.flow_runs", "Beginning flow run 'red-fox' for flow 'build'"),
    ("prefect.flow_runs", "Finished in state Completed()"),
    ("prefect.task_runs", "Finished in state Completed()"),
    ("prefect", "Starting temporary server on http://127.0.0.1:8000\nSee https://www.prefect.io"
                "/docs/v3/concepts/server#how-to-guides for more information"),
    ("tv100.tasks.train.finetune", "epoch 1/3: loss 1.2345 lr 0.001"),
]


@pytest.mark.parametrize(("name", "message"), PREFECT_INFO, ids=lambda v: v[:20])
def test_info_lines_reach_the_console_only_with_verbose(name: str, message: str, cli_state,
                                                        monkeypatch):
    from tv100.tasks.progress import CONSOLE_ATTR

    record = _record(name, logging.INFO, message)
    assert not cli.QuietConsole.console(record)
    cli_state["verbose"] = True
    assert cli.QuietConsole.console(record)
    cli_state["verbose"] = False
    monkeypatch.setenv(cli.VERBOSE_ENV, "1")
    assert cli.QuietConsole.console(record)
    monkeypatch.delenv(cli.VERBOSE_ENV)
    # tv100's summary lines, warnings and errors of other loggers: always.
    summary = _record("tv100.progress", logging.INFO, "hash: 3/3 images", **{CONSOLE_ATTR: True})
    assert cli.QuietConsole.console(summary)
    assert cli.QuietConsole.console(_record("tv100.search", logging.WARNING, "blocked"))
    assert cli.QuietConsole.console(_record("prefect.client", logging.WARNING, "slow API"))


def test_verbose_is_a_root_option_and_quiet_console_sets_the_prefect_defaults(cli_state,
                                                                              monkeypatch):
    from typer.testing import CliRunner

    from tv100.flows.cli import app as typer_app  # the typer app

    for key in cli.PREFECT_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    cli.quiet_console()
    assert {k: os.environ[k] for k in cli.PREFECT_DEFAULTS} == cli.PREFECT_DEFAULTS
    assert all(cli._QUIET in logging.getLogger(n).filters for n in cli.QUIET_LOGGERS)
    res = CliRunner().invoke(typer_app, ["--verbose", "sql", "--help"])
    assert res.exit_code == 0, res.output
    assert cli_state["verbose"] is True
    res = CliRunner().invoke(typer_app, ["--help"])
    assert "--verbose" in res.output
