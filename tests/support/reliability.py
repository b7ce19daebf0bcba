"""The reliability ledger, and the generator of RELIABILITY.md.

The hostile-input, SSRF, crash-resume and CLI tests call `record` for every case they try
(one hypothesis example, one image, one kill point, ...) with the outcome they observed.
Under a plain ``pytest`` run that is all: records pile up in memory and nothing is written.

Regenerate the published table (runs the test files below, ~4 min on 2 cores)::

    .venv/bin/python -m tests.support.reliability            # writes RELIABILITY.md
    .venv/bin/python -m tests.support.reliability --check    # also exits 1 on any crash or lost row

A *crash* is a test that failed (an exception or a hang in the code under test, or a wrong
outcome); a *lost row* is a row an interrupted-then-resumed build is missing (or has twice)
compared with an uninterrupted one. Tests marked ``xfail(strict=True)`` are known bugs in
files owned by others; they are listed apart, with their reasons, until fixed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

#: The test files whose cases make up the table, in the order of its sections (paths from
#: the repository root; a suite that moves must be moved here too, `suite_files` checks).
TEST_FILES = (
    "tests/hostile/test_hostile_parsers.py",
    "tests/hostile/test_hostile_images.py",
    "tests/hostile/test_hostile_http.py",
    "tests/tasks/web/test_guard.py",
    "tests/cli/test_cli_errors.py",
    "tests/cli/test_runtime_errors.py",
    "tests/cli/test_bounded_reads.py",
    "tests/cli/test_sql_readonly.py",
    "tests/cli/test_sql_corrupt.py",
    "tests/tasks/discover/test_cache_keys.py",
    "tests/tasks/collect/test_search_cache.py",
    "tests/tasks/train/test_export_resplit.py",
    "tests/cli/test_cancel_stages.py",
    "tests/crash/test_crash_resume.py",
    "tests/crash/test_crash_main_only.py",
    "tests/crash/test_crash_resume_rank.py",
    "tests/flows/test_heal.py",
    "tests/flows/test_collect_verify.py",
    "tests/storage/test_sweep_race.py",
    "tests/flows/test_two_builds.py",
)
OUTPUT = "RELIABILITY.md"
#: The repository root (tests/support/ is two levels below it).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def suite_files(root: str = ROOT) -> list[str]:
    """`TEST_FILES`, each checked to exist under `root`.

    Raises:
        FileNotFoundError: naming the files that are not there (moved without updating
            `TEST_FILES`).
    """
    missing = [f for f in TEST_FILES if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(f"test files of the reliability table not found: {missing}")
    return list(TEST_FILES)


@dataclass
class Record:
    area: str
    fault: str
    outcome: str
    cases: int
    lost: int
    test: str | None


RECORDS: list[Record] = []
_current: list[str | None] = [None]


def record(area: str, fault: str, outcome: str, cases: int = 1, lost: int = 0) -> None:
    """Note `cases` cases of `fault` in `area` that ended as `outcome`.

    Args:
        area: a section of the table ("parsers", "images", "http", "ssrf", "cli", "cache",
            "export", "cancel", "crash").
        fault: the fault or bad input, in words (one table row per distinct value).
        outcome: what happened: a status, "records", "nothing", "refused: exit 2", ...
        cases: how many cases this call stands for.
        lost: rows lost or duplicated in these cases (crash-resume only).
    """
    RECORDS.append(Record(area, fault, outcome, cases, lost, _current[0]))


@dataclass
class _Row:
    cases: int = 0
    lost: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    tests: set[str] = field(default_factory=set)


class Ledger:
    """pytest plugin: knows which test is running and how each test ended."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.durations: dict[str, float] = defaultdict(float)

    def pytest_runtest_setup(self, item: Any) -> None:
        _current[0] = item.nodeid

    def pytest_runtest_teardown(self, item: Any) -> None:
        _current[0] = None

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.durations[report.nodeid.split("::")[0]] += report.duration
        if hasattr(report, "wasxfail"):
            if report.skipped:
                self.outcomes[report.nodeid] = "xfailed"
                self.reasons[report.nodeid] = str(report.wasxfail)
            elif report.passed:
                self.outcomes[report.nodeid] = "xpassed"
            elif report.failed:  # strict xfail that passed
                self.outcomes[report.nodeid] = "failed"
            return
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.when == "call" and report.passed:
            self.outcomes.setdefault(report.nodeid, "passed")
        elif report.skipped and report.nodeid not in self.outcomes:
            self.outcomes[report.nodeid] = "skipped"


