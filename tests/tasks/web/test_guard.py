"""Outbound safety (SSRF): URLs found in pages are untrusted.

Refused by default, as status `blocked`, with nothing sent: private, loopback, link-local
(cloud metadata), multicast, reserved and unspecified addresses over IPv4 and IPv6, in
every spelling; names that resolve to them, checked again at connect time (DNS
rebinding); redirects that lead to them; non-http(s) schemes. `allow_hosts` admits the
sandbox. The downloader turns each refusal into an `images` row with status `blocked`.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pytest

import tv100.tasks.web.guard as guard_mod
from tests.support.reliability import record
from tv100.tasks.web.aiostream import AsyncioBackend
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import Fetched, HttpConfig
from tv100.tasks.web.guard import OutboundGuard, address_problem
from tv100.tasks.web.robots import ROBOTS, RobotsPolicy

pytestmark = pytest.mark.timeout(60)

PUBLIC_IP = "93.184.216.34"  # a global unicast address (never connected to here)


def get(url: str, config: HttpConfig, *, robots: RobotsPolicy | None = ROBOTS) -> Fetched:
    async def main() -> Fetched:
        async with HttpClient(config, robots=robots) as client:
            return await client.get(url)

    return asyncio.run(main())


def cfg(**kw: Any) -> HttpConfig:
    base: dict[str, Any] = dict(
        timeout_s=5.0, connect_timeout_s=2.0, retries=1, backoff_base_s=0.01, backoff_max_s=0.02
    )
    base.update(kw)
    return HttpConfig(**base)


class Listener:
    """A loopback TCP listener that counts accepted connections and answers 200 'ok'."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.hosts: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    for line in data.split(b"\r\n"):
                        if line.lower().startswith(b"host:"):
                            self.hosts.append(line[5:].strip().decode())
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Resolve names from `answers`: each lookup of a name takes the next answer (the last
    one repeats), like a rebinding DNS server. Returns the log of names looked up."""
    calls: list[str] = []

    async def resolve(self: OutboundGuard, host: str, port: int) -> list[str]:
        calls.append(host)
        seq = answers.get(host)
        if seq is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        n = sum(1 for c in calls if c == host)
        return list(seq[min(n, len(seq)) - 1])

    monkeypatch.setattr(OutboundGuard, "resolve", resolve)
    return calls


def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_connect(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a connection was opened: {args} {kwargs}")

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", no_connect)


# -- literal addresses, every spelling --------------------------------------------------------

LITERALS = {
    "private 10/8": "http://10.0.0.1/",
    "private 172.16/12": "http://172.31.255.1/",
    "private 192.168/16": "http://192.168.0.1/x.jpg",
    "loopback": "http://127.0.0.1/",
    "loopback 127/8": "http://127.8.9.10:8080/",
    "metadata (AWS/GCP/Azure)": "http://169.254.169.254/latest/meta-data/",
    "link-local": "http://169.254.1.1/",
    "multicast": "http://224.0.0.251/",
    "multicast SSDP": "http://239.255.255.250:1900/",
    "broadcast": "http://255.255.255.255/",
    "unspecified": "http://0.0.0.0/",
    "this network 0/8": "http://0.1.2.3/",
    "shared CGNAT": "http://100.64.0.1/",
    "benchmark 198.18/15": "http://198.18.0.1/",
    "reserved 240/4": "http://240.0.0.1/",
    "v6 loopback": "http://[::1]/",
    "v6 unspecified": "http://[::]/",
    "v6 link-local": "http://[fe80::1]/",
    "v6 link-local with zone": "http://[fe80::1%25eth0]/",
    "v6 unique-local": "http://[fd00::1]/",
    "v6 site-local": "http://[fec0::1]/",
    "v6 multicast": "http://[ff02::1]/",
    "v4-mapped loopback": "http://[::ffff:127.0.0.1]/",
    "v4-mapped metadata": "http://[::ffff:169.254.169.254]/",
    "v4-mapped hex": "http://[::ffff:7f00:1]/",
    "v4-compatible loopback": "http://[::127.0.0.1]/",
    "NAT64 of metadata": "http://[64:ff9b::a9fe:a9fe]/",
    "6to4 of private": "http://[2002:a00:1::]/",
    "Teredo": "http://[2001::1]/",
    "v6 documentation": "http://[2001:db8::1]/",
    "userinfo trick": "http://example.com@127.0.0.1/",
    "userinfo trick with port": "http://user:pw@169.254.169.254:80/",
    "upper-case scheme": "HTTP://127.0.0.1/",
}


@pytest.mark.parametrize("name", list(LITERALS))
def test_literal_non_public_addresses_are_blocked_without_network(
    name: str, monkeypatch: pytest.MonkeyPatch
):
    calls = fake_dns(monkeypatch, {})
    no_network(monkeypatch)
    f = get(LITERALS[name], cfg())
    family = "IPv6" if "[" in LITERALS[name] else "IPv4"
    record("ssrf", f"literal non-public {family} address (private, loopback, metadata, "
           "link-local, multicast, reserved, unspecified, mapped, userinfo tricks)", f.status)
    assert f.status == "blocked", (f.status, f.error_message)
    assert f.attempts == 0 and f.http_status is None and f.content == b""
    assert f.error_message and "allow_hosts" in f.error_message
    assert calls == []  # an IP literal needs no DNS


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal
        "http://0x7f000001/",  # hex
        "http://0177.0.0.1/",  # octal
        "http://127.1/",  # short form
        "http://localhost/",
        "http://localhost./",
        "http://LOCALHOST:8080/",
    ],
)
def test_numeric_and_local_spellings_are_blocked(url: str, monkeypatch: pytest.MonkeyPatch):
    # The real resolver interprets these (no network needed): each must come out loopback.
    no_network(monkeypatch)
    f = get(url, cfg())
    record("ssrf", "loopback in odd spellings (decimal, hex, octal, localhost)", f.status)
    assert f.status in ("blocked", "error"), (f.status, f.error_message)
    if f.status == "error":  # a spelling the resolver rejects is fine too: nothing is sent
        assert f.error_message and ("DNS" in f.error_message or "invalid" in f.error_message)
    else:
        assert f.error_message and "loopback" in f.error_message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://127.0.0.1:11211/stat",
        "ws://example.com/",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "jar:http://example.com/x.jar!/",
    ],
)
def test_non_http_schemes_are_blocked(url: str, monkeypatch: pytest.MonkeyPatch):
    calls = fake_dns(monkeypatch, {})
    no_network(monkeypatch)
    f = get(url, cfg())
    record("ssrf", "non-http(s) scheme", f.status)
    assert f.status in ("blocked", "error"), (f.status, f.error_message)
    assert f.attempts == 0 and calls == []


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("10.1.2.3", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("2002:a00:1::", "6to4 wrapping a non-public address"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_address_problem(address: str, expected: str | None):
    assert address_problem(address) == expected


@pytest.mark.parametrize(
    ("entry", "host", "port", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1", 8000, True),
        ("127.0.0.1:8000", "127.0.0.1", 8000, True),
        ("127.0.0.1:8000", "127.0.0.1", 8001, False),
        ("localhost", "localhost", 80, True),
        ("[::1]:9", "::1", 9, True),
        ("::1", "::1", 9, True),
        ("[::1]:9", "::1", 10, False),
    ],
)
def test_allow_list_entries(entry: str, host: str, port: int, allowed: bool):
    guard = OutboundGuard(HttpConfig(allow_hosts=(entry,)).allow_hosts, connect_timeout_s=1.0)
    assert guard.is_allowed(host, port) is allowed
    assert not OutboundGuard((), connect_timeout_s=1.0).is_allowed(host, port)


# -- names resolving to non-public addresses --------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (["127.0.0.1"], "loopback"),
        (["10.1.2.3"], "private"),
        (["169.254.169.254"], "link-local"),
        (["::1"], "loopback"),
        (["fd12::1"], "private"),
        (["::ffff:192.168.1.1"], "IPv4-mapped private"),
        ([PUBLIC_IP, "192.168.1.1"], "private"),  # one bad address among good ones is enough
        (["0.0.0.0"], "unspecified"),
        (["224.0.0.1"], "multicast"),
    ],
)
def test_names_resolving_to_non_public_addresses_are_blocked(
    answer: list[str], why: str, monkeypatch: pytest.MonkeyPatch
):
    calls = fake_dns(monkeypatch, {"images.example.net": [answer]})
    no_network(monkeypatch)
    f = get("http://images.example.net/a.jpg", cfg())
    record("ssrf", "host name resolving to a non-public address", f.status)
    assert f.status == "blocked", (f.status, f.error_message)
    assert f.error_message and why in f.error_message and "images.example.net" in f.error_message
    assert calls == ["images.example.net"]  # checked once, refused before connecting


@pytest.mark.parametrize(
    "rebound",
    [["127.0.0.1"], ["169.254.169.254"], [PUBLIC_IP, "127.0.0.1"], ["::1"], ["10.0.0.7"]],
)
def test_dns_rebinding_is_caught_at_connect_time(
    rebound: list[str], listener: Listener, monkeypatch: pytest.MonkeyPatch
):
    # The name is public when checked, then re-resolves to the target when connecting.
    calls = fake_dns(monkeypatch, {"rebind.example.net": [[PUBLIC_IP], rebound]})
    # robots=None: this is about the page request's own connect-time check; with robots.txt
    # on, the robots.txt request would meet it first (test_the_robots_txt_request_is_guarded_too).
    f = get(f"http://rebind.example.net:{listener.port}/steal", cfg(), robots=None)
    record("ssrf", "DNS rebinding (public at check, non-public at connect)", f.status)
    assert f.status == "blocked", (f.status, f.error_message)
    assert f.error_message and "connect time" in f.error_message
    assert calls == ["rebind.example.net", "rebind.example.net"]
    assert f.attempts == 1  # refused once, not retried
    assert listener.accepted == 0


def test_connection_goes_to_the_checked_address_not_the_name(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
):
    """With loopback treated as public for this test, a made-up name that only our fake
    resolver knows is reached: the transport connected to the IP it checked."""
    real_problem = guard_mod.address_problem

    def lenient(address: str) -> str | None:
        return None if address == "127.0.0.1" else real_problem(address)

    monkeypatch.setattr(guard_mod, "address_problem", lenient)
    calls = fake_dns(monkeypatch, {"only-in-fake-dns.example": [["127.0.0.1"]]})
    connected: list[str] = []
    real_connect = AsyncioBackend.connect_tcp

    async def spy(self: Any, host: str, port: int, **kwargs: Any) -> Any:
        connected.append(host)
        return await real_connect(self, host, port, **kwargs)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", spy)
    # robots=None: one request only, so the connections and DNS look-ups counted are its own.
    f = get(f"http://only-in-fake-dns.example:{listener.port}/x", cfg(), robots=None)
    record("ssrf", "connect to the checked IP, not the name", f.status)
    assert f.status == "ok", f.error_message
    assert connected == ["127.0.0.1"]
    assert calls == ["only-in-fake-dns.example"] * 2  # pre-check and connect time
    assert listener.hosts == [f"only-in-fake-dns.example:{listener.port}"]


def test_the_robots_txt_request_is_guarded_too(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
):
    """robots.txt is fetched through the same guard: a name rebound to loopback is refused at
    the robots.txt request's connect time, and the page is then not requested at all."""
    calls = fake_dns(monkeypatch, {"rebind.example.net": [[PUBLIC_IP], ["127.0.0.1"]]})
    f = get(f"http://rebind.example.net:{listener.port}/steal", cfg())
    record("ssrf", "DNS rebinding on the robots.txt request", f.status)
    assert f.status == "blocked", (f.status, f.error_message)
    assert f.error_message and "robots.txt" in f.error_message
    assert "loopback address 127.0.0.1" in f.error_message
    assert f.attempts == 0  # the page itself was never tried
    assert listener.accepted == 0
    assert calls == ["rebind.example.net", "rebind.example.net"]  # robots.txt: check, connect


