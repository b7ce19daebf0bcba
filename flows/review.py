"""A build's pause for human review: serve the review page, publish its URL, wait.

`review_pause` runs inside a flow run (the build's, with ``review=True``, after the rank
stage has selected the classes): it starts the review page on 127.0.0.1
(`tv100.tasks.review.server.ReviewServer`), publishes its URL as a Prefect link artifact
(key ``review``; the flow run's Artifacts tab in the UI), and pauses the flow run with
Prefect's ``pause_flow_run(wait_for_input=ReviewDone)``: the run shows as Paused in the UI.
It resumes when the reviewer presses "Done" on the page (which resumes the run with the
page's `ReviewDone` input) or, after `timeout_s`, on its own (a timer resumes it with
``timed_out=True``: Prefect's own pause timeout would fail the run instead). Decisions are
durable as they are made (`tv100.tasks.review.decisions`); what the build does next (rank
again, so the selection honours them, then train) is the caller's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

from tv100.storage.root import DataRoot
from tv100.tasks.review.decisions import REVIEW_TIMEOUT_S, all_reviews

#: The pause waits this much longer than the timer that resumes it, so Prefect's own pause
#: timeout (which fails the run) never fires first.
_GRACE_S = 120
#: Seconds between the paused run's checks of its state (Prefect's default is 10).
POLL_S = 2
ARTIFACT_KEY = "review"


class ReviewDone(RunInput):
    """What resumes a paused build: the reviewer pressed "Done", or the timer ran out."""

    reviewer: str = ""
    timed_out: bool = False


@dataclass(frozen=True)
class ReviewOutcome:
    """How a review pause ended.

    Attributes:
        url: the review page's URL (stopped since).
        timed_out: the timeout resumed the run, not the reviewer.
        reviewer: who pressed "Done" ("" on a timeout).
        decisions: rows the `reviews` table gained during the pause.
    """

    url: str
    timed_out: bool
    reviewer: str
    decisions: int


def review_pause(
    root: DataRoot, timeout_s: float = REVIEW_TIMEOUT_S, port: int = 0
) -> ReviewOutcome:
    """Pause the current flow run for review of `root`'s kept classes (module docstring).

    Raises:
        RuntimeError: not called inside a flow run.
        ValueError: `timeout_s` not positive.
    """
    from tv100.tasks.review.server import ReviewServer

    if not timeout_s > 0:
        raise ValueError(f"review timeout {timeout_s!r}; expected a positive number of seconds")
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("a review pause needs a flow run; run it inside a flow")
    run_id = context.flow_run.id
    logger = get_run_logger()
    before = all_reviews(root).num_rows
    resumed = threading.Event()

    def resume(reviewer: str = "", timed_out: bool = False) -> None:
        if resumed.is_set():
            return
        resumed.set()
        resume_flow_run(run_id, run_input=ReviewDone(
            reviewer=reviewer, timed_out=timed_out).model_dump())

    server = ReviewServer(root, port=port, on_done=lambda: resume(server.reviewer))
    timer = threading.Timer(timeout_s, resume, kwargs={"timed_out": True})
    timer.daemon = True
    with server:
        url = server.url
        create_link_artifact(
            link=url, link_text="Review the kept classes", key=ARTIFACT_KEY,
            description=f"Review page of {root.url}; the build waits up to "
                        f"{timeout_s:.0f} s for Done.",
        )
        logger.info("review: waiting for Done at %s (up to %.0f s)", url, timeout_s)
        timer.start()
        try:
            done = pause_flow_run(wait_for_input=ReviewDone, timeout=int(timeout_s) + _GRACE_S,
                                  poll_interval=POLL_S)
        finally:
            timer.cancel()
    decisions = all_reviews(root).num_rows - before
    outcome = ReviewOutcome(url, bool(done and done.timed_out),
                            done.reviewer if done else "", decisions)
    logger.info("review: %s; %d decisions", "timed out" if outcome.timed_out else
                f"done by {outcome.reviewer or 'the reviewer'}", decisions)
    return outcome
