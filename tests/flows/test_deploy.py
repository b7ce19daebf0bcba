"""`tv100 server` and the deployments in `prefect.yaml`, end to end on a real Prefect server,
and the runs seen in the Prefect UI through a real (headless) Chromium.

One server serves every test here, started as a user starts it: ``tv100 server start`` on a
free loopback port, with HOME, PREFECT_HOME and the server's state in a temp dir (the
user's own profiles are never touched; `tests.support.prefect_server.tv100_server`). It
runs the server, creates the `process` work pool, runs ``prefect deploy --all`` from the
repository root, starts a worker and makes the ``tv100`` profile active; the clients below
find the server through that profile, with no PREFECT_API_URL of their own.

The `demo_run` fixture then does what an operator does: ``prefect deployment run
'sandbox-demo/sandbox-demo'`` with a small demo that still ranks and trains (scale 0.1, a
shortened sandbox-CLIP pre-training, the fine-tune recipe for one epoch, its own data root
and sandbox port), and gives the same deployment a one-minute schedule with cheaper
parameters, so the scheduler starts a run of its own. Both run through the worker ``tv100
server start`` started (each flow run in a temp dir: only the deployments' pull step takes
it to the checkout). The last test stops the server and checks that the profile active
before is active again.

The UI test drives Chromium over the DevTools protocol (the `websockets` package Prefect
already installs; no browser download, no extra dependency) and saves screenshots under its
temp dir; it skips when no Chromium is found (set ``TV100_CHROMIUM`` to a binary to choose
one).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import Browser, find_chromium
from tests.support.prefect_server import (
    Server,
    free_port,
    read_server_state,
    tv100,
    tv100_server,
)
from tests.support.prefect_server import tail as _tail

pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
POOL = "tv100-process"
DEMO_DEPLOYMENT = "sandbox-demo/sandbox-demo"
#: The profile active before `tv100 server start` (``stop`` must make it active again).
USER_PROFILE = "mine"
#: A small demo that still runs every stage: a weak sandbox CLIP (20 steps on 8 renders
#: per series), series kept from 3 cleaned images up, one epoch of fine-tuning.
DEMO_PARAMS: dict[str, Any] = {
    "scale": 0.1, "rank": True, "train": True, "min_images": 3, "recipes": ["finetune"],
    "epochs": 1, "pretrain_steps": 20, "pretrain_renders": 8,
}
#: The scheduled run: the cheapest demo (discover, collect and clean of 8 series).
SCHEDULED_PARAMS: dict[str, Any] = {"n_series": 8, "scale": 0.05, "rank": False}
#: What the fine-tune recipe logs after each epoch (`tv100.tasks.train.finetune`).
EPOCH_LINE = re.compile(r"epoch 1/1: loss \d")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: Hang guards, not timings: a busy 2-core machine runs the demo in minutes.
RUN_TIMEOUT_S = 1500
SCHEDULE_TIMEOUT_S = 600
#: The stage flows the demo runs as subflows, and the task each must show as completed.
STAGE_TASKS = {
    "discover": {"fetch-imdb-datasets", "series-from-datasets", "write-tables"},
    "collect": {"search-images", "download-images", "write-tables"},
    "clean": {"hash-images", "assess-quality", "find-duplicates", "write-tables"},
}
STAGE_ARTIFACTS = {
    "discover": {"discover-fetches-by-status"},
    "collect": {
        "collect-images-by-status",
        "collect-search-pages-by-status",
        "collect-download-progress",
    },
    "clean": {"clean-removals-by-reason"},
}


@dataclass(frozen=True)
class Stack:
    """`tv100 server start`'s server, its environment and what start printed."""

    server: Server
    env: dict[str, str]
    state_dir: Path
    start_output: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """``tv100 server start`` with a user profile active before it; stopped at the end."""
    home = tmp_path_factory.mktemp("tv100-server")
    (home / "prefect-home").mkdir()
    (home / "prefect-home" / "profiles.toml").write_text(
        f'active = "{USER_PROFILE}"\n\n[profiles.{USER_PROFILE}]\nPREFECT_LOGGING_LEVEL = "INFO"\n'
    )
    # Deployment runs take their data root's Prefect global concurrency limit (the test
    # suite's default is the file lock alone, tests/conftest.py).
    with tv100_server(home, REPO, TV100_ROOT_LIMIT="auto") as (server, started):
        yield Stack(server=server, env=server.env,
                    state_dir=Path(server.env["TV100_SERVER_HOME"]),
                    start_output=started.stdout)


