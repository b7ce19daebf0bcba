"""A real Prefect server in one command, and where every `tv100` command reports its runs.

``tv100 server start`` runs ``prefect server start`` on 127.0.0.1 in the background (the UI
and the scheduler), points the Prefect profile ``tv100`` at it and makes it the active
profile, creates the work pool ``tv100-process``, registers every deployment of
``prefect.yaml`` (``prefect deploy --all``) and starts a worker on the pool. ``stop`` stops
the worker (and the flow runs it started) and the server, and makes the profile that was
active before the active one again; ``status`` says whether it is up.

The server's own state lives beside ``prefect.yaml``, in ``.prefect-server/`` (or
``$TV100_SERVER_HOME``): its database, the logs of the server, the worker and the deploy,
and ``state.json`` (port, process ids, the profile to restore). Profiles live where Prefect
keeps them (``$PREFECT_HOME/profiles.toml``), so plain ``prefect`` commands reach the
server too.

`prefect_environment` runs before any command imports Prefect: with the project's server
up, the command reports to it (its runs show in the UI); with a profile or
``PREFECT_API_URL`` naming a server that does not answer, it says so in one line and runs
on a temporary server instead of failing to connect; with neither, nothing changes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import MutableMapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tv100.flows.cli.app import app, fail, show_help_if_bare
from tv100.storage.atomic import write_file_atomic

#: The server's own folder, beside prefect.yaml (or this environment variable's folder).
STATE_DIR = ".prefect-server"
SERVER_HOME_ENV = "TV100_SERVER_HOME"
STATE_FILE = "state.json"
#: The Prefect profile pointed at the server, and the work pool prefect.yaml deploys to.
PROFILE = "tv100"
POOL = "tv100-process"
#: Prefect's built-in profile without an API URL: a temporary server per run.
EPHEMERAL_PROFILE = "ephemeral"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
#: Seconds a start may wait for the server's health check, the deploy and the worker.
STARTUP_S = 300.0
DEPLOY_S = 600.0
#: Seconds a stopped process may take to exit before it is killed.
STOP_GRACE_S = 20.0
#: A configured server that takes longer than this to answer counts as down.
HEALTH_TIMEOUT_S = 2.0
#: ... unless its process runs (the project's server): then a slow answer is a busy server.
BUSY_HEALTH_TIMEOUT_S = 30.0

PREFECT = [sys.executable, "-m", "prefect"]

server_app = typer.Typer(
    help="A Prefect server with the UI, the scheduler, the deployments and a worker.",
    invoke_without_command=True,
    callback=show_help_if_bare,
)


class ServerError(RuntimeError):
    """The server, the deploy or the worker did not come up (exit code 1)."""


@dataclass(frozen=True)
class ServerState:
    """What ``state.json`` records about the running (or last) server.

    Attributes:
        port: the server's loopback port.
        server_pid: ``prefect server start`` (the leader of its own process group).
        worker_pid: ``prefect worker start`` (likewise), None until it runs.
        worker_name: the worker's name on the pool (unique per start).
        previous_profile: the profile that was active before ``start`` made ``tv100``
            active; ``stop`` makes it active again.
        prefect_home: the Prefect home whose profile points at the server: commands run
            with another one (the tests' own, say) do not report to it.
        project: the folder of prefect.yaml (deployments are registered from there).
    """

    port: int
    server_pid: int | None = None
    worker_pid: int | None = None
    worker_name: str | None = None
    previous_profile: str | None = None
    prefect_home: str = ""
    project: str = ""

    @property
    def url(self) -> str:
        """The UI's address."""
        return f"http://{HOST}:{self.port}"

    @property
    def api(self) -> str:
        """The API's address (``PREFECT_API_URL``)."""
        return f"{self.url}/api"


# --- where things are ----------------------------------------------------------------------


def _is_tv100_project(folder: Path) -> bool:
    try:
        text = (folder / "prefect.yaml").read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"^name:\s*['\"]?tv100['\"]?\s*$", text, re.M) is not None


