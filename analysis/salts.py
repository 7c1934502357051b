"""Salt changes: which phases were served under the experiment's salt, and what the report says.

A unit's variant bucket is ``bucket(salt, unit_id)`` (DESIGN.md, "Assignment") and every
exposure logs its unit and its bucket, so each exposure is a witness of the salt it was served
under. The report's bucket check across phases (analysis/phases.py) assumes one salt: a unit's
logged bucket is its bucket in every phase. After a salt change (a forced ``apply``, a stopped
experiment started again under a new salt, an edited file) every unit is dealt again by another
hash: its bucket under the new salt is another number, so the check keeps units that were moved
to the other arm and excludes others for nothing.

``check_salt`` sorts the phases of the report's window by their witnesses (the query gives two
per phase: the smallest and the largest unit id with their buckets). Under another salt one
witness matches by chance with probability 1/10,000, two with 1/10^8; one mismatch is enough to
call the phase another salt's (a phase whose logged buckets are not the formula's is not this
salt's randomisation, whatever the reason). The report (analysis/build.py) then reads the
source again leaving those phases out (``analysis.sql.build_plan``'s ``other_salt``) and says
what it did (``salt_warnings``). Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from analysis.sql import HOLDOUT, PhaseRecord, Scan
from experiments import bucket


@dataclass(frozen=True, slots=True)
class SaltCheck:
    """The phases of a window sorted by the salt their witnesses show.

    ``matched``: every witness is ``bucket(salt, unit)``; ``other``: some witness is not;
    ``unknown``: no witness (records without a bucket, written before exposures carried one).
    """

    salt: str
    matched: tuple[PhaseRecord, ...]
    other: tuple[PhaseRecord, ...]
    unknown: tuple[PhaseRecord, ...]

    @property
    def other_ids(self) -> frozenset[str]:
        """Ids of the phases served under another salt."""
        return frozenset(p.id for p in self.other)

    @property
    def changed(self) -> bool:
        """Whether the window holds phases of this salt and of another: the report then leaves
        the other's out. (Only other salts: the file is not the one that served the window.)"""
        return bool(self.other and self.matched)


def check_salt(salt: str, phases: Sequence[PhaseRecord]) -> SaltCheck:
    """Sort ``phases`` by whether their witnesses were bucketed with ``salt``."""
    matched, other, unknown = [], [], []
    for p in phases:
        if not p.witnesses:
            unknown.append(p)
        elif all(bucket(salt, unit) == b for unit, b in p.witnesses):
            matched.append(p)
        else:
            other.append(p)
    return SaltCheck(salt, tuple(matched), tuple(other), tuple(unknown))


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_exposed(scan: Scan, phase: str) -> int:
    """Units whose first exposure in the window was in ``phase``: those the scan kept (its last
    look of each arm and segment) and those it excluded (holdout units aside)."""
    last: dict[tuple[str, str | None], tuple[date, int]] = {}
    for lk in scan.looks:
        if lk.phase == phase and lk.variant != HOLDOUT:
            key = (lk.variant, lk.segment)
            if key not in last or lk.day > last[key][0]:
                last[key] = (lk.day, lk.stats.count)
    return sum(n for _, n in last.values()) + sum(scan.excluded.get(phase, {}).values())


def salt_warnings(check: SaltCheck, first: Scan, second: Scan | None) -> tuple[str, ...]:
    """What the report says about salts: nothing when every phase of the window is the file's.

    ``first`` is the scan of every phase (whose witnesses ``check`` read), ``second`` the scan
    without the other salt's phases (None when the report did not read the source again).
    """
    if not check.other:
        return ()
    salt = check.salt
    if not check.matched:
        p = check.other[0]
        unit, logged = next((u, b) for u, b in p.witnesses if bucket(salt, u) != b)
        return (
            f"no phase of this window was served under this file's salt '{salt}' (phase "
            f"{p.id or '(none)'} logged bucket {logged} for unit '{unit}', whose bucket under "
            f"'{salt}' is {bucket(salt, unit)}): the file is not the configuration that served "
            "these exposures, so whether the salt changed in the window cannot be checked, and "
            "phases are compared as if they shared one salt. Report with the experiment file "
            "that served them (abgate experiments show KEY --version N)",
        )
    others = "; ".join(
        f"{p.id} ({_when(p.start)} to {_when(p.end)}, {_first_exposed(first, p.id):,} units "
        "first exposed in it)"
        for p in check.other
    )
    one = len(check.other) == 1
    text = (
        f"salt changed: {'one phase' if one else f'{len(check.other)} phases'} of this window "
        f"{'was' if one else 'were'} served under another salt than this file's '{salt}' (the "
        f"logged buckets are not the buckets under '{salt}'): {others}. Another salt dealt "
        f"every unit again, so {'that phase is' if one else 'those phases are'} left out: a "
        f"unit first exposed there is enrolled at its first exposure under '{salt}', if any."
    )
    cuts = second.cuts if second is not None else {}
    if cuts:
        text += " Units enrolled under this salt are counted only until another salt was served: "
        text += "; ".join(
            f"phase {pid} until {_when(c.at)}"
            + (f" ({c.units:,} units first exposed from then on are excluded)" if c.units else "")
            for pid, c in sorted(cuts.items())
        )
        text += "."
    if check.unknown:
        ids = ", ".join(p.id or "(none)" for p in check.unknown)
        text += (
            f" Phase(s) {ids} logged no bucket: their salt cannot be checked and they are "
            "counted as this file's."
        )
    text += (
        " To report the other salt's run, use the experiment file it was served with "
        "(abgate experiments show KEY --version N)."
    )
    return (text,)
