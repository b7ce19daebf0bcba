"""Progress of long stages (`tv100.tasks.progress`): the terminal display, the summary line,
the Prefect progress artifact, and all of it from worker pools and plain function calls.

No assertion here depends on how fast the machine is: time comes from a clock the test
moves by hand, and the display is drawn on demand into a string.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Any

import pytest

from tv100.tasks import progress as pg


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _console() -> Any:
    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)


def _drawn(display: pg.Display, console: Any) -> str:
    display.refresh()
    return str(console.file.getvalue())


def _summaries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tv100.progress"]


# --- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("hash", 400, 400, "images", 16.0), "hash: 400/400 images in 16 s (25.0 images/s)"),
        (("download", 400, 400, "images", 12.0, 100),
         "download: 400/400 images in 12 s (25.0 images/s; 100 done before)"),
        (("fine-tune", 30, 30, "steps", 90.0, 0, "epoch 3/3 loss 0.5123"),
         "fine-tune: 30/30 steps in 1 min 30 s (3.0 s each); epoch 3/3 loss 0.5123"),
        (("embed", 7, 10, "images", 0.5), "embed: 7/10 images in 0.5 s (14.0 images/s)"),
        (("embed", 10, 10, "images", 0.0, 10), "embed: 10/10 images, all done before"),
        (("pre-train", 400, 400, "steps", 3725.0), "pre-train: 400/400 steps in 1 h 02 min "
         "(9.3 s each)"),
    ],
    ids=["fast", "resumed", "slow-with-note", "partial", "nothing-new", "hours"],
)
def test_summary_line(args: tuple[Any, ...], line: str):
    assert pg.summary_line(*args) == line


def test_artifact_keys_are_what_prefect_accepts():
    assert pg.artifact_key("collect-search", "google_basic", "progress") == (
        "collect-search-google-basic-progress"
    )
    assert pg.artifact_key("Rank", "ViT-B/16@openai") == "rank-vit-b-16-openai"


# --- the terminal display ----------------------------------------------------------------------


def test_display_shows_counts_rate_eta_and_note_then_clears(caplog):
    console = _console()
    display = pg.Display(console)
    caplog.set_level(logging.INFO, logger="tv100")
    with pg.Tracker("hash", 10, "images", display=display) as t:
        assert display.live
        for _ in range(3):
            t.advance()
        t.set_note("loss 0.250")
        text = _drawn(display, console)
        assert "hash" in text and "3/10" in text and "images" in text
        assert "eta" in text and "loss 0.250" in text
        t(10)
    assert not display.live  # the last row gone: the display stops (and clears)
    [record] = _summaries(caplog)
    assert record.getMessage().startswith("hash: 10/10 images in ")
    assert record.getMessage().endswith("; loss 0.250")
    assert getattr(record, pg.CONSOLE_ATTR) is True  # printed without --verbose


def test_rows_of_concurrent_stages_share_one_display():
    console = _console()
    display = pg.Display(console)
    google = pg.Tracker("search google", 8, "series", display=display)
    bing = pg.Tracker("search bing", 8, "series", display=display)
    google(5)
    bing(2)
    text = _drawn(display, console)
    assert "search google" in text and "5/8" in text
    assert "search bing" in text and "2/8" in text
    google.close()
    assert display.live
    bing.close()
    assert not display.live


class _ClosedFile(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("the terminal went away")


def test_a_display_that_cannot_draw_is_one_warning_and_the_stage_goes_on(caplog):
    from rich.console import Console

    display = pg.Display(Console(file=_ClosedFile(), force_terminal=True, width=80))
    caplog.set_level(logging.INFO, logger="tv100")
    with pg.Tracker("hash", 4, "images", display=display) as t:
        for _ in range(4):
            t.advance()
            display.refresh()
    with pg.Tracker("quality", 4, "images", display=display) as q:
        q(4)
    assert not display.live
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the terminal went away" in warnings[0].getMessage()
    assert t.summary is not None and t.summary.startswith("hash: 4/4 images")
    assert q.summary is not None


def test_a_failed_stage_ends_without_a_summary(caplog):
    display = pg.Display(_console())
    caplog.set_level(logging.INFO, logger="tv100")
    with pytest.raises(RuntimeError), pg.Tracker("quality", 5, "images", display=display) as t:
        t(2)
        raise RuntimeError("boom")
    assert not display.live
    assert _summaries(caplog) == []
    assert t.summary is None


def test_nothing_to_do_shows_nothing(caplog):
    display = pg.Display(_console())
    caplog.set_level(logging.INFO, logger="tv100")
    with pg.Tracker("embed", 10, "images", done=10, display=display):
        assert not display.live
    with pg.Tracker("search", 0, "series", display=display):
        assert not display.live
    # The total known only at the first call, and all of it done before: the row goes.
    with pg.Tracker("download", None, "images", display=display) as t:
        assert display.live
        t(7, 7)
        assert not display.live
    assert _summaries(caplog) == []


def test_the_first_call_gives_the_total_and_what_was_done_before(caplog):
    clock = Clock()
    display = pg.Display(_console())
    caplog.set_level(logging.INFO, logger="tv100")
    with pg.Tracker("download", None, "images", display=display, clock=clock) as t:
        clock.now += 50  # planning: not part of the download's time
        t(100, 400)
        clock.now += 10
        t(400, 400)
    assert t.summary == "download: 400/400 images in 10 s (30.0 images/s; 100 done before)"


def test_not_a_terminal_no_display_but_the_summary(monkeypatch, caplog):
    monkeypatch.setenv(pg.DISPLAY_ENV, "0")
    caplog.set_level(logging.INFO, logger="tv100")
    with pg.track("hash", 3, "images") as t:
        for _ in range(3):
            t.advance()
    assert not pg._DISPLAY.live
    assert [r.getMessage().split(" in ")[0] for r in _summaries(caplog)] == ["hash: 3/3 images"]


def test_the_display_env_override(monkeypatch):
    monkeypatch.setenv(pg.DISPLAY_ENV, "1")
    assert pg.display_wanted()
    monkeypatch.setenv(pg.DISPLAY_ENV, "0")
    assert not pg.display_wanted()


def _wanted_here(_: int) -> bool:
    return pg.display_wanted()


def test_worker_processes_never_draw(monkeypatch):
    from tv100.tasks.parallel import map_ordered

    monkeypatch.setenv(pg.DISPLAY_ENV, "1")
    assert pg.display_wanted()
    assert map_ordered(_wanted_here, [0, 1], workers=2, chunksize=1) == [False, False]


# --- worker pools and plain function calls -------------------------------------------------------


def _images(folder: Any, n: int) -> list[tuple[str, str]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        out.append((f"img{i}", str(path)))
    return out


def test_a_pool_stage_counts_every_result_in_the_parent(tmp_path, monkeypatch, caplog):
    """Hashing on two worker processes, outside any Prefect run: each result moves the
    count (in this process), and the stage ends with its summary; no artifact, no error."""
    from tv100.tasks.clean.config import HashConfig
    from tv100.tasks.clean.hashing import hash_files

    seen: list[tuple[int, int]] = []
    made: list[pg.Tracker] = []
    real = pg.Tracker.__call__

    def spy(self: pg.Tracker, done: int, total: int | None = None) -> None:
        seen.append((done, self.total if total is None else total))
        made.append(self)
        real(self, done, total)

    monkeypatch.setattr(pg.Tracker, "__call__", spy)
    caplog.set_level(logging.INFO, logger="tv100")
    items = _images(tmp_path, 12)
    table = hash_files(items, HashConfig(workers=2, chunksize=2))
    assert table.num_rows == 12
    assert seen == [(i, 12) for i in range(1, 13)]
    assert made[0].artifact is not None and made[0].artifact.artifact_id is None
    assert [r.getMessage().split(" in ")[0] for r in _summaries(caplog)] == [
        "hash: 12/12 images"
    ]


# --- the Prefect progress artifact ----------------------------------------------------------------


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [latest] = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return latest


def test_the_artifact_moves_at_most_every_interval_and_always_at_the_end(prefect_harness):
    from prefect import flow

    clock = Clock()
    seen: list[float] = []
    key = "progress-test-throttle"

    @flow(name="progress-test")
    def stage() -> None:
        t = pg.Tracker("hash", 100, "images", key=key, display=None, clock=clock)
        assert t.artifact is not None and t.artifact.artifact_id is not None
        seen.append(float(_artifact(key).data))  # created at 0 %
        t(30)  # too soon after the last update: not sent
        seen.append(float(_artifact(key).data))
        clock.now += pg.ARTIFACT_INTERVAL_S
        t(40)
        seen.append(float(_artifact(key).data))
        t(99)  # too soon again
        seen.append(float(_artifact(key).data))
        t(100)  # 100 % always goes
        seen.append(float(_artifact(key).data))
        t.close()
        # A stage that ends short of its total publishes where it ended.
        short = pg.Tracker("quality", 100, "images", key=f"{key}-short", display=None,
                           clock=clock)
        short(30)
        short.close()
        seen.append(float(_artifact(f"{key}-short").data))

    stage()
    assert seen == [0.0, 0.0, 40.0, 40.0, 100.0, 30.0]
    assert "100 of 100" in _artifact(key).description


def test_a_refused_artifact_is_one_warning_and_the_stage_goes_on(prefect_harness, caplog):
    from prefect import flow

    @flow(name="progress-test-bad-key")
    def stage() -> str | None:
        with pg.Tracker("hash", 3, "images", key="Not A Valid Key!", display=None) as t:
            for _ in range(3):
                t.advance()
        return t.summary

    caplog.set_level(logging.INFO, logger="tv100")
    summary = stage()
    assert summary is not None and summary.startswith("hash: 3/3 images")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and r.name == "tv100.progress"]
    assert len(warnings) == 1 and "Not A Valid Key!" in warnings[0].getMessage()


def test_route_logs_sends_tv100_loggers_to_the_api_at_prefects_level(monkeypatch):
    """In a process whose Prefect logging was set up without the extra logger (a flow run
    started by a worker), `route_logs` adds it, once, and gives tv100 Prefect's level."""
    import prefect  # noqa: F401  (sets Prefect's logging up)
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger(pg.LOGGER)
    saved = (logger.level, list(logger.handlers))
    monkeypatch.delenv(pg.EXTRA_LOGGERS_ENV, raising=False)
    try:
        logger.setLevel(logging.NOTSET)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        pg.route_logs()
        pg.route_logs()
        api = [h for h in logger.handlers if isinstance(h, APILogHandler)]
        assert len(api) == 1
        assert logger.level == logging.getLogger("prefect").getEffectiveLevel()
        # A user who named other extra loggers keeps their choice.
        logger.removeHandler(api[0])
        monkeypatch.setenv(pg.EXTRA_LOGGERS_ENV, "mylib")
        pg.route_logs()
        assert not any(isinstance(h, APILogHandler) for h in logger.handlers)
    finally:
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.setLevel(saved[0])
        for h in saved[1]:
            logger.addHandler(h)


def test_progress_reporter_is_the_shared_artifact():
    from tv100.tasks.report.artifacts import progress_reporter

    outside = progress_reporter("progress-test-outside", "items")
    assert isinstance(outside, pg.ArtifactProgress) and outside.artifact_id is None
    outside(5, 10)  # no run: nothing to publish, nothing fails
    assert math.isclose(outside.sent, -1.0)