def test_dns_failure_at_connect_time_is_an_error_value(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []

    async def flaky(self: OutboundGuard, host: str, port: int) -> list[str]:
        calls.append(host)
        if len(calls) % 2 == 1:
            return [PUBLIC_IP]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(OutboundGuard, "resolve", flaky)
    f = get("http://gone.example.net/", cfg(retries=1))
    record("ssrf", "DNS fails between check and connect", f.status)
    assert f.status == "error" and f.error_message and "DNS" in f.error_message


# -- redirects --------------------------------------------------------------------------------


def _redirect(base: str, target: str) -> str:
    return f"{base}/_fault/redirect?to={quote(target, safe='')}"


def test_redirect_to_a_non_listed_local_port_is_blocked(sandbox, listener: Listener):
    allow = (sandbox.base_url.split("://")[1],)
    target = f"http://127.0.0.1:{listener.port}/admin"
    f = get(_redirect(sandbox.base_url, target), cfg(allow_hosts=allow))
    record("ssrf", "redirect to a loopback port not allow-listed", f.status)
    assert f.status == "blocked" and f.final_url == target
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://rebind.example.net/",
        "file:///etc/shadow",
        "gopher://127.0.0.1:25/",
    ],
)
def test_redirects_to_forbidden_targets_are_blocked(
    target: str, sandbox, monkeypatch: pytest.MonkeyPatch
):
    fake_dns(
        monkeypatch,
        {
            "metadata.google.internal": [["169.254.169.254"]],
            "rebind.example.net": [[PUBLIC_IP], ["127.0.0.1"]],
        },
    )
    allow = (sandbox.base_url.split("://")[1],)
    f = get(_redirect(sandbox.base_url, target), cfg(allow_hosts=allow))
    record("ssrf", "redirect to a forbidden target", f.status)
    assert f.status == "blocked", (f.status, f.error_message)
    assert f.attempts == 1


