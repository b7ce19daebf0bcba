"""Spies on the HTTP client's side of a response, for tests of bounded reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


def spy_body_chunks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every decoded body chunk any `httpx.Response` yields from now on.

    Returns:
        The list the sizes are appended to (undone with `monkeypatch`).
    """
    sizes: list[int] = []
    original = httpx.Response.aiter_bytes

    async def spy(self: httpx.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        async for chunk in original(self, chunk_size):
            sizes.append(len(chunk))
            yield chunk

    monkeypatch.setattr(httpx.Response, "aiter_bytes", spy)
    return sizes
