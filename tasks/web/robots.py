"""robots.txt, honoured: read once per origin, cached, matched on the client's product token.

`HttpClient` and `FileDownloader` ask a `RobotsCache` before every hop of a request
(redirects included, `check_robots`): a URL its origin's robots.txt disallows is never
requested and ends as the `Fetched` status ``robots_disallowed`` (`ROBOTS_DISALLOWED`). The
rules follow RFC 9309 (the Robots Exclusion Protocol), parsed by protego:

- **Once per origin** (scheme, host and port, §2.3), shared by concurrent requests, cached
  for `RobotsPolicy.ttl_s` (24 h: a cached copy "SHOULD NOT" be used longer, §2.4); the
  robots.txt request itself goes through the same address guard and per-host limits.
- **Matched on the product token** (``tv100`` of ``tv100/0.3 (+https://…)``), case-insensitive
  (§2.2.1), not on the whole User-Agent header: a group for "crawler" must not catch us.
- **Status of the robots.txt answer** (§2.3.1):
  2xx: parsed (the first `RobotsPolicy.max_bytes` only, §2.5: at least 500 KiB).
  4xx, 401 and 403 included: "unavailable", every path allowed (§2.3.1.3: "the crawler MAY
  access any resources on the server"); so is a redirect chain longer than the client's
  ``max_redirects`` (§2.3.1.2).
  5xx, 429, a timeout or a network error: "unreachable", every path disallowed (§2.3.1.4:
  the crawler "MUST assume complete disallow") for `RobotsPolicy.unreachable_ttl_s`, then
  robots.txt is asked for again. Google documents the same for 5xx and treats 429 as a 5xx
  ("Google treats 429 as a server error"; developers.google.com, "How Google interprets the
  robots.txt specification"), which is followed here: 429 is the server asking us to back off.
  A URL refused so ends as ``robots_disallowed`` when the server answered robots.txt with an
  error, and with the robots.txt request's own status (``timeout``, ``error``, ``blocked``)
  when it gave no answer at all: a host that is down is reported as down, not as a rule.
- **Crawl-delay** (and ``Request-rate``, non-standard but common) becomes the host's minimum
  interval between requests (`tv100.tasks.web.politeness.HostLimiter.set_min_interval`). A
  delay above `RobotsPolicy.max_crawl_delay_s` cannot be honoured within a run: the origin's
  URLs are then `robots_disallowed` too, with that reason.

The cache lives in memory, one per `HttpClient` (one per downloader process; a
`FileDownloader` reads robots.txt through an `HttpClient` of its own).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, cast

import httpx
from protego import Protego

from tv100.tasks.web.config import Fetched, Status
from tv100.tasks.web.errors import FetchFailure
from tv100.tasks.web.guard import default_port, host_of
from tv100.tasks.web.politeness import HostLimiter

ROBOTS_DISALLOWED: Final = "robots_disallowed"
"""The `Fetched.status` (and row status) of a URL that robots.txt keeps us from fetching."""

_TOKEN = re.compile(r"[^\s/;()]+")

State = Literal["parsed", "unavailable", "unreachable"]
"""How an origin's robots.txt was found: read, absent (allow all), or not answered (disallow)."""

_NO_ANSWER = frozenset({"timeout", "error", "blocked"})
"""`Fetched` statuses of a robots.txt request that got no HTTP answer at all."""


class Refusal(NamedTuple):
    """Why a URL is not fetched: the `Fetched.status` it ends as, and its `error_message`."""

    status: str
    message: str


@dataclass(frozen=True)
class RobotsPolicy:
    """How robots.txt files are read and kept; validated on construction.

    Attributes:
        ttl_s: seconds a robots.txt (or its absence) is used before it is asked for again.
        unreachable_ttl_s: seconds an origin whose robots.txt could not be read (5xx, 429,
            timeout, network error) stays wholly disallowed before robots.txt is tried again.
        max_bytes: bytes of a robots.txt parsed; the rest is ignored (RFC 9309 §2.5).
        max_crawl_delay_s: the longest Crawl-delay honoured; an origin asking for more is
            disallowed (waiting that long per request would stall the run).
    """

    ttl_s: float = 86_400.0
    unreachable_ttl_s: float = 600.0
    max_bytes: int = 500 * 1024
    max_crawl_delay_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("ttl_s", "unreachable_ttl_s", "max_crawl_delay_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= 30 * 86_400
            ):
                raise ValueError(
                    f"RobotsPolicy.{name} must be a number of seconds in 0..2592000, got {value!r}"
                )
        value = self.max_bytes
        if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 1 << 26:
            raise ValueError(
                f"RobotsPolicy.max_bytes must be an integer in 1024..{1 << 26}, got {value!r}"
            )


