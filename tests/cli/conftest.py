"""The CLI tests invoke flows in-process: Prefect's log lines follow each invoke's stderr."""

from __future__ import annotations

import pytest

from tests.support.cli import follow_stderr


@pytest.fixture(autouse=True)
def _prefect_logs_follow_stderr() -> None:
    follow_stderr()