def _profiles(stack: Stack) -> str:
    return (Path(stack.env["PREFECT_HOME"]) / "profiles.toml").read_text()


def _run_id(output: str) -> str:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output) or re.search(
        r"/runs/flow-run/([0-9a-f-]{36})", output
    )
    assert match, f"no flow run id in:\n{output}"
    return match.group(1)


def _param(value: Any) -> str:
    """A ``--param key=value`` value: JSON, except a string (a path) as it is."""
    return value if isinstance(value, str) else json.dumps(value)


def _wait_for_run(stack: Stack, run_id: str, timeout: float) -> dict[str, Any]:
    """The flow run once it reached a final state (it runs through the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        run = stack.server.get(f"/flow_runs/{run_id}")
        if run["state"] and run["state"]["type"] in TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(
                f"flow run {run_id} still {run['state']} after {timeout:.0f}s; worker log:\n"
                f"{_tail(stack.state_dir / 'worker.log')}"
            )
        time.sleep(2)


def _started_runs(stack: Stack, deployment_id: str) -> list[dict[str, Any]]:
    """The deployment's flow runs that left the Scheduled state, earliest first."""
    return stack.server.post("/flow_runs/filter", {
        "flow_runs": {"deployment_id": {"any_": [deployment_id]},
                      "state": {"type": {"not_any_": ["SCHEDULED"]}}},
        "sort": "EXPECTED_START_TIME_ASC", "limit": 50,
    })


def _start_scheduled_run(stack: Stack, data: Path) -> dict[str, Any]:
    """Give sandbox-demo a one-minute schedule; once the worker has picked up the first run
    the scheduler made of it, remove the schedule (the server then deletes the runs it made
    for the rest of the hour, still Scheduled)."""
    server = stack.server
    deployment = server.get("/deployments/name/sandbox-demo/sandbox-demo")
    params = {**SCHEDULED_PARAMS, "data": str(data), "port": free_port()}
    created = server.post(f"/deployments/{deployment['id']}/schedules", [
        {"schedule": {"interval": 60}, "active": True, "parameters": params},
    ])
    schedule_id = created[0]["id"]
    deadline = time.monotonic() + SCHEDULE_TIMEOUT_S
    try:
        while True:
            started = [r for r in _started_runs(stack, deployment["id"]) if r["auto_scheduled"]]
            if started:
                return started[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no scheduled run started in {SCHEDULE_TIMEOUT_S}s")
            time.sleep(2)
    finally:
        server.delete(f"/deployments/{deployment['id']}/schedules/{schedule_id}")


@pytest.fixture(scope="module")
def demo_run(stack, tmp_path_factory):
    """The demo run by hand and a run the scheduler started, both through the worker."""
    work = tmp_path_factory.mktemp("deployment-runs")
    data = work / "demo-data"
    params = {**DEMO_PARAMS, "data": str(data), "port": free_port()}
    started = time.monotonic()
    args = itertools.chain.from_iterable(("--param", f"{k}={_param(v)}") for k, v in params.items())
    out = stack.server.run(
        ["deployment", "run", DEMO_DEPLOYMENT, *args],
        cwd=work, timeout=300, name="deployment-run",
    )
    demo_id = _run_id(out)
    # While the demo runs, the scheduler starts the cheap one beside it.
    scheduled = _start_scheduled_run(stack, work / "scheduled-data")
    demo = _wait_for_run(stack, demo_id, RUN_TIMEOUT_S)
    return {
        "flow_run_id": demo_id,
        "run": demo,
        "data": data,
        "scheduled_id": scheduled["id"],
        "scheduled_data": work / "scheduled-data",
        "seconds": time.monotonic() - started,
    }


def _flow_runs(server: Server, body: dict[str, Any]) -> list[dict[str, Any]]:
    return server.post("/flow_runs/filter", {"limit": 200, **body})


def _children(server: Server, flow_run_id: str) -> list[dict[str, Any]]:
    """The subflow runs started by a flow run (through its task runs)."""
    task_runs = server.post(
        "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200}
    )
    if not task_runs:
        return []
    return _flow_runs(
        server, {"flow_runs": {"parent_task_run_id": {"any_": [t["id"] for t in task_runs]}}}
    )


def _descendants(server: Server, flow_run_id: str) -> dict[str, dict[str, Any]]:
    """Every subflow run below a run, keyed by flow name (demo → build → the stages)."""
    names = {f["id"]: f["name"] for f in server.post("/flows/filter", {"limit": 200})}
    found: dict[str, dict[str, Any]] = {}
    todo = [flow_run_id]
    while todo:
        for child in _children(server, todo.pop()):
            found[names[child["flow_id"]]] = child
            todo.append(child["id"])
    return found


def _logs(server: Server, flow_run_id: str) -> list[str]:
    """The messages the API holds for a flow run (its task runs' included)."""
    logs = server.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                        "limit": 200, "sort": "TIMESTAMP_ASC"})
    return [entry["message"] for entry in logs]


