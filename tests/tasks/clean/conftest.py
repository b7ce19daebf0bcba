"""Fixtures of the clean-stage unit tests."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.tasks.clean.records import make_originals


@pytest.fixture(scope="module")
def originals() -> list[Image.Image]:
    """`N_BASE` distinct generated photos."""
    return make_originals()
