"""Keeping a task's result out of Prefect's cache when it holds failures.

A cached web fetch replays its result for the cache's lifetime. When that result holds
failed requests (an engine that was down, a page that timed out), the cache would replay the
failure too: the next run would send no request and still have nothing. A task whose result
holds failures calls `refuse_cache`: this run uses the result like any other, and the next
run computes it again.

Prefect writes a task's cache record when the task's transaction commits, after the task
returns; `refuse_cache` turns that write off (``write_on_commit``), as Prefect's own engine
does for a task that ends failed. A cache record written by an earlier, successful run is
left as it was (a ``refresh`` run that meets failures does not overwrite a good record).
"""

from __future__ import annotations

import logging

from prefect.context import TaskRunContext
from prefect.transactions import get_transaction

log = logging.getLogger("tv100.cache")


def refuse_cache(reason: str) -> bool:
    """Keep the running task's result out of its cache; the next run computes it again.

    Call it from inside a ``@task`` whose result should not be replayed. Outside a task run
    (the plain function called directly) there is no cache and it does nothing.

    Args:
        reason: why, for the debug log (e.g. ``"3 search requests failed"``).

    Returns:
        Whether a task's cache write was turned off.
    """
    if TaskRunContext.get() is None:
        return False
    txn = get_transaction()
    if txn is None:
        return False
    txn.write_on_commit = False
    log.debug("not cached (%s): %s", reason, txn.key)
    return True
