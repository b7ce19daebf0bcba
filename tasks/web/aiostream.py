"""httpcore network streams on asyncio's own transports, without the anyio layer.

httpcore's default backend goes through anyio, whose socket streams rebuild their whole
attribute mapping (a ``getpeername`` system call and more) each time httpcore asks whether an
idle keep-alive connection is still usable, and add a task-group layer to every read and
write. On a loopback image server that was about 1 ms of CPU per request out of httpx's
~1.1 ms (bench/download.py, `cpu_ms_per_image`'s ``http``); this backend is a buffer, a
waiter and asyncio's transport, so the same connection pool, HTTP/1.1 parser (h11) and
TLS (the `ssl` context httpx makes) cost a fraction of that.

`GuardedBackend` (`tv100.tasks.web.guard`) connects through `AsyncioBackend` after its
address check. Errors are httpcore's (``ConnectError``, ``ReadTimeout``, ...), raised from
the `OSError` or `ssl.SSLError` behind them, so httpx maps them as it maps anyio's and
`tv100.tasks.web.retry.is_retryable_connection_error` still sees a TLS failure.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

from tv100.tasks.web.errors import describe

#: Bytes buffered from the socket before reading from it pauses (a body read slowly).
READ_HIGH_WATER = 1 << 20
#: Reading resumes when the buffer is back under this.
READ_LOW_WATER = 1 << 18


class _Protocol(asyncio.Protocol):
    """Buffers what the connection receives; wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.read_paused = False
        self.write_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and not self.read_paused and self.transport:
            self.transport.pause_reading()
            self.read_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport: HTTP/1.1 never writes after the peer's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self._drain_done()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._drain_done()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _drain_done(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore's network stream."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to `max_bytes` received bytes; b"" at the end of the stream."""
        p = self._protocol
        while not p.buffer and not p.eof:
            await self._woken("waiter", timeout, httpcore.ReadTimeout, "no data")
        if p.buffer:
            data = bytes(p.buffer[:max_bytes])
            del p.buffer[:max_bytes]
            if p.read_paused and len(p.buffer) < READ_LOW_WATER:
                p.read_paused = False
                self._transport.resume_reading()
            return data
        if p.error is not None:
            raise httpcore.ReadError(describe(p.error)) from p.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send `buffer`, waiting while the transport's write buffer is over its limit."""
        if not buffer:
            return
        p = self._protocol
        if p.error is not None or self._transport.is_closing():
            raise httpcore.WriteError(
                f"connection closed: {describe(p.error)}" if p.error else "connection closed"
            )
        self._transport.write(buffer)
        while p.write_paused and p.error is None and not self._transport.is_closing():
            await self._woken("drained", timeout, httpcore.WriteTimeout, "could not send")

    async def _woken(
        self, slot: str, timeout: float | None, error: type[Exception], what: str
    ) -> None:
        """Wait until the protocol resolves its future `slot`; `error` after `timeout` s."""
        future = asyncio.get_running_loop().create_future()
        setattr(self._protocol, slot, future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise error(f"{what} for {timeout:g} s") from None
        finally:
            setattr(self._protocol, slot, None)

    async def aclose(self) -> None:
        """Close the connection (without waiting for the peer)."""
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """This connection upgraded to TLS (the host name verified by `ssl_context`)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake took over {timeout:g} s") from None
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(describe(exc)) from exc
        if tls is None:  # the peer closed during the handshake
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        return AsyncioStream(tls, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks of a stream: ssl_object, addresses, socket, is_readable."""
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # An idle keep-alive connection with anything to read (data or the peer's
            # close) must not be reused; the event loop has already read it into the buffer.
            return bool(self._protocol.buffer) or self._protocol.eof
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects with ``loop.create_connection``; TCP_NODELAY as asyncio sets it."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to `host` (a name or an address) on `port`."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(
                f"connecting to {host}:{port} took over {timeout:g} s"
            ) from None
        except OSError as exc:
            raise httpcore.ConnectError(describe(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        """asyncio's sleep."""
        await asyncio.sleep(seconds)