def _table(records: list[Record], outcomes: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    rows: dict[tuple[str, str], _Row] = {}
    for r in records:
        row = rows.setdefault((r.area, r.fault), _Row())
        row.cases += r.cases
        row.lost += r.lost
        row.outcomes[r.outcome] += r.cases
        if r.test:
            row.tests.add(r.test)
    totals = Counter[str]()
    lines = [
        "| area | fault or bad input | cases | outcome (status recorded) | crashes | lost rows |",
        "|---|---|---:|---|---:|---:|",
    ]
    for (area, fault), row in sorted(rows.items(), key=lambda kv: kv[0]):
        crashes = sum(1 for t in row.tests if outcomes.get(t) == "failed")
        known = sum(1 for t in row.tests if outcomes.get(t) == "xfailed")
        outcome = ", ".join(f"{o} ×{n}" for o, n in sorted(row.outcomes.items()))
        if known:
            outcome += f" — **known bug** ({known} xfail test{'s' if known > 1 else ''})"
        lines.append(
            f"| {area} | {fault.replace('|', '/')} | {row.cases} | {outcome.replace('|', '/')} "
            f"| {crashes} | {row.lost} |"
        )
        totals["cases"] += row.cases
        totals["crashes"] += crashes
        totals["lost"] += row.lost
        totals["rows"] += 1
    return lines, dict(totals)


def render(
    records: list[Record],
    ledger: Ledger,
    exit_code: int,
    elapsed: float,
    files: list[str],
) -> str:
    lines, totals = _table(records, ledger.outcomes)
    status = Counter(ledger.outcomes.values())
    known = sorted(
        (nodeid, reason) for nodeid, reason in ledger.reasons.items()
        if ledger.outcomes.get(nodeid) == "xfailed"
    )
    failed = sorted(n for n, o in ledger.outcomes.items() if o == "failed")
    out = [
        "# Reliability: faults and bad inputs tried",
        "",
        "Generated by `.venv/bin/python -m tests.support.reliability` (do not edit by hand): it",
        "runs the test files listed below and tallies every case they try. A *crash* is a failed",
        "test (an exception, a hang or a wrong outcome in the code under test); a *lost row*",
        "is a row that an interrupted-then-resumed build is missing, or has twice, compared",
        "with an uninterrupted build. Known bugs in other modules are `xfail(strict=True)`",
        "tests, listed at the end until they are fixed.",
        "",
        f"**{totals.get('cases', 0)} cases in {totals.get('rows', 0)} kinds of fault: "
        f"{totals.get('crashes', 0)} crashes, {totals.get('lost', 0)} lost rows.** "
        f"Tests: {status.get('passed', 0)} passed, {status.get('failed', 0)} failed, "
        f"{status.get('xfailed', 0)} xfailed (known bugs), {status.get('skipped', 0)} skipped; "
        f"pytest exit code {exit_code}; {elapsed:.0f} s.",
        "",
        "Areas: **parsers** — each case runs one of the 7 page parsers (`tv100.tasks.discover."
        "imdb_pages.parse_list_page`, `parse_title_page`, `tv100.tasks.collect.bing.parse_bing`, "
        "`google.parse_google`, `duckduckgo.parse_duckduckgo`, `read_duckduckgo`, `extract_vqd`) "
        "on one input, outcome *records* or *nothing* (never an exception); **images** — "
        "`tv100.tasks.collect.normalise.normalise`, outcome the status it returns (`ok` = stored "
        "as a checked RGB "
        "JPEG); **http** / **ssrf** — `tv100.tasks.web.client.HttpClient.get`, outcome the "
        "`Fetched.status`; "
        "**cli** — the `tv100` command, outcome its exit code (runtime faults included: a "
        "full disk, a read-only folder, a missing or corrupt input); **cache** — a source that "
        "changed, vanished or failed between two runs, outcome what the second run did with "
        "Prefect's cache; **export** — the ImageFolder export after a re-split, outcome the "
        "files that do not match the current `splits` (stale links); **cancel** — one long "
        "stage (pre-training, hashing, embedding, fine-tuning, download) signalled at an event "
        "(SIGTERM to the main process, SIGINT or SIGTERM to its group), outcome its exit code, "
        "whether it ended within 5 s of the signal, and what the rerun found kept; **crash** — "
        "one interrupted sandbox build (killed at an event, the whole group or the main "
        "process only, or with a corrupt table), rerun to completion and compared with an "
        "uninterrupted one.",
        "",
        *lines,
        "",
        "## Test files and runtimes",
        "",
        "| file | seconds |",
        "|---|---:|",
        *[f"| `{f}` | {ledger.durations.get(f, 0.0):.0f} |" for f in files],
        "",
    ]
    if failed:
        out += ["## Failed tests", "", *[f"- `{n}`" for n in failed], ""]
    out += ["## Known bugs (xfail, strict)", ""]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for nodeid, reason in known:
        by_reason[reason].append(nodeid)
    for reason, nodeids in sorted(by_reason.items(), key=lambda kv: kv[1][0]):
        tests = ", ".join(f"`{n.split('::', 1)[1]}`" for n in nodeids)
        out.append(f"- {reason} — {nodeids[0].split('::')[0]}: {tests}")
    if not by_reason:
        out.append("None.")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.reliability", description=__doc__
    )
    parser.add_argument("--output", default=OUTPUT, help="where to write the table")
    parser.add_argument("--check", action="store_true", help="exit 1 on crashes or lost rows")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args(argv)

    # The tests import this module as `tests.support.reliability`; under `-m` this file is
    # `__main__`, a different module object: run everything in the one they write to.
    from tests.support import reliability as ledger_module

    if ledger_module is not sys.modules[__name__]:
        return ledger_module.main(argv)

    import pytest

    os.chdir(ROOT)
    files = suite_files()
    ledger = Ledger()
    started = time.monotonic()
    code = pytest.main(
        ["-q", "-p", "no:cacheprovider", *files, *args.pytest_args], plugins=[ledger]
    )
    elapsed = time.monotonic() - started
    text = render(ledger_module.RECORDS, ledger, int(code), elapsed, files)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    _, totals = _table(ledger_module.RECORDS, ledger.outcomes)
    print(f"wrote {args.output}: {totals}", file=sys.stderr)
    bad = totals.get("crashes", 0) or totals.get("lost", 0) or int(code) not in (0,)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