def test_redirect_chain_through_allowed_hosts_then_out_is_blocked(sandbox, listener: Listener):
    allow = (sandbox.base_url.split("://")[1],)
    url = f"http://127.0.0.1:{listener.port}/x"
    for _ in range(3):  # three allowed hops, then the forbidden one
        url = _redirect(sandbox.base_url, url)
    f = get(url, cfg(allow_hosts=allow, max_redirects=5))
    record("ssrf", "redirect chain leaving the allow-list", f.status)
    assert f.status == "blocked" and listener.accepted == 0


# -- the allow-list ---------------------------------------------------------------------------


def test_allow_list_admits_the_sandbox_only(sandbox, listener: Listener):
    host_port = sandbox.base_url.split("://")[1]
    ok = get(f"{sandbox.base_url}/_fault/echo-headers", cfg(allow_hosts=(host_port,)))
    by_host = get(f"{sandbox.base_url}/_fault/echo-headers", cfg(allow_hosts=("127.0.0.1",)))
    other_port = get(f"http://127.0.0.1:{listener.port}/", cfg(allow_hosts=(host_port,)))
    default = get(f"{sandbox.base_url}/_fault/echo-headers", cfg())
    for f in (ok, by_host, other_port, default):
        record("ssrf", "allow-list: sandbox admitted, nothing else", f.status)
    assert ok.status == "ok" and by_host.status == "ok"
    assert other_port.status == "blocked" and default.status == "blocked"
    assert listener.accepted == 0