ROBOTS = RobotsPolicy()
"""The default: robots.txt honoured, cached a day, an unreachable one retried after 10 min."""


def product_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched on (RFC 9309 §2.2.1), lower case.

    ``tv100/0.3 (+https://…; dataset research crawler)`` → ``tv100``.
    """
    match = _TOKEN.match(user_agent.strip())
    if match is None:
        raise ValueError(f"user agent {user_agent!r} has no product token")
    return match.group(0).lower()


def origin_of(url: httpx.URL) -> str:
    """``scheme://host:port`` of a URL (the port always written): a robots.txt's scope."""
    return f"{url.scheme}://{host_of(url)}:{default_port(url)}"


def robots_url(url: httpx.URL) -> str:
    """The robots.txt URL of the origin of `url` (userinfo, query and fragment dropped)."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}/robots.txt"


@dataclass(frozen=True)
class RobotsRules:
    """What one origin's robots.txt says for one product token.

    Attributes:
        origin: ``scheme://host:port``.
        token: the product token matched.
        state: ``parsed``, ``unavailable`` (allow all) or ``unreachable`` (disallow all).
        detail: how the robots.txt request ended (``HTTP 404``, ``timeout: …``), for messages.
        expires: `RobotsCache` clock time after which robots.txt is asked for again.
        parser: the parsed file (``parsed`` only).
        no_answer: for ``unreachable`` without any HTTP answer, the robots.txt request's
            status (``timeout``, ``error``, ``blocked``); refused URLs end with it.
    """

    origin: str
    token: str
    state: State
    detail: str
    expires: float
    parser: Protego | None = None
    no_answer: Status | None = None

    @property
    def crawl_delay(self) -> float | None:
        """Seconds between two requests the file asks of us (Crawl-delay or Request-rate)."""
        if self.parser is None:
            return None
        delays = []
        delay = self.parser.crawl_delay(self.token)
        if delay is not None:
            delays.append(float(delay))
        rate = self.parser.request_rate(self.token)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None

    def refusal(self, url: str, policy: RobotsPolicy) -> Refusal | None:
        """Why `url` must not be fetched, or None when it may be."""
        where = f"robots.txt of {self.origin}"
        if self.state == "unreachable":
            if self.no_answer is not None:
                return Refusal(
                    self.no_answer,
                    f"{where} could not be read ({self.detail}): not fetched (RFC 9309 2.3.1.4)",
                )
            return Refusal(
                ROBOTS_DISALLOWED,
                f"{where} answered {self.detail}: every path is disallowed for now "
                f"(RFC 9309 2.3.1.4)",
            )
        if self.parser is None:
            return None
        if not self.parser.can_fetch(url, self.token):
            return Refusal(ROBOTS_DISALLOWED, f"{where} disallows this URL for {self.token!r}")
        delay = self.crawl_delay
        if delay is not None and delay > policy.max_crawl_delay_s:
            return Refusal(
                ROBOTS_DISALLOWED,
                f"{where} asks for {delay:g} s between requests (Crawl-delay), more than "
                f"max_crawl_delay_s={policy.max_crawl_delay_s:g}: not fetched",
            )
        return None


def rules_from_fetch(
    origin: str, token: str, fetched: Fetched, policy: RobotsPolicy, now: float
) -> RobotsRules:
    """The rules an origin's robots.txt answer sets (see the module docstring for the statuses).

    Args:
        origin: ``scheme://host:port``.
        token: the product token to match.
        fetched: the outcome of GET /robots.txt (redirects followed).
        policy: the TTLs.
        now: the cache clock's current time.

    Returns:
        ``parsed`` rules for a 2xx, ``unavailable`` for a 4xx (but 429) or a redirect chain
        too long, else ``unreachable``.
    """
    status = fetched.http_status
    if fetched.status == "ok":
        text = fetched.content.decode("utf-8", errors="replace").lstrip("\ufeff")
        try:
            parser = Protego.parse(text)
        except Exception as err:  # protego is lenient; a crash must not open the site
            detail = f"unparseable robots.txt: {type(err).__name__}"
            return RobotsRules(origin, token, "unreachable", detail, now + policy.unreachable_ttl_s)
        return RobotsRules(origin, token, "parsed", f"HTTP {status}", now + policy.ttl_s, parser)
    detail = fetched.error_message or fetched.status
    if fetched.status == "http_error" and status is not None:
        if 300 <= status < 400 or (400 <= status < 500 and status != 429):
            return RobotsRules(origin, token, "unavailable", detail, now + policy.ttl_s)
    no_answer = fetched.status if fetched.status in _NO_ANSWER else None
    expires = now + policy.unreachable_ttl_s
    return RobotsRules(origin, token, "unreachable", detail, expires, no_answer=no_answer)


RobotsFetch = Callable[[str], Awaitable[Fetched]]
"""GETs one robots.txt URL (without asking robots.txt first) and returns its outcome."""


class RobotsCache:
    """The robots.txt rules of every origin one client talks to; create it in the event loop.

    Args:
        policy: TTLs and limits.
        user_agent: the client's User-Agent header (its product token is matched).
        fetch: how robots.txt is requested (the client's own GET, robots check off).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        policy: RobotsPolicy,
        user_agent: str,
        fetch: RobotsFetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.token = product_token(user_agent)
        self._fetch = fetch
        self._clock = clock
        self._rules: dict[str, RobotsRules] = {}
        self._loading: dict[str, asyncio.Future[RobotsRules]] = {}
        self.fetches = 0
        """robots.txt requests made so far (one per origin and TTL)."""

    async def rules(self, url: httpx.URL) -> RobotsRules:
        """The rules for `url`'s origin: cached, or read now (once, however many ask at once)."""
        origin = origin_of(url)
        cached = self._rules.get(origin)
        if cached is not None and self._clock() < cached.expires:
            return cached
        loading = self._loading.get(origin)
        if loading is None:
            loading = asyncio.ensure_future(self._load(origin, robots_url(url)))
            self._loading[origin] = loading
            loading.add_done_callback(lambda _: self._loading.pop(origin, None))
        # Shielded: a caller cancelled (its own timeout) does not cancel the others' read.
        return await asyncio.shield(loading)

    async def refusal(self, url: httpx.URL) -> tuple[RobotsRules, Refusal | None]:
        """The origin's rules and why `url` must not be fetched (None when it may be)."""
        rules = await self.rules(url)
        return rules, rules.refusal(str(url), self.policy)

    async def _load(self, origin: str, url: str) -> RobotsRules:
        self.fetches += 1
        fetched = await self._fetch(url)
        rules = rules_from_fetch(origin, self.token, fetched, self.policy, self._clock())
        self._rules[origin] = rules
        return rules

    async def aclose(self) -> None:
        """Cancel robots.txt reads still running (the client is closing)."""
        pending = list(self._loading.values())
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class RobotsRefused(FetchFailure):
    """A URL robots.txt keeps us from (`check_robots`): decided before any request, final.

    Attributes:
        transient: the origin's robots.txt could not be read (5xx, 429, a timeout, a network
            error), so a later run may be let in; False when a rule disallows the URL (or
            robots.txt's address is blocked). Never retried within the run: the origin stays
            refused for `RobotsPolicy.unreachable_ttl_s`.
    """

    def __init__(self, refusal: Refusal, *, transient: bool) -> None:
        super().__init__(cast(Status, refusal.status), refusal.message, local=True)
        self.transient = transient


async def check_robots(
    robots: RobotsCache, limiter: HostLimiter, url: httpx.URL, host: str
) -> None:
    """Refuse (nothing sent) a URL its origin's robots.txt disallows or could not be read.

    Asked before every hop of a request (`tv100.tasks.web.client.HttpClient`,
    `tv100.tasks.web.stream.FileDownloader`); also applies the robots.txt's Crawl-delay to
    the host's rate.

    Args:
        robots: the client's robots.txt rules.
        limiter: the client's per-host limits (its rate for `host` is slowed, never sped up).
        url: the hop about to be requested.
        host: its host name, as the limiter knows it.

    Raises:
        RobotsRefused: (a local `FetchFailure`: no attempt counted) with the `Refusal`'s
            status and message.
    """
    rules, refusal = await robots.refusal(url)
    if refusal is not None:
        unreadable = rules.state == "unreachable" and rules.no_answer != "blocked"
        raise RobotsRefused(refusal, transient=unreadable)
    limiter.set_min_interval(host, rules.crawl_delay)
