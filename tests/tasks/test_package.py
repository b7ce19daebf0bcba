"""`tv100.tasks` sets torch's OpenMP wait policy before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "import os, tv100.tasks; print(os.environ['OMP_WAIT_POLICY'])"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )
    return out.stdout.strip()


def test_passive_wait_policy_is_the_default() -> None:
    assert _policy(None) == "PASSIVE"


def test_a_users_wait_policy_is_kept() -> None:
    assert _policy("ACTIVE") == "ACTIVE"


def test_the_sandbox_sets_it_too() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", "import os, tv100.sandbox; print(os.environ['OMP_WAIT_POLICY'])"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )
    assert out.stdout.strip() == "PASSIVE"