def test_allow_listed_ipv6_loopback():
    try:
        server = Listener("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        f = get(f"http://[::1]:{server.port}/", cfg(allow_hosts=(f"[::1]:{server.port}",)))
        g = get(f"http://[::1]:{server.port}/", cfg())
    finally:
        server.close()
    record("ssrf", "allow-list: [v6]:port entry", f.status)
    assert f.status == "ok" and g.status == "blocked"


# -- the downloader records refusals as rows --------------------------------------------------


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_download_stage_records_blocked_rows(sandbox, tmp_path, monkeypatch):
    from tv100.sandbox.server import Response
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import read_table
    from tv100.tasks.collect.config import DownloadConfig
    from tv100.tasks.collect.download import download_hits

    png = _png()
    sandbox.register("/_ssrf_img/", lambda req: Response(200, {"Content-Type": "image/png"}, png))
    fake_dns(monkeypatch, {"evil.example.net": [["10.9.8.7"]]})
    base = sandbox.base_url
    urls = [
        f"{base}/_ssrf_img/ok.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.jpg",
        "http://evil.example.net/x.jpg",
        _redirect(base, "http://10.0.0.1/x.jpg"),
        "file:///etc/passwd",
    ]
    hits = pa.table(
        {
            "series_id": ["tt0000001"] * len(urls),
            "engine": ["bing"] * len(urls),
            "rank": list(range(1, len(urls) + 1)),
            "image_url": urls,
        }
    )
    root = DataRoot(str(tmp_path / "data")).ensure()
    config = DownloadConfig(
        processes=1, http=cfg(allow_hosts=(base.split("://")[1],), retries=0)
    )
    summary = download_hits(hits, root, config)
    rows = {r["url"]: r for r in read_table(root, "images").to_pylist()}
    for url in urls:
        record("ssrf", "untrusted image URL in the download stage", rows[url]["status"])
    assert rows[urls[0]]["status"] == "ok"
    assert all(rows[u]["status"] == "blocked" for u in urls[1:]), summary
    assert all(rows[u]["path"] is None for u in urls[1:])
