"""How a build's relevance decisions compare with the label noise the sandbox planted.

The sandbox lists irrelevant images beside every series (`tv100.sandbox.imagehost`,
``irrelevant_other_series`` and ``irrelevant_offtopic`` in `sandbox_images.plant`). Once a
demo build has written its `relevance` table next to the `sandbox_*` tables, `noise_figures`
reads both through the catalog and says how much noise was planted and how much of it the
scorer found: recall per planted kind, precision per reason, over the images it scored (the
cleaned ones; an irrelevant image the clean stage already dropped is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass

from tv100.sandbox.imagehost import IRRELEVANT_KINDS
from tv100.storage.catalog import query, views
from tv100.storage.root import DataRoot

#: The scorer's reason that names each planted kind.
REASON_OF = {"irrelevant_other_series": "other_series", "irrelevant_offtopic": "offtopic"}

_PLANTED_SQL = """
select count(*) as listed,
       count(*) filter (where plant = 'irrelevant_other_series') as other_series,
       count(*) filter (where plant = 'irrelevant_offtopic') as offtopic,
       min(rate) as min_rate, max(rate) as max_rate
from sandbox_images m
join (select series_id,
             avg(case when plant like 'irrelevant_%' then 1.0 else 0.0 end) as rate
      from sandbox_images group by 1) s using (series_id)
"""

#: One row per scored image: its planted kind ('relevant' if none) and the scorer's call.
SCORED_SQL = """
select r.image_id, r.series_id,
       case when m.plant like 'irrelevant_%' then m.plant else 'relevant' end as truth,
       coalesce(r.auto_decision, r.decision) as decision,
       coalesce(r.auto_reason, r.reason) as reason
from relevance r
join images i using (image_id)
join sandbox_images m on m.url = i.url and m.series_id = i.series_id
where r.score is not null
"""


@dataclass(frozen=True)
class KindFigures:
    """Detection of one planted kind.

    Attributes:
        kind: the plant kind.
        planted: images of this kind the scorer saw.
        found: of those, how many it called irrelevant (for any reason).
        recall: found / planted (None when none planted).
        flagged: images it called irrelevant with this kind's reason.
        precision: of those, the share truly irrelevant (None when none flagged).
        agreement: of those, the share truly of this kind (the reason named the right kind).
    """

    kind: str
    planted: int
    found: int
    recall: float | None
    flagged: int
    precision: float | None
    agreement: float | None = None


@dataclass(frozen=True)
class NoiseFigures:
    """Planted label noise and what the relevance scorer made of it.

    Attributes:
        listed: images the sandbox lists.
        planted: irrelevant images listed, per kind.
        min_rate: the lowest share of irrelevant images of a series' listing.
        max_rate: the highest.
        kinds: detection per kind (empty without a scored `relevance` table).
        precision: share of all flagged images that are irrelevant of either kind.
        recall: share of all scored irrelevant images that were flagged.
        false_flags: relevant images flagged.
    """

    listed: int
    planted: dict[str, int]
    min_rate: float
    max_rate: float
    kinds: tuple[KindFigures, ...] = ()
    precision: float | None = None
    recall: float | None = None
    false_flags: int = 0

    @property
    def rate(self) -> float:
        """Share of listed images that are irrelevant."""
        return sum(self.planted.values()) / self.listed if self.listed else 0.0


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def noise_figures(root: DataRoot) -> NoiseFigures | None:
    """The planted noise of the sandbox build in `root` and its detection; None when the
    root holds no sandbox ground truth."""
    have = set(views(root))
    if "sandbox_images" not in have:
        return None
    p = query(root, _PLANTED_SQL).to_pylist()[0]
    base = NoiseFigures(
        listed=int(p["listed"]),
        planted={k: int(p[REASON_OF[k]]) for k in IRRELEVANT_KINDS},
        min_rate=float(p["min_rate"] or 0.0),
        max_rate=float(p["max_rate"] or 0.0),
    )
    if not {"relevance", "images"} <= have:
        return base
    rows = query(root, SCORED_SQL).to_pylist()
    if not rows:
        return base
    kinds = []
    for kind in IRRELEVANT_KINDS:
        planted = [r for r in rows if r["truth"] == kind]
        found = sum(r["decision"] == "irrelevant" for r in planted)
        flagged = [r for r in rows
                   if r["decision"] == "irrelevant" and r["reason"] == REASON_OF[kind]]
        right = sum(r["truth"] == kind for r in flagged)
        noisy_flags = sum(r["truth"] != "relevant" for r in flagged)
        kinds.append(KindFigures(kind, len(planted), found, _ratio(found, len(planted)),
                                 len(flagged), _ratio(noisy_flags, len(flagged)),
                                 _ratio(right, len(flagged))))
    flagged_all = [r for r in rows if r["decision"] == "irrelevant"]
    noisy = [r for r in rows if r["truth"] != "relevant"]
    true_flags = sum(r["truth"] != "relevant" for r in flagged_all)
    return NoiseFigures(
        listed=base.listed, planted=base.planted, min_rate=base.min_rate, max_rate=base.max_rate,
        kinds=tuple(kinds), precision=_ratio(true_flags, len(flagged_all)),
        recall=_ratio(sum(r["decision"] == "irrelevant" for r in noisy), len(noisy)),
        false_flags=len(flagged_all) - true_flags,
    )


def format_noise(f: NoiseFigures) -> list[str]:
    """The demo summary's lines about label noise."""
    n = sum(f.planted.values())
    lines = [
        f"  label noise   {n} irrelevant of {f.listed} listed images ({f.rate:.1%}; per series "
        f"{f.min_rate:.0%}-{f.max_rate:.0%}): "
        + ", ".join(f"{v} {REASON_OF[k].replace('_', '-')}" for k, v in f.planted.items())
    ]
    for k in f.kinds:
        lines.append(
            f"  relevance     {REASON_OF[k.kind].replace('_', '-')}: found {k.found} of "
            f"{k.planted} (recall {_fmt(k.recall)}); {k.flagged} flagged as such, precision "
            f"{_fmt(k.precision)} (of the right kind: {_fmt(k.agreement)})"
        )
    if f.kinds:
        lines.append(f"  relevance     both kinds: recall {_fmt(f.recall)}, precision "
                     f"{_fmt(f.precision)}, {f.false_flags} relevant images flagged")
    return lines


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def ground_truth(root: DataRoot) -> dict[str, int]:
    """How the build's image statuses compare with what the sandbox planted, counted
    against the whole manifest (`sandbox_images`): ``agree`` (collected with the planted
    status), ``collected`` and ``planted``; a planted image never collected is missing."""
    rows: list[dict[str, int]] = query(
        root,
        "select count(*) filter (where i.status = m.expected_status) as agree, "
        "count(i.url) as collected, count(*) as planted "
        "from sandbox_images m left join images i on i.url = m.url and i.series_id = m.series_id",
    ).to_pylist()
    return rows[0]
