"""Bounded body reading: size caps, capped inflation of gzip/deflate (no network)."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tv100.tasks.web.decoding import (
    MAX_CONTENT_CODINGS,
    BoundedDecoder,
    bound_decoding,
    content_codings,
    read_capped,
    read_prefix,
)
from tv100.tasks.web.errors import FetchFailure, TooLarge


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def response(
    body: bytes, headers: dict[str, str] | None = None, chunk: int = 4096
) -> httpx.Response:
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return httpx.Response(200, headers=headers or {}, stream=_Chunks(chunks))


def capped(resp: httpx.Response, limit: int) -> bytes:
    bound_decoding(resp, limit)
    return asyncio.run(read_capped(resp, limit))


def test_plain_and_gzip_bodies_under_the_cap():
    body = b"hello world " * 1000
    assert capped(response(body), len(body)) == body
    gz = response(gzip.compress(body), {"Content-Encoding": "gzip"})
    assert capped(gz, len(body)) == body
    deflated = response(zlib.compress(body), {"Content-Encoding": "deflate"})
    assert capped(deflated, len(body)) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw_deflate = raw.compress(body) + raw.flush()
    assert capped(response(raw_deflate, {"Content-Encoding": "deflate"}), len(body)) == body


def test_stacked_codings_are_decoded_in_reverse():
    body = b"x" * 5000
    twice = gzip.compress(zlib.compress(body))
    assert capped(response(twice, {"Content-Encoding": "deflate, gzip"}), 5000) == body


@pytest.mark.parametrize("codings", ["gzip", "gzip, gzip"])
def test_a_gzip_bomb_stops_at_the_cap(codings: str):
    bomb = b"\0" * (8 << 20)
    for _ in codings.split(","):
        bomb = gzip.compress(bomb)
    with pytest.raises(TooLarge, match="once decoded"):
        capped(response(bomb, {"Content-Encoding": codings}), 64 * 1024)


def test_declared_length_over_the_cap_reads_nothing():
    resp = response(b"x" * 10, {"Content-Length": "1000000"})
    with pytest.raises(TooLarge, match="Content-Length 1000000"):
        capped(resp, 1000)


def test_counted_body_over_the_cap():
    with pytest.raises(TooLarge, match="max_bytes=1000"):
        capped(response(b"x" * 5000, chunk=100), 1000)


def test_too_many_stacked_codings_are_refused():
    codings = ", ".join(["gzip"] * (MAX_CONTENT_CODINGS + 1))
    with pytest.raises(FetchFailure, match="stacked Content-Encodings"):
        bound_decoding(response(b"", {"Content-Encoding": codings}), 100)


def test_content_codings_ignore_identity_and_case():
    resp = response(b"", {"Content-Encoding": "GZIP, identity , deflate"})
    assert content_codings(resp) == ["gzip", "deflate"]


def test_unknown_codings_pass_through_undecoded():
    decoder = BoundedDecoder(["br"], 100)
    assert decoder.decode(b"abc") == b"abc" and decoder.flush() == b""


def test_read_prefix_keeps_a_bounded_prefix_and_never_raises():
    assert asyncio.run(read_prefix(response(b"y" * 10_000, chunk=300), 1000)) == b"y" * 1000
    broken = response(b"not gzip at all", {"Content-Encoding": "gzip"})
    assert asyncio.run(read_prefix(broken, 1000)) == b""
