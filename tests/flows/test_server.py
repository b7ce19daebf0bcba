"""`tv100 server` while no server runs, and where a `tv100` command reports its runs.

Its one-line errors (a busy or bad port), ``status`` and ``stop`` of a server never started,
and `prefect_environment`: a configured Prefect server that does not answer (a profile's or
``PREFECT_API_URL``) is dropped, with one line, and the command runs on a temporary server.
Every run here has HOME, PREFECT_HOME and the server's state in a temp dir
(`tests.support.prefect_server.isolated_env`).

The server up (a second start a no-op, status, a command reporting to it, stop restoring
the profile) is tested in tests/flows/test_deploy.py, which shares one server across its
tests.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.prefect_server import free_port, isolated_env, tv100

REPO = Path(__file__).resolve().parents[2]


def _dead_api() -> str:
    """An API URL on a loopback port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/api"


def _written(env: dict[str, str]) -> list[str]:
    """What exists under the isolated Prefect home and server state."""
    return sorted(
        str(p) for key in ("PREFECT_HOME", "TV100_SERVER_HOME")
        for p in Path(env[key]).rglob("*")
    )


def test_a_busy_port_is_one_line_and_starts_nothing(tmp_path):
    env = isolated_env(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = tv100(["server", "start", "--port", str(port)], env=env, cwd=REPO, timeout=120)
    assert r.returncode == 2, r
    assert r.stderr == (
        f"tv100: error: cannot listen on 127.0.0.1:{port} (in use); pick another with --port\n"
    )
    assert r.stdout == ""
    assert _written(env) == []  # no state, no profile


@pytest.mark.parametrize("port", ["0", "70000", "http"], ids=["zero", "too-big", "not-a-number"])
def test_a_bad_port_is_one_line(tmp_path, port):
    env = isolated_env(tmp_path)
    r = tv100(["server", "start", "--port", port], env=env, cwd=REPO, timeout=120)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"tv100: error: invalid value '{port}' for --port")
    assert r.stderr.count("\n") == 1
    assert _written(env) == []


def test_status_and_stop_of_a_server_never_started(tmp_path):
    env = isolated_env(tmp_path)
    status = tv100(["server", "status"], env=env, cwd=REPO, timeout=120)
    assert status.returncode == 1, status
    assert status.stdout.startswith("tv100 server: down"), status.stdout
    stop = tv100(["server", "stop"], env=env, cwd=REPO, timeout=120)
    assert stop.returncode == 0, stop
    assert stop.stdout == "tv100 server was not running\n"
    assert _written(env) == []


def test_a_profile_server_that_does_not_answer_falls_back_to_a_temporary_one(tmp_path):
    """The ``tv100`` profile left active by a server that died: commands still run."""
    env = isolated_env(tmp_path)
    dead = _dead_api()
    profiles = Path(env["PREFECT_HOME"]) / "profiles.toml"
    profiles.write_text(f'active = "tv100"\n\n[profiles.tv100]\nPREFECT_API_URL = "{dead}"\n')
    datasets, data = tmp_path / "datasets", tmp_path / "data"
    made = tv100(["sandbox", "datasets", str(datasets), "--n-series", "8"], env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    ran = tv100(["discover", "--location", str(datasets), "--data", str(data)], env=env,
                cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    note = (f"tv100: note: no Prefect server answers at {dead} (profile 'tv100'); running on "
            "a temporary server (start one: tv100 server start)")
    assert note in ran.stderr.splitlines(), ran.stderr[-3000:]
    assert (data / "tables" / "series.parquet").is_file()
    assert 'active = "tv100"' in profiles.read_text()  # the user's choice is left as it is


def test_the_cli_imports_no_prefect_before_it_picks_the_server():
    """`prefect_environment` must run before Prefect reads its settings: loading the CLI
    (every command module, plugins included) imports no Prefect, or a dead profile's URL
    would stay in force."""
    code = ("import sys, tv100.flows.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.strip() == "[]", out


# --- prefect_environment, in this process --------------------------------------------------


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PREFECT_HOME": str(tmp_path / "prefect-home"),
            "TV100_SERVER_HOME": str(tmp_path / "server-state"), **extra}


def test_nothing_configured_changes_nothing(tmp_path, capsys):
    from tv100.flows.cli.server import prefect_environment

    environ = _environ(tmp_path)
    before = dict(environ)
    assert prefect_environment(environ, argv=["sql", "select 1"]) is None
    assert environ == before
    assert capsys.readouterr().err == ""


def test_a_dead_api_url_is_dropped_with_one_line(tmp_path, capsys):
    from tv100.flows.cli.server import prefect_environment

    dead = _dead_api()
    environ = _environ(tmp_path, PREFECT_API_URL=dead)
    assert prefect_environment(environ, argv=["--debug", "build"]) is None
    assert "PREFECT_API_URL" not in environ and "PREFECT_PROFILE" not in environ
    assert capsys.readouterr().err == (
        f"tv100: note: no Prefect server answers at {dead} (PREFECT_API_URL); running on a "
        "temporary server (start one: tv100 server start)\n"
    )


def test_a_dead_profile_url_switches_to_the_ephemeral_profile(tmp_path, capsys):
    from tv100.flows.cli.server import active_profile_url, prefect_environment

    dead = _dead_api()
    environ = _environ(tmp_path)
    Path(environ["PREFECT_HOME"]).mkdir()
    (Path(environ["PREFECT_HOME"]) / "profiles.toml").write_text(
        f'active = "mine"\n\n[profiles.mine]\nPREFECT_API_URL = "{dead}"\n'
    )
    assert active_profile_url(environ) == ("mine", dead)
    assert prefect_environment(environ, argv=["demo"]) is None
    assert environ["PREFECT_PROFILE"] == "ephemeral"  # Prefect's own, with no API URL
    assert active_profile_url(environ) == ("ephemeral", None)
    assert f"{dead} (profile 'mine')" in capsys.readouterr().err


def test_server_commands_are_left_alone(tmp_path, capsys):
    from tv100.flows.cli.server import prefect_environment

    environ = _environ(tmp_path, PREFECT_API_URL=_dead_api())
    before = dict(environ)
    assert prefect_environment(environ, argv=["--debug", "server", "stop"]) is None
    assert environ == before
    assert capsys.readouterr().err == ""


def test_the_demo_has_a_data_root_of_its_own(monkeypatch):
    from tv100.sandbox.demo import demo_data, pretrain_config
    from tv100.sandbox.pretrain import PretrainConfig

    monkeypatch.delenv("TV100_DATA", raising=False)
    assert demo_data() == "./data/demo"
    monkeypatch.setenv("TV100_DATA", "/srv/tv100/")
    assert demo_data() == "/srv/tv100/demo"
    # The demo's default pre-training is the sandbox CLIP's default (its cache is kept).
    default = PretrainConfig()
    config = pretrain_config(0, 48, default.steps, default.renders_per_series)
    assert config.config_hash() == default.config_hash()
    short = pretrain_config(0, 48, 20, 8)
    assert (short.steps, short.warmup_steps, short.renders_per_series) == (20, 2, 8)
