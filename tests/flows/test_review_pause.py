"""flows/review.py: a flow run paused for review with Prefect's pause_flow_run(wait_for_input),
its review page published as a link artifact, resumed by the page's Done or by the timeout.

The flow runs in a thread against the session's Prefect API; the test plays the reviewer:
it reads the page's URL from the run's ``review`` artifact (as a user would in the UI),
records decisions through the page's API and presses Done.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from tests.cli.test_review import make_root
from tv100.flows.review import ARTIFACT_KEY, ReviewOutcome, review_pause
from tv100.storage.root import DataRoot
from tv100.tasks.review.decisions import latest_reviews

pytestmark = pytest.mark.timeout(600)


@flow(name="review-pause-test")
def paused(data: str, timeout_s: float) -> ReviewOutcome:
    return review_pause(DataRoot(data), timeout_s)


def _run_in_thread(data: str, timeout_s: float) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = paused(data, timeout_s)
        except BaseException as err:  # noqa: BLE001 (handed to the test)
            out["error"] = err

    # The harness's API settings live in a context variable: the thread runs in a copy.
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(target,), daemon=True)
    thread.start()
    return thread, out


def _review_links(seen: set[str], timeout: float = 180.0) -> str:
    """The newest `review` artifact's link that is not in `seen` (the run's page)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            arts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
        for a in arts:
            link = str(a.data).split("(", 1)[-1].rstrip(")") if "(" in str(a.data) else a.data
            if link not in seen and "token=" in str(link):
                return str(link)
        time.sleep(0.5)
    raise AssertionError("the paused run never published its review page")


def test_a_paused_build_resumes_when_the_reviewer_presses_done(prefect_harness, tmp_path):
    data = str(tmp_path / "data")
    root = make_root(tmp_path / "data")
    thread, out = _run_in_thread(data, timeout_s=300)
    url = _review_links(set())
    base, token = url.split("/?token=")
    headers = {"X-Review-Token": token}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        classes = client.get("/api/classes").json()
        first = classes["classes"][0]["images"][0]["image_id"] if isinstance(classes, dict) \
            else classes[0]["images"][0]["image_id"]
        assert client.post("/api/decide", json={"image_ids": [first], "decision": "reject"}
                           ).status_code == 200
        assert client.post("/api/done", json={}).status_code == 200
    thread.join(timeout=240)
    assert not thread.is_alive(), "the run did not resume after Done"
    assert "error" not in out, out.get("error")
    outcome = out["result"]
    assert not outcome.timed_out and outcome.decisions == 1 and outcome.url == url
    assert latest_reviews(root).column("image_id").to_pylist() == [first]
    # the page is gone once the run goes on
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=5)


def test_a_paused_build_goes_on_after_the_timeout(prefect_harness, tmp_path):
    data = str(tmp_path / "data")
    make_root(tmp_path / "data")
    thread, out = _run_in_thread(data, timeout_s=3)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the run did not resume after its timeout"
    assert "error" not in out, out.get("error")
    assert out["result"].timed_out and out["result"].decisions == 0


def test_a_bad_timeout_is_refused_before_pausing(prefect_harness, tmp_path):
    make_root(tmp_path / "data")
    with pytest.raises(ValueError, match="review timeout"):
        paused(str(tmp_path / "data"), 0)