# --- tests ------------------------------------------------------------------------------------


def test_server_start_again_is_a_no_op_and_status_says_up(stack):
    state = read_server_state(stack.env)
    assert "the Prefect UI is at " + stack.server.url in stack.start_output
    assert "tv100 server stop" in stack.start_output
    again = tv100(["server", "start", "--port", str(free_port())], env=stack.env, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert f"already running: the Prefect UI is at {stack.server.url}" in again.stdout
    assert read_server_state(stack.env) == state  # nothing started, nothing rewritten
    status = tv100(["server", "status"], env=stack.env, cwd=REPO)
    assert status.returncode == 0, status.stderr
    assert f"up at {stack.server.url}" in status.stdout
    assert f"pid {state['server_pid']}" in status.stdout
    assert f"pid {state['worker_pid']}" in status.stdout
    # The `tv100` profile points at the server and is active; the user's is remembered.
    profiles = _profiles(stack)
    assert 'active = "tv100"' in profiles and stack.server.api in profiles
    assert state["previous_profile"] == USER_PROFILE
    workers = stack.server.post(f"/work_pools/{POOL}/workers/filter", {})
    assert {(w["name"], w["status"]) for w in workers} >= {(state["worker_name"], "ONLINE")}


def test_prefect_yaml_deployments_are_registered(stack):
    server = stack.server
    deployments = {d["name"]: d for d in server.post("/deployments/filter", {"limit": 50})}
    assert {"build", "refresh", "sandbox-demo"} <= set(deployments), _tail(
        stack.state_dir / "deploy.log")
    for d in deployments.values():
        assert d["work_pool_name"] == POOL
        # The worker runs the code of this checkout.
        assert d["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
    build, refresh, demo = (deployments[n] for n in ("build", "refresh", "sandbox-demo"))
    assert build["entrypoint"] == refresh["entrypoint"] == "flows/build.py:build_flow"
    assert demo["entrypoint"] == "sandbox/demo.py:demo_flow"
    # `build` takes the flow's default (no refresh); `refresh` sets it.
    assert "refresh" not in build["parameters"] and refresh["parameters"]["refresh"] is True
    assert [s["schedule"]["cron"] for s in build["schedules"]] == ["0 3 * * 1"]
    assert all(s["active"] for s in build["schedules"])
    assert not any(s["active"] for s in refresh["schedules"])  # on demand until enabled
    assert demo["schedules"] == []
    # Every documented parameter is one the flow accepts (the server validates them).
    for d in deployments.values():
        accepted = set(d["parameter_openapi_schema"]["properties"])
        assert set(d["parameters"]) <= accepted, (d["name"], set(d["parameters"]) - accepted)


def test_the_cli_reports_to_the_running_server(stack, tmp_path):
    """A `tv100` command finds the project's server (state file + health check) even with
    another profile chosen for it, and its flow run shows on the server."""
    datasets = tmp_path / "datasets"
    made = tv100(["sandbox", "datasets", str(datasets), "--n-series", "8"], env=stack.env,
                 cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    data = tmp_path / "data"
    env = {**stack.env, "PREFECT_PROFILE": "ephemeral"}
    ran = tv100(["discover", "--location", str(datasets), "--data", str(data)], env=env,
                cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "temporary server" not in ran.stderr
    discovered = [
        r for r in _flow_runs(stack.server, {"flows": {"name": {"any_": ["discover"]}},
                                             "sort": "START_TIME_DESC"})
        if r["parameters"].get("data") == str(data) and r["parameters"].get("location")
    ]
    assert [r["state"]["type"] for r in discovered] == ["COMPLETED"], discovered


def test_sandbox_demo_deployment_runs_to_completion(stack, demo_run):
    server = stack.server
    runs = demo_run
    run = runs["run"]
    assert run["state"]["type"] == "COMPLETED", (
        run["state"], _tail(stack.state_dir / "worker.log"))
    assert run["parameters"]["scale"] == 0.1 and run["parameters"]["recipes"] == ["finetune"]
    tables = Path(runs["data"]) / "tables"
    for name in ("series", "images", "search_hits", "quality", "duplicates", "sandbox_series",
                 "classes", "metrics"):
        assert (tables / f"{name}.parquet").is_file(), sorted(p.name for p in tables.iterdir())

    # The run held its data root through the server: the root's limit, one slot, now free.
    from tv100.storage.root import DataRoot
    from tv100.tasks.rootlimit import limit_name

    limit = server.get(f"/v2/concurrency_limits/{limit_name(DataRoot(str(runs['data'])))}")
    assert (limit["limit"], limit["active_slots"]) == (1, 0), limit

    flows = _descendants(server, runs["flow_run_id"])
    assert {"build", "rank", "train", *STAGE_TASKS} <= set(flows), sorted(flows)
    for flow_name, sub in flows.items():
        assert sub["state"]["type"] == "COMPLETED", (flow_name, sub["state"])
    for stage, expected in STAGE_TASKS.items():
        task_runs = server.post(
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": [flows[stage]["id"]]}}, "limit": 200},
        )
        names = {t["name"].rsplit("-", 1)[0] for t in task_runs}  # "write-tables-722"
        assert expected <= names, (stage, names)
        assert all(t["state"]["type"] == "COMPLETED" for t in task_runs), stage
        artifacts = server.post(
            "/artifacts/filter",
            {"flow_runs": {"id": {"any_": [flows[stage]["id"]]}}, "limit": 200},
        )
        assert STAGE_ARTIFACTS[stage] <= {a["key"] for a in artifacts}, (stage, artifacts)
    # The fine-tune recipe's epoch line (a `tv100.*` logger in a task) reached the API.
    train_logs = _logs(server, flows["train"]["id"])
    assert any(EPOCH_LINE.search(m) for m in train_logs), train_logs[-40:]
    print(f"deployment round trip (run, schedule, worker): {runs['seconds']:.0f}s")


def test_the_scheduler_fires_a_deployment_on_its_own(stack, demo_run):
    runs = demo_run
    run = _wait_for_run(stack, runs["scheduled_id"], RUN_TIMEOUT_S)
    assert run["auto_scheduled"] is True  # created by the scheduler, not by a client
    assert run["state"]["type"] == "COMPLETED", (
        run["state"], _tail(stack.state_dir / "worker.log"))
    assert run["parameters"]["data"] == str(runs["scheduled_data"])
    tables = Path(runs["scheduled_data"]) / "tables"
    assert (tables / "images.parquet").is_file() and (tables / "quality.parquet").is_file()
    # The schedule is gone again, and with it the runs it had made for later.
    deployment = stack.server.get("/deployments/name/sandbox-demo/sandbox-demo")
    assert deployment["schedules"] == []
    waiting = stack.server.post("/flow_runs/filter", {
        "flow_runs": {"deployment_id": {"any_": [deployment["id"]]},
                      "state": {"type": {"any_": ["SCHEDULED"]}}}})
    assert waiting == []


# --- the UI, in a real browser ------------------------------------------------------------------

# What the flow-run page shows: the heading's state badge, and a tab's list rows as
# [name, state] (the run links and the state badges of Prefect's own UI components).
HEADER_JS = """(() => {
  const h = document.querySelector('header.page-heading');
  if (!h) return null;
  const b = h.querySelector('.state-badge');
  return {text: h.innerText, state: b ? b.innerText.trim() : null};
})()"""
LOGS_JS = "(document.getElementById('logs-content') || {}).innerText || ''"
ROWS_JS = """((tab, kind) => {
  const panel = document.getElementById(tab + '-content');
  if (!panel) return null;
  return [...panel.querySelectorAll('a[href*="/runs/' + kind + '/"]')].map(a => {
    const row = a.closest('.state-list-item') || a.parentElement.parentElement;
    const badge = row.querySelector('.state-badge');
    return [a.innerText.trim(), badge ? badge.innerText.trim() : null];
  });
})(%s, %s)"""

#: Scroll the Logs tab to the epoch line (for the screenshot).
SCROLL_TO_EPOCH_JS = """(() => {
  const panel = document.getElementById('logs-content');
  const hit = panel && [...panel.querySelectorAll('*')].find(
    e => e.children.length === 0 && /epoch 1[/]1: loss/.test(e.textContent));
  if (hit) hit.scrollIntoView({block: 'center'});
  return !!hit;
})()"""


def _open_tab(browser: Browser, tab: str) -> None:
    browser.wait_for(f"!!document.getElementById({json.dumps(tab)})", bool, f"the {tab} tab")
    browser.eval(f"document.getElementById({json.dumps(tab)}).click()")


def _rows_shown(browser: Browser, tab: str, kind: str, expected: set[str], what: str):
    """Wait until every expected name (prefix before the run suffix) shows as Completed."""

    def done(rows: list[list[str]]) -> bool:
        completed = {name.rsplit("-", 1)[0] for name, state in rows if state == "Completed"}
        completed |= {name for name, state in rows if state == "Completed"}
        return expected <= completed

    return browser.wait_for(
        ROWS_JS % (json.dumps(tab), json.dumps(kind)), done, what, timeout=60
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's `chromium`, or set TV100_CHROMIUM)")
    b = Browser(executable, tmp_path_factory.mktemp("chromium"))
    try:
        yield b
    finally:
        b.close()


def test_ui_shows_the_completed_run_and_its_task_runs(
    browser, stack, demo_run, tmp_path_factory
):
    server = stack.server
    shots = tmp_path_factory.mktemp("ui-screenshots")
    run_id = demo_run["flow_run_id"]
    run = server.get(f"/flow_runs/{run_id}")
    runs = _descendants(server, run_id)

    # The demo's flow-run page: its heading says Completed, its subflow (build) too.
    browser.goto(f"{server.url}/runs/flow-run/{run_id}")
    browser.wait_for(  # the heading fills in as the run, flow, deployment and pool load
        HEADER_JS,
        lambda h: h["state"] == "Completed" and run["name"] in h["text"]
        and "sandbox-demo" in h["text"] and "Deployment" in h["text"] and POOL in h["text"],
        f"flow run {run['name']} of deployment sandbox-demo (pool {POOL}) as Completed",
    )
    browser.wait_for(LOGS_JS, lambda t: "Finished in state Completed" in t, "the run's logs")
    time.sleep(1.0)  # the timeline graph is a canvas: give it a moment to draw
    browser.screenshot(shots / "flow-run.png")
    _open_tab(browser, "subflow-runs")
    _rows_shown(browser, "subflow-runs", "flow-run", {runs["build"]["name"]},
                "the build subflow as Completed")
    browser.screenshot(shots / "flow-run-subflows.png")

    # The build's page lists the three stage runs, each Completed.
    browser.goto(f"{server.url}/runs/flow-run/{runs['build']['id']}")
    browser.wait_for(HEADER_JS, lambda h: h["state"] == "Completed"
                     and runs["build"]["name"] in h["text"], "the build run as Completed")
    _open_tab(browser, "subflow-runs")
    _rows_shown(browser, "subflow-runs", "flow-run", {runs[s]["name"] for s in STAGE_TASKS},
                "the discover, collect and clean runs as Completed")
    browser.screenshot(shots / "build-subflows.png")

    # Each stage's page lists its task runs, every one Completed.
    for stage, tasks in STAGE_TASKS.items():
        sub = runs[stage]
        browser.goto(f"{server.url}/runs/flow-run/{sub['id']}")
        browser.wait_for(HEADER_JS, lambda h, n=sub["name"]: h["state"] == "Completed"
                         and n in h["text"], f"the {stage} run as Completed")
        _open_tab(browser, "task-runs")
        rows = _rows_shown(browser, "task-runs", "task-run", tasks,
                           f"{stage}'s task runs {sorted(tasks)} as Completed")
        assert all(state == "Completed" for _, state in rows), rows
        browser.screenshot(shots / f"{stage}-task-runs.png")
        # ... and the artifacts it published (tasks/artifacts.py) in its Artifacts tab.
        _open_tab(browser, "artifacts")
        browser.wait_for(
            "(document.getElementById('artifacts-content') || {}).innerText || ''",
            lambda t, keys=STAGE_ARTIFACTS[stage]: all(k in t for k in keys),
            f"{stage}'s artifacts {sorted(STAGE_ARTIFACTS[stage])}",
        )
        browser.screenshot(shots / f"{stage}-artifacts.png")

    # The train stage's Logs tab shows the fine-tune recipe's epoch line (a task's
    # `tv100.*` logger, forwarded to the API).
    train = runs["train"]
    browser.goto(f"{server.url}/runs/flow-run/{train['id']}")
    browser.wait_for(HEADER_JS, lambda h: h["state"] == "Completed" and train["name"] in h["text"],
                     "the train run as Completed")
    _open_tab(browser, "logs")
    browser.wait_for(LOGS_JS, lambda t: EPOCH_LINE.search(t) is not None,
                     "the fine-tune epoch line in the train run's logs")
    browser.eval(SCROLL_TO_EPOCH_JS)
    browser.screenshot(shots / "train-logs.png")
    print(f"UI screenshots: {shots}")
    assert (shots / "flow-run.png").stat().st_size > 10_000


# --- last: stopping -----------------------------------------------------------------------------


def test_server_stop_stops_everything_and_restores_the_profile(stack):
    state = read_server_state(stack.env)
    stopped = tv100(["server", "stop"], env=stack.env, cwd=REPO, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"tv100 server stopped; active Prefect profile: {USER_PROFILE}"
    assert f'active = "{USER_PROFILE}"' in _profiles(stack)
    for key in ("server_pid", "worker_pid"):
        ps = subprocess.run(["ps", "-o", "stat=", "-p", str(state[key])], capture_output=True,
                            text=True).stdout.strip()
        assert ps in ("",) or ps.startswith("Z"), (key, ps)  # gone (or a zombie, not reaped)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{stack.server.api}/health", timeout=5)
    status = tv100(["server", "status"], env=stack.env, cwd=REPO)
    assert status.returncode == 1 and "down" in status.stdout, status
    again = tv100(["server", "stop"], env=stack.env, cwd=REPO)
    assert again.returncode == 0 and "was not running" in again.stdout, again
