"""Pure formatting of command results into text: tables, CSV, JSON lines, stage summaries."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tv100.tasks.rank.config import RankResult, SeriesAccuracy
    from tv100.tasks.report.config import ReportResult
    from tv100.tasks.train.config import TrainResult


def plain(value: Any) -> Any:
    """A result as JSON-ready data: dataclasses and mappings become dicts, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def to_json(result: Any) -> str:
    """A stage's result as indented JSON with sorted keys."""
    return json.dumps(plain(result), indent=2, sort_keys=True, default=str)


def json_line(record: Any, sort_keys: bool = False) -> str:
    """One record as one line of JSON (non-ASCII kept as is)."""
    return json.dumps(plain(record), ensure_ascii=False, default=str, sort_keys=sort_keys)


def format_rows(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """Render query results as an aligned text table (``table``), ``csv`` or ``json`` lines."""
    if fmt == "json":
        return "".join(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in columns])
        return buf.getvalue()
    cells = [[("NULL" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def format_rank(result: RankResult) -> list[str]:
    """The rank stage's summary: chance, then the hardest and easiest series."""
    summary = result.selection

    def row(r: SeriesAccuracy) -> str:
        mark = "kept" if r.kept else r.reason
        return f"    {_pct(r.accuracy):>6}  {r.title} ({r.series_id}, {mark})"

    return [
        f"  zero-shot     {summary.kept} of {summary.candidates} series kept; chance "
        f"{_pct(summary.chance)}; mean top-1 of kept {_pct(summary.kept_mean_accuracy)}, "
        f"of dropped {_pct(summary.dropped_mean_accuracy)}",
        "  hardest (top-1):",
        *[row(r) for r in summary.hardest],
        "  easiest (top-1):",
        *[row(r) for r in summary.easiest],
    ]


def format_runs(train: TrainResult) -> list[str]:
    """Zero-shot vs fine-tuned on the test split: figure (d) in miniature."""

    def pct(v: float | None) -> str:
        return "   n/a" if v is None else f"{100 * v:5.1f}%"

    sizes = ", ".join(f"{n} {s}" for s, n in sorted(train.splits.items()))
    lines = [
        f"  splits        {train.classes} classes; {sizes}; "
        f"{train.leakage} held-out images near a train image",
        f"  test split    chance {pct(train.chance)}",
        "    recipe      top-1   top-5  balanced   many  medium    few",
    ]
    for r in train.runs:
        lines.append(
            f"    {r.recipe:<10} {pct(r.test_top1)} {pct(r.test_top5)}   "
            f"{pct(r.test_balanced_accuracy)} {pct(r.test_many)} "
            f"{pct(r.test_medium)} {pct(r.test_few)}"
        )
    return lines


def format_report(result: ReportResult) -> list[str]:
    """Where the report's files went, and which were skipped and why."""
    lines = [f"report written to {result.report_dir}"]
    lines += [f"  {name:<22} {path}" for name, path in sorted(result.files.items())]
    lines += [f"  skipped {name}: {why}" for name, why in sorted(result.skipped.items())]
    return lines
