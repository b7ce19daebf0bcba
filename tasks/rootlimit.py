"""One run per data root across machines: a Prefect global concurrency limit keyed by the root.

The file lock of `tv100.storage.lock` serialises runs on one machine (or on a filesystem
whose locks every machine sees). Deployment runs started by workers on several machines, and
CLI runs reporting to the same Prefect server, are serialised by the server too: every
outermost `hold_root` also takes the one slot of the global concurrency limit
``tv100-data-root-<hash of the root's URL>`` (created with limit 1 when missing), after the
file lock. A second run waits for the slot, logging once whom it waits for; with
``--no-wait`` it refuses in one line (`RootBusyError`). The slot is a lease the holder renews
while it runs: a holder killed outright frees it when the lease runs out (`LEASE_S`).

When it applies (``TV100_ROOT_LIMIT``): ``auto`` (the default) whenever a Prefect API URL is
configured (``PREFECT_API_URL``: a `tv100 server`, or any Prefect server), ``on`` likewise
but an error without one, ``off`` never (the file lock alone: runs without a server, and the
test suite, whose kill tests would otherwise wait out the leases of the runs they kill).
Installed by importing `tv100.tasks` (`install`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tv100.storage.lock import RootBusyError, add_guard
from tv100.storage.root import DataRoot

#: ``auto``, ``on`` or ``off`` (see the module docstring).
MODE_ENV = "TV100_ROOT_LIMIT"
MODES = ("auto", "on", "off")
LIMIT_PREFIX = "tv100-data-root-"
#: How long the server keeps a slot whose holder stopped renewing it (renewed while held).
LEASE_S = 60.0
#: With ``--no-wait``: how long to try for the slot before refusing.
NO_WAIT_S = 2.0

log = logging.getLogger("tv100.lock")


def limit_name(root: DataRoot) -> str:
    """The global concurrency limit of `root`: ``tv100-data-root-`` and 16 hex digits."""
    return LIMIT_PREFIX + hashlib.sha256(root.url.encode()).hexdigest()[:16]


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV}={mode!r}; expected one of {', '.join(MODES)}")
    return mode


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def applies() -> bool:
    """Whether holds take the Prefect limit now (see the module docstring)."""
    mode = _mode()
    if mode == "off":
        return False
    if _api_url():
        return True
    if mode == "on":
        raise ValueError(f"{MODE_ENV}=on needs a Prefect server: set PREFECT_API_URL")
    return False


def _ensure_limit(name: str) -> None:
    """Create the limit with one slot when the server has none of that name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:  # another run created it first
            pass


def _busy(root: DataRoot, name: str, waited_s: float | None) -> RootBusyError:
    who = f"another run (Prefect global concurrency limit {name!r})"
    if waited_s is None:
        return RootBusyError(f"data root {root.url!r} is in use by {who}; rerun when it has "
                             "finished, or without --no-wait to wait for it")
    return RootBusyError(f"data root {root.url!r} is still in use by {who} after waiting "
                         f"{waited_s:g} s; rerun when it has finished")


def _acquire(stack: ExitStack, name: str, timeout_s: float | None) -> bool:
    """Enter the limit's context on `stack`; False when `timeout_s` ran out first."""
    from prefect.concurrency.sync import concurrency

    try:
        stack.enter_context(concurrency(
            name, occupy=1, timeout_seconds=timeout_s, lease_duration=LEASE_S, strict=True,
            raise_on_lease_renewal_failure=False,
        ))
    except TimeoutError:
        return False
    return True


@contextmanager
def prefect_root_limit(root: DataRoot, what: str, wait: bool,
                       timeout_s: float | None) -> Iterator[None]:
    """Hold the root's global concurrency slot for the block when `applies` (a `Guard`).

    Raises:
        RootBusyError: another run holds the slot (``wait=False``, or after `timeout_s`).
    """
    if not applies():
        yield
        return
    name = limit_name(root)
    _ensure_limit(name)
    with ExitStack() as stack:
        if not wait:
            if not _acquire(stack, name, NO_WAIT_S):
                raise _busy(root, name, None)
        elif not _acquire(stack, name, min(NO_WAIT_S, timeout_s or NO_WAIT_S)):
            log.warning("data root %r is in use by another run (Prefect global concurrency "
                        "limit %r); waiting for it to finish", root.url, name)
            begun = time.monotonic()
            left = None if timeout_s is None else max(0.0, timeout_s - NO_WAIT_S)
            if not _acquire(stack, name, left):
                raise _busy(root, name, round(time.monotonic() - begun + NO_WAIT_S, 1))
        yield


def install() -> None:
    """Make every data-root hold take the Prefect limit too (`tv100.storage.lock.add_guard`)."""
    add_guard(prefect_root_limit)