def project_dir(cwd: Path | None = None) -> Path | None:
    """The folder of tv100's prefect.yaml: the current folder or the nearest above it that
    holds one, else the checkout this package is installed from (``pip install -e``)."""
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_tv100_project(folder):
            return folder
    checkout = Path(__file__).resolve().parents[2]
    return checkout if _is_tv100_project(checkout) else None


def server_home(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """``$TV100_SERVER_HOME``, else ``.prefect-server/`` beside prefect.yaml (None: no project)."""
    explicit = environ.get(SERVER_HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    project = project_dir()
    return project / STATE_DIR if project else None


def prefect_home(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Prefect's home folder (``$PREFECT_HOME``, else ``~/.prefect``), as Prefect reads it."""
    return Path(environ.get("PREFECT_HOME") or "~/.prefect").expanduser().resolve()


def read_state(home: Path) -> ServerState | None:
    """The state a start recorded under `home`, or None (never started, or unreadable)."""
    try:
        data = json.loads((home / STATE_FILE).read_text())
        return ServerState(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_state(home: Path, state: ServerState) -> None:
    home.mkdir(parents=True, exist_ok=True)
    write_file_atomic(home / STATE_FILE, json.dumps(asdict(state), indent=2).encode())


# --- is it up ------------------------------------------------------------------------------


def _get(url: str, timeout: float) -> int | None:
    """The HTTP status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):  # refused, timed out, unresolvable, not a URL
        return None


def healthy(api: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether a Prefect API answers its health check."""
    return _get(f"{api.rstrip('/')}/health", timeout) == 200


def answers(api: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether anything answers at a Prefect API (a 401 of Prefect Cloud counts)."""
    return _get(f"{api.rstrip('/')}/health", timeout) is not None


def _alive(pid: int | None) -> bool:
    """Whether `pid` runs and is a Prefect process (not a reused process id)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not ours
    try:
        out = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return True
    return bool(out) and not out.startswith("Z") and "prefect" in out


def project_server(environ: MutableMapping[str, str] = os.environ) -> ServerState | None:
    """The project's server when it is up for this Prefect home, else None."""
    home = server_home(environ)
    state = read_state(home) if home else None
    if state is None or state.server_pid is None:
        return None
    if state.prefect_home and Path(state.prefect_home) != prefect_home(environ):
        return None
    timeout = BUSY_HEALTH_TIMEOUT_S if _alive(state.server_pid) else HEALTH_TIMEOUT_S
    return state if healthy(state.api, timeout) else None


# --- where a command reports ---------------------------------------------------------------


def _default_profiles() -> dict[str, Any]:
    """Prefect's built-in profiles (read from its package, without importing it)."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "settings" / "profiles.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def active_profile_url(environ: MutableMapping[str, str] = os.environ) -> tuple[str, str | None]:
    """The active Prefect profile's name and its ``PREFECT_API_URL`` (None: none set).

    Read from the profiles file as Prefect reads it (``$PREFECT_PROFILES_PATH``, else
    ``$PREFECT_HOME/profiles.toml``; ``$PREFECT_PROFILE`` picks the profile), without
    importing Prefect: its settings are fixed at import.
    """
    path = Path(environ.get("PREFECT_PROFILES_PATH") or prefect_home(environ) / "profiles.toml")
    try:
        user = tomllib.loads(path.expanduser().read_text())
    except (OSError, ValueError):
        user = {}
    defaults = _default_profiles()
    name = environ.get("PREFECT_PROFILE") or user.get("active") or defaults.get("active")
    name = str(name or EPHEMERAL_PROFILE)
    settings = {
        **defaults.get("profiles", {}).get(name, {}),
        **user.get("profiles", {}).get(name, {}),
    }
    url = settings.get("PREFECT_API_URL")
    return name, str(url) if url else None


def _is_server_command(argv: Sequence[str]) -> bool:
    """Whether the command line runs ``tv100 [OPTIONS] server ...``."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command == "server"


def prefect_environment(
    environ: MutableMapping[str, str] = os.environ, argv: Sequence[str] | None = None
) -> str | None:
    """Point this process's Prefect at the server it should report to; return its API URL
    (None: a temporary server). Call before anything imports Prefect's settings.

    In order: ``PREFECT_API_URL`` when set and answering; the project's server when it is
    up (`project_server`); the active profile's API URL when it answers. A URL that does
    not answer is dropped for this process (the env variable removed; a profile's replaced
    by Prefect's built-in ``ephemeral`` profile), with one line on stderr, so the command
    runs on a temporary server rather than failing to connect. Nothing is checked over the
    network unless a URL is configured. ``tv100 server ...`` is left alone.
    """
    if _is_server_command(sys.argv[1:] if argv is None else argv):
        return None
    dead: tuple[str, str] | None = None
    env_url = environ.get("PREFECT_API_URL")
    if env_url:
        if answers(env_url):
            return env_url
        dead = (env_url, "PREFECT_API_URL")
    environ.pop("PREFECT_API_URL", None)
    chosen: str | None = None
    state = project_server(environ)
    if state is not None:
        chosen = environ["PREFECT_API_URL"] = state.api
    else:
        name, url = active_profile_url(environ)
        if url and answers(url):
            chosen = url
        elif url:
            dead = dead or (url, f"profile {name!r}")
            environ["PREFECT_PROFILE"] = EPHEMERAL_PROFILE
    if dead:
        instead = f"reporting to {chosen}" if chosen else "running on a temporary server"
        sys.stderr.write(
            f"tv100: note: no Prefect server answers at {dead[0]} ({dead[1]}); {instead} "
            "(start one: tv100 server start)\n"
        )
    return chosen


# --- processes -----------------------------------------------------------------------------


def _spawn(
    args: list[str], *, log: Path, cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start `args` in its own session (so it outlives this command), output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (flow runs run in sessions of their own)."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _exists(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return True
    return bool(out) and not out.startswith("Z")


def _stop_tree(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `pid` leads and every group below it, then SIGKILL what
    is left after `grace_s`."""
    mine = os.getpgid(0)
    pids = [pid, *_descendants(pid)]
    groups = [pid]  # started in a session of its own: it leads its group
    for p in pids[1:]:
        with contextlib.suppress(OSError):
            g = os.getpgid(p)
            if g != mine and g not in groups:
                groups.append(g)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for g in groups:
            with contextlib.suppress(OSError):
                os.killpg(g, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 10.0)
        while time.monotonic() < deadline and any(_exists(p) for p in pids):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-1, os.WNOHANG)  # reap ours (a start that failed half way)
            time.sleep(0.2)
        if not any(_exists(p) for p in pids):
            return


def _port_error(port: int) -> str | None:
    """Why the server cannot listen on `port` (None: it can)."""
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError as err:
            reason = "in use" if err.errno in (98, 48) else err.strerror or str(err)
            return f"cannot listen on {HOST}:{port} ({reason}); pick another with --port"
    return None


# --- the Prefect profile -------------------------------------------------------------------


def use_profile(api: str) -> str | None:
    """Point the ``tv100`` profile at `api` and make it active; the one active before."""
    from prefect.settings import PREFECT_API_URL, load_profiles, save_profiles

    profiles = load_profiles()
    previous = profiles.active_name
    profiles.update_profile(PROFILE, {PREFECT_API_URL: api})
    profiles.set_active(PROFILE)
    save_profiles(profiles)
    return previous


def restore_profile(previous: str | None) -> str | None:
    """Make `previous` the active profile again if ``tv100`` is still the active one (the
    user may have switched since); the profile now active."""
    from prefect.settings import load_profiles, save_profiles

    profiles = load_profiles()
    if profiles.active_name == PROFILE:
        target = previous if previous and previous in profiles.names and previous != PROFILE \
            else EPHEMERAL_PROFILE
        profiles.set_active(target, check=False)
        save_profiles(profiles)
    return profiles.active_name


# --- start ---------------------------------------------------------------------------------


def _client_env(api: str) -> dict[str, str]:
    """This process's environment pointed at the server (for prefect commands and the worker)."""
    env = dict(os.environ)
    env.update(PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_CLI_WRAP_LINES="false", PYTHONUNBUFFERED="1")
    return env


def _server_env(home: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_PROFILE", None)
    api = f"http://{HOST}:{port}/api"
    env.update(
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_API_HOST=HOST,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=api,  # what the UI's browser code calls
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait(what: str, ready: Any, proc: subprocess.Popen[bytes] | None, log: Path,
          timeout: float) -> None:
    def ready_now() -> bool:
        try:
            return bool(ready())
        except Exception:  # the API not answering yet (or any more): the checks below tell
            return False

    deadline = time.monotonic() + timeout
    while not ready_now():
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise ServerError(f"{what} not ready after {timeout:.0f} s; see {log}")
        time.sleep(0.5)


def _api(state: ServerState, method: str, path: str, body: Any = None) -> Any:
    import httpx

    r = httpx.request(method, f"{state.api}{path}", json=body, timeout=30)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()


def _run_prefect(args: list[str], *, state: ServerState, cwd: Path, log: Path,
                 timeout: float) -> None:
    """Run ``prefect ARGS`` against the server, output to `log`; a failure is a ServerError."""
    proc = _spawn(PREFECT + args, log=log, cwd=cwd, env=_client_env(state.api))
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop_tree(proc.pid, grace_s=5)
        raise ServerError(f"`prefect {' '.join(args)}` ran past {timeout:.0f} s; see {log}") \
            from None
    except BaseException:
        _stop_tree(proc.pid, grace_s=5)
        raise
    if code != 0:
        raise ServerError(f"`prefect {' '.join(args)}` failed (exit {code}); see {log}")


def _worker_online(state: ServerState) -> bool:
    workers = _api(state, "POST", f"/work_pools/{POOL}/workers/filter", {}) or []
    return any(w["name"] == state.worker_name and w.get("status") == "ONLINE" for w in workers)


def _start_worker(home: Path, state: ServerState, project: Path) -> ServerState:
    name = f"tv100-{uuid.uuid4().hex[:8]}"
    log = home / "worker.log"
    proc = _spawn(PREFECT + ["worker", "start", "--pool", POOL, "--name", name],
                  log=log, cwd=project, env=_client_env(state.api))
    state = replace(state, worker_pid=proc.pid, worker_name=name)
    write_state(home, state)
    _wait("the worker", lambda: _worker_online(state), proc, log, STARTUP_S)
    return state


def _start_server(home: Path, port: int, project: Path) -> ServerState:
    log = home / "server.log"
    proc = _spawn(PREFECT + ["server", "start", "--host", HOST, "--port", str(port)],
                  log=log, cwd=home, env=_server_env(home, port))
    previous = read_state(home)
    state = ServerState(
        port=port, server_pid=proc.pid,
        previous_profile=previous.previous_profile if previous else None,
        prefect_home=str(prefect_home()), project=str(project),
    )
    write_state(home, state)  # from here on, `stop` can clean up after a failed start
    _wait("the Prefect server", lambda: healthy(state.api), proc, log, STARTUP_S)
    if _api(state, "GET", f"/work_pools/{POOL}") is None:
        _run_prefect(["work-pool", "create", POOL, "--type", "process"], state=state,
                     cwd=project, log=home / "work-pool.log", timeout=STARTUP_S)
    _run_prefect(["deploy", "--all", "--no-prompt"], state=state, cwd=project,
                 log=home / "deploy.log", timeout=DEPLOY_S)
    return state


def _print_up(state: ServerState, home: Path, *, already: bool) -> None:
    head = "already running" if already else "started"
    typer.echo("\n".join([
        f"tv100 server {head}: the Prefect UI is at {state.url}",
        f"  API       {state.api} (Prefect profile {PROFILE!r}, active)",
        f"  worker    pool {POOL}, deployments of {state.project}/prefect.yaml",
        f"  state     {home} (database, server.log, worker.log, deploy.log)",
        "Try:  prefect deployment run 'sandbox-demo/sandbox-demo'",
        "Stop: tv100 server stop   (or: make server-stop)",
    ]))


def _error(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"tv100: error: {message}", err=True)
    raise typer.Exit(code)


@server_app.command("start")
def start(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Loopback port of the server and its UI.")
    ] = DEFAULT_PORT,
) -> None:
    """Start the Prefect server, deploy prefect.yaml and start a worker (a no-op when up)."""
    project = project_dir()
    if project is None:
        fail("no tv100 prefect.yaml here or above; run this in the tv100 checkout")
    home = server_home()
    assert home is not None
    state = read_state(home)
    server_up = state is not None and _alive(state.server_pid) and healthy(state.api)
    if state is not None and server_up and _alive(state.worker_pid):
        _print_up(state, home, already=True)
        return
    if state is not None and not server_up:  # a server that died: clear what is left of it
        for pid in (state.worker_pid, state.server_pid):
            if _alive(pid):
                _stop_tree(pid)  # type: ignore[arg-type]
    if not server_up:
        problem = _port_error(port)
        if problem:
            fail(problem)
    home.mkdir(parents=True, exist_ok=True)
    try:
        if not server_up:
            state = _start_server(home, port, project)
        assert state is not None
        state = _start_worker(home, state, project)
        previous = use_profile(state.api)
        if previous != PROFILE:
            state = replace(state, previous_profile=previous)
        write_state(home, state)
    except ServerError as err:
        _stop_all(home)
        _error(str(err))
    except BaseException:
        _stop_all(home)
        raise
    _print_up(state, home, already=False)


# --- stop and status -----------------------------------------------------------------------


def _stop_all(home: Path) -> tuple[bool, str | None]:
    """Stop the worker and the server `home` records; restore the profile. (Anything was
    running, the profile active now.)"""
    state = read_state(home)
    if state is None:
        return False, None
    running = False
    for pid in (state.worker_pid, state.server_pid):
        if _alive(pid):
            running = True
            _stop_tree(pid)  # type: ignore[arg-type]
    active = restore_profile(state.previous_profile)
    write_state(home, replace(state, server_pid=None, worker_pid=None))
    return running, active


@server_app.command("stop")
def stop() -> None:
    """Stop the worker (and the flow runs it started) and the server; restore the profile."""
    home = server_home()
    if home is None:
        fail("no tv100 prefect.yaml here or above; run this in the tv100 checkout")
    running, active = _stop_all(home)
    what = "stopped" if running else "was not running"
    profile = f"; active Prefect profile: {active}" if active else ""
    typer.echo(f"tv100 server {what}{profile}")


@server_app.command("status")
def status() -> None:
    """Whether the server is up (exit code 0) or down (1): its URL, process ids and logs."""
    home = server_home()
    if home is None:
        fail("no tv100 prefect.yaml here or above; run this in the tv100 checkout")
    state = read_state(home)
    up = state is not None and _alive(state.server_pid) and healthy(state.api)
    if state is None or not up:
        typer.echo(f"tv100 server: down (state in {home}); start it: tv100 server start")
        raise typer.Exit(1)
    worker = (
        f"pid {state.worker_pid} ({state.worker_name} on pool {POOL})"
        if _alive(state.worker_pid) else "not running (tv100 server start restarts it)"
    )
    typer.echo("\n".join([
        f"tv100 server: up at {state.url}",
        f"  API      {state.api}",
        f"  server   pid {state.server_pid}",
        f"  worker   {worker}",
        f"  state    {home}",
    ]))


app.add_typer(server_app, name="server")
