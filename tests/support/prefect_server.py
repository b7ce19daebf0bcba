"""A real `prefect server start` for tests that need one (deployments, Dask workers).

`running_server(home)` starts the server on a free loopback port with its own PREFECT_HOME
and yields a `Server` whose `env` points clients (subprocesses, Dask workers) at it.

`tv100_server(home)` does what a user does instead: ``tv100 server start`` (server, work
pool, ``prefect deploy --all``, worker, the ``tv100`` profile made active) with HOME,
PREFECT_HOME and TV100_SERVER_HOME under `home` (`isolated_env`: the user's own Prefect
profiles and the checkout's ``.prefect-server/`` are never touched), and ``tv100 server
stop`` at the end. Its `Server.env` holds no PREFECT_API_URL: clients find the server
through the active profile, as a user's ``prefect`` commands do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PREFECT = [sys.executable, "-m", "prefect"]
#: How long an API call is tried again while the server answers 5xx (busy, not broken).
BUSY_RETRY_S = 90.0
#: The console script of the environment running the tests.
TV100 = str(Path(sys.executable).with_name("tv100"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def kill_group(proc: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """Stop a process we started in its own session, and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def run_or_dump(
    args: list[str], *, env: dict[str, str], log: Path, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `args` (stdout captured, stderr to `log`) in a session of its own.

    When it runs past `timeout`, every Python process of the session (Dask workers
    included: they inherit PYTHONFAULTHANDLER and stderr) is sent SIGABRT, on which
    faulthandler writes each thread's stack to `log`; then the session is killed and an
    AssertionError carries the log's tail, so a hang says where it hung.
    """
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            args, cwd=cwd, env={**env, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE,
            stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
            time.sleep(3.0)  # the stacks are written
            kill_group(proc, grace_s=1.0)
            raise AssertionError(
                f"{args[:2]} ran past {timeout}s; every process's stacks, log {log}:\n"
                f"{tail(log, 30000)}"
            ) from None
        finally:
            kill_group(proc, grace_s=1.0)  # nothing of the session outlives it
    return subprocess.CompletedProcess(args, proc.returncode, out, None)


@dataclass
class Server:
    url: str
    api: str
    home: Path
    env: dict[str, str]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call, tried again on a 5xx or a dropped connection for up to
        `BUSY_RETRY_S`: on a busy machine the server's SQLite database answers 503 while
        another writer holds it (seen while a demo run rendered on every core)."""
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            try:
                r = httpx.request(method, f"{self.api}{path}", json=body, timeout=30)
                if r.status_code < 500:
                    r.raise_for_status()
                    return r.json() if r.content else None
                error: Exception = httpx.HTTPStatusError(
                    f"{method} {path}: {r.status_code}", request=r.request, response=r)
            except httpx.TransportError as err:
                error = err
            if time.monotonic() > deadline:
                raise error
            time.sleep(2)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def run(self, args: list[str], *, cwd: Path, timeout: float, name: str) -> str:
        """Run ``prefect ARGS`` against this server; its output (also kept in a log file)."""
        log = self.home / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                PREFECT + args, cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                raise AssertionError(
                    f"`prefect {' '.join(args)}` ran past {timeout}s; log {log}:\n{tail(log)}"
                ) from None
            finally:
                kill_group(proc, grace_s=5)
        text = log.read_text(errors="replace")
        assert rc == 0, f"`prefect {' '.join(args)}` exited {rc}; log {log}:\n{text[-4000:]}"
        return text


def prefect_env(home: Path, api: str, port: int) -> dict[str, str]:
    """This process's environment without its PREFECT_* settings, pointed at the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
        PREFECT_API_URL=api,
        PREFECT_UI_API_URL=api,  # the UI's browser code calls this (default: port 4200)
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_CLI_WRAP_LINES="false",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    env.pop("TV100_DATA", None)
    return env


@contextmanager
def running_server(home: Path, startup_s: float = 180.0) -> Iterator[Server]:
    """`prefect server start` on a free loopback port with `home` as its PREFECT_HOME."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = prefect_env(home, api, port)
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            PREFECT + ["server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home, env=server_env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"prefect server exited {proc.returncode}:\n{tail(log)}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"prefect server not healthy after {startup_s:.0f}s:\n{tail(log)}"
                )
            time.sleep(0.5)
        yield Server(url=f"http://127.0.0.1:{port}", api=api, home=home, env=env)
    finally:
        kill_group(proc)


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without PREFECT_* and TV100_* settings; HOME, PREFECT_HOME
    and TV100_SERVER_HOME (`tv100 server`'s state) are folders under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TV100_"))}
    for name in ("home", "prefect-home", "server-state"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home / "home"),
        PREFECT_HOME=str(home / "prefect-home"),
        TV100_SERVER_HOME=str(home / "server-state"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_WRAP_LINES="false",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        **extra,
    )
    return env


def tv100(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `tv100` console script; its exit code and output (a hang is an error)."""
    return subprocess.run(
        [TV100, *args], cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=timeout,
    )


def read_server_state(env: dict[str, str]) -> dict[str, Any]:
    """`tv100 server`'s ``state.json`` under the environment's TV100_SERVER_HOME."""
    return json.loads((Path(env["TV100_SERVER_HOME"]) / "state.json").read_text())


def _kill_recorded(env: dict[str, str]) -> None:
    """Last resort after a failed stop: the process groups `tv100 server` recorded."""
    try:
        state = read_server_state(env)
    except (OSError, ValueError):
        return
    for key in ("worker_pid", "server_pid"):
        pid = state.get(key)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


@contextmanager
def tv100_server(
    home: Path, cwd: Path, *, startup_s: float = 600.0, **extra: str
) -> Iterator[tuple[Server, subprocess.CompletedProcess[str]]]:
    """``tv100 server start`` on a free port in an `isolated_env` (plus `extra` variables),
    run from `cwd`; the server and the start's output. Stopped (``tv100 server stop``) at
    the end."""
    env = isolated_env(home, **extra)
    port = free_port()
    try:
        started = tv100(["server", "start", "--port", str(port)], env=env, cwd=cwd,
                        timeout=startup_s)
        state_dir = Path(env["TV100_SERVER_HOME"])
        assert started.returncode == 0, (
            f"tv100 server start exited {started.returncode}:\n{started.stderr[-3000:]}\n"
            f"server.log:\n{tail(state_dir / 'server.log')}\n"
            f"deploy.log:\n{tail(state_dir / 'deploy.log')}\n"
            f"worker.log:\n{tail(state_dir / 'worker.log')}"
        )
        url = f"http://127.0.0.1:{port}"
        yield Server(url=url, api=f"{url}/api", home=home, env=env), started
    finally:
        try:
            tv100(["server", "stop"], env=env, cwd=cwd, timeout=120)
        finally:
            _kill_recorded(env)
