"""Reading response bodies within a byte cap, compressed ones included.

A body is refused before reading when its Content-Length is over the cap, and counted while
streaming otherwise. Only ``gzip, deflate`` are asked for (`ACCEPT_ENCODING`), and a compressed
body is inflated layer by layer with an output cap (`HttpConfig.max_bytes` for bodies,
`ERROR_BODY_LIMIT` for error pages): a small gzip bomb (``Content-Encoding: gzip`` or stacked
``gzip, gzip``) ends as `too_large` without ever holding more than the cap in memory.
"""

from __future__ import annotations

import zlib

import httpx

from tv100.tasks.web.errors import FetchFailure, TooLarge

ACCEPT_ENCODING = "gzip, deflate"
"""The only content codings asked for: the ones `BoundedDecoder` inflates with a cap."""
MAX_CONTENT_CODINGS = 4
"""More stacked codings than this (``gzip, gzip, gzip, ...``) are refused as an `error`."""
_INFLATE_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": 0}


class _Inflater:
    """One gzip/deflate layer, inflated with a cap on its total output."""

    def __init__(self, coding: str, cap: int, limit: int) -> None:
        self.coding = coding
        self._wbits = _INFLATE_WBITS[coding]
        self._obj = zlib.decompressobj(self._wbits or zlib.MAX_WBITS)
        self._started = False  # deflate: zlib-wrapped first, raw deflate if that fails
        self._cap = cap
        self._limit = limit
        self._out = 0

    def _too_large(self) -> TooLarge:
        return TooLarge(
            f"body exceeds max_bytes={self._limit} once decoded (Content-Encoding "
            f"{self.coding}); stopped reading"
        )

    def feed(self, data: bytes) -> bytes:
        if not data or self._obj.eof:
            return b""  # like httpx: bytes after the end of the stream are ignored
        left = self._cap - self._out
        try:
            out = self._obj.decompress(data, left + 1)
        except zlib.error:
            if self.coding != "deflate" or self._started:
                raise
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as httpx does
            out = self._obj.decompress(data, left + 1)
        self._started = True
        if len(out) > left:
            raise self._too_large()
        self._out += len(out)
        return out

    def flush(self) -> bytes:
        out = self._obj.flush() if not self._obj.eof else b""
        if self._out + len(out) > self._cap:
            raise self._too_large()
        self._out += len(out)
        return out


class BoundedDecoder:
    """Drop-in for httpx's content decoder that never inflates past a cap.

    httpx inflates each network chunk in one call, so 64 KiB of ``gzip`` can become 64 MiB
    and of ``gzip, gzip`` many GiB before any size check runs. Here every layer's output is
    capped: the last layer at `limit` (more raises `TooLarge`), inner layers a little above
    it (compressed data is never much larger than what it decodes to). Codings other than
    gzip/deflate (never asked for) are passed through undecoded, as httpx does.
    """

    def __init__(self, codings: list[str], limit: int) -> None:
        inflating = [c for c in codings if c in _INFLATE_WBITS]
        inner_cap = limit + limit // 64 + 4096
        # The header lists codings in the order they were applied: decode in reverse.
        order = list(reversed(inflating))
        self._layers = [
            _Inflater(c, limit if i == len(order) - 1 else inner_cap, limit)
            for i, c in enumerate(order)
        ]

    def decode(self, data: bytes) -> bytes:
        """Inflate one network chunk through every layer."""
        try:
            for layer in self._layers:
                data = layer.feed(data)
        except zlib.error as exc:
            raise httpx.DecodingError(f"cannot decode body: {exc}") from exc
        return data

    def flush(self) -> bytes:
        """What the layers still hold at the end of the body."""
        data = b""
        try:
            for layer in self._layers:
                data = layer.feed(data) + layer.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(f"cannot decode body: {exc}") from exc
        return data


def content_codings(response: httpx.Response) -> list[str]:
    """The response's Content-Encoding values, lower-case, ``identity`` left out."""
    values = response.headers.get_list("content-encoding", split_commas=True)
    return [v.strip().lower() for v in values if v.strip() and v.strip().lower() != "identity"]


def bound_decoding(response: httpx.Response, limit: int) -> None:
    """Make `response.aiter_bytes()` inflate through `BoundedDecoder` capped at `limit`.

    Raises:
        FetchFailure: (`error`) for more than `MAX_CONTENT_CODINGS` stacked codings.
    """
    codings = content_codings(response)
    if len(codings) > MAX_CONTENT_CODINGS:
        raise FetchFailure(
            "error",
            f"{len(codings)} stacked Content-Encodings refused (at most {MAX_CONTENT_CODINGS})",
        )
    # httpx caches its decoder in this attribute the first time the body is read; setting
    # it first swaps in ours (checked by the hostile HTTP tests against gzip bombs).
    response.__dict__["_decoder"] = BoundedDecoder(codings, limit)


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole (decoded) body, refusing more than `limit` bytes.

    The caller has installed `bound_decoding`; here Content-Length is checked first, then
    the streamed bytes are counted.

    Raises:
        TooLarge: past the cap (no byte count in the message: where the read stops depends
            on chunking, and outcome rows must be the same on every run).
    """
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise TooLarge(f"Content-Length {int(declared)} exceeds max_bytes={limit}; body not read")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"body exceeds max_bytes={limit}; stopped reading")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_prefix(response: httpx.Response, limit: int) -> bytes:
    """Up to `limit` bytes of the body (error pages, redirect bodies); never fails."""
    chunks: list[bytes] = []
    total = 0
    try:
        bound_decoding(response, limit)
        async for chunk in response.aiter_bytes():
            chunks.append(chunk[: limit - total])
            total += len(chunk)
            if total >= limit:
                break
    except (httpx.HTTPError, httpx.StreamError, TooLarge, FetchFailure):
        pass  # the status already says what matters; a broken error page is no news
    return b"".join(chunks)
