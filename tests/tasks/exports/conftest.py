"""Fixtures of the export tests: the tiny data root (`tiny_root`), fresh per test."""

from __future__ import annotations

import pytest

from tests.tasks.exports.tiny_root import write_tiny_root


@pytest.fixture
def tiny(tmp_path):
    """(DataRoot, image id -> class index) of a fresh tiny root."""
    return write_tiny_root(tmp_path / "data")
