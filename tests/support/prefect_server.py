"""A real `prefect server start` for tests that need one (deployments, Dask workers).

`running_server(home)` starts the server on a free loopback port with its own PREFECT_HOME
and yields a `Server` whose `env` points clients (subprocesses, Dask workers) at it.
"""

from __future__ import annotations

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


@dataclass
class Server:
    url: str
    api: str
    home: Path
    env: dict[str, str]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.api}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

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
