"""The deployments in `prefect.yaml`, end to end on a real Prefect server, and the run seen in
the Prefect UI through a real (headless) Chromium.

One module-scoped server (`prefect server start` on a free loopback port, its own
PREFECT_HOME in a temp dir) serves every test here. The `demo_run` fixture does what an
operator does: create the `process` work pool, `prefect deploy --all --no-prompt` from
the repository root, `prefect deployment run 'sandbox-demo/sandbox-demo'` with a small,
fast demo (scale 0.1, its own data root and sandbox port), then `prefect worker start
--run-once` from a *different* directory, so the run only finds the code through the
deployments' pull step. The UI test drives Chromium over the DevTools protocol (the
`websockets` package Prefect already installs; no browser download, no extra
dependency) and saves screenshots under its temp dir; it skips when no Chromium is found
(set ``TV100_CHROMIUM`` to a binary to choose one).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.prefect_server import Server, free_port, running_server
from tests.support.prefect_server import kill_group as _kill_group
from tests.support.prefect_server import tail as _tail

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
POOL = "tv100-process"
DEMO_DEPLOYMENT = "sandbox-demo/sandbox-demo"
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


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own PREFECT_HOME."""
    with running_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture(scope="module")
def demo_run(prefect_server, tmp_path_factory):
    """Pool, deploy, trigger the sandbox demo, run one worker pass; the run's facts."""
    server = prefect_server
    work = tmp_path_factory.mktemp("demo-deployment")
    data = work / "data"
    started = time.monotonic()
    server.run(["work-pool", "create", POOL, "--type", "process"],
               cwd=work, timeout=120, name="work-pool")
    deployed = server.run(["deploy", "--all", "--no-prompt"], cwd=REPO, timeout=300,
                          name="deploy")
    out = server.run(
        ["deployment", "run", DEMO_DEPLOYMENT,
         "--param", f"data={data}", "--param", "scale=0.1",
         # No sandbox CLIP pre-training here (minutes on 2 cores): rank and train have
         # their own tests; this one is about deployments, the worker and the UI.
         "--param", "rank=false",
         "--param", f"port={free_port()}"],
        cwd=work, timeout=120, name="deployment-run",
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", out) or re.search(
        r"/runs/flow-run/([0-9a-f-]{36})", out
    )
    assert match, f"no flow run id in:\n{out}"
    # From elsewhere than the checkout: the pull step must take the run there.
    worker = server.run(["worker", "start", "--pool", POOL, "--run-once"],
                        cwd=work, timeout=420, name="worker")
    return {
        "flow_run_id": match.group(1),
        "data": data,
        "deploy_output": deployed,
        "worker_log": worker,
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


# --- tests ------------------------------------------------------------------------------------


def test_prefect_yaml_deployments_are_registered(prefect_server, demo_run):
    server = prefect_server
    deployments = {d["name"]: d for d in server.post("/deployments/filter", {"limit": 50})}
    assert {"build", "refresh", "sandbox-demo"} <= set(deployments), demo_run["deploy_output"]
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


def test_sandbox_demo_deployment_runs_to_completion(prefect_server, demo_run):
    server = prefect_server
    run = server.get(f"/flow_runs/{demo_run['flow_run_id']}")
    assert run["state"]["type"] == "COMPLETED", (run["state"], demo_run["worker_log"][-4000:])
    assert run["parameters"]["scale"] == 0.1
    tables = Path(demo_run["data"]) / "tables"
    for name in ("series", "images", "search_hits", "quality", "duplicates", "sandbox_series"):
        assert (tables / f"{name}.parquet").is_file(), sorted(p.name for p in tables.iterdir())

    runs = _descendants(server, demo_run["flow_run_id"])
    assert {"build", *STAGE_TASKS} <= set(runs), sorted(runs)
    for flow_name, sub in runs.items():
        assert sub["state"]["type"] == "COMPLETED", (flow_name, sub["state"])
    for stage, expected in STAGE_TASKS.items():
        task_runs = server.post(
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": [runs[stage]["id"]]}}, "limit": 200},
        )
        names = {t["name"].rsplit("-", 1)[0] for t in task_runs}  # "write-tables-722"
        assert expected <= names, (stage, names)
        assert all(t["state"]["type"] == "COMPLETED" for t in task_runs), stage
        artifacts = server.post(
            "/artifacts/filter",
            {"flow_runs": {"id": {"any_": [runs[stage]["id"]]}}, "limit": 200},
        )
        assert STAGE_ARTIFACTS[stage] <= {a["key"] for a in artifacts}, (stage, artifacts)
    print(f"deployment round trip (pool, deploy, run, worker): {demo_run['seconds']:.0f}s")


# --- the UI, in a real browser ------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def find_chromium() -> str | None:
    explicit = os.environ.get("TV100_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """Headless Chromium driven over the Chrome DevTools Protocol (one page, one socket)."""

    def __init__(self, executable: str, workdir: Path, width: int = 1440, height: int = 1000):
        from websockets.sync.client import connect

        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=False)  # a fresh --user-data-dir every time
        self.log = workdir / "chromium.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                 f"--window-size={width},{height}", "about:blank"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Chromium did not start:\n{_tail(self.log)}")
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        except BaseException:
            _kill_group(self.proc, grace_s=5)
            raise
        self.ids = itertools.count(1)
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:  # skip events until our answer
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, check, what: str, timeout: float = 60.0) -> Any:
        """Poll `expression` until `check(value)`; fail with the page's text if it never is."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value is not None and check(value):
                return value
            time.sleep(0.25)
        text = self.eval("document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"UI never showed {what} (last: {value!r}); page text:\n{text[:3000]}")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            _kill_group(self.proc, grace_s=5)


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
    browser, prefect_server, demo_run, tmp_path_factory
):
    server = prefect_server
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
    print(f"UI screenshots: {shots}")
    assert (shots / "flow-run.png").stat().st_size > 10_000
