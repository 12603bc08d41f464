"""How far a sweep has come: trials done / running / left and an estimate of the time to the end.

The estimate is a small pure function (:func:`eta_seconds`) of the finished trials' durations, the
running trials' elapsed times, the slots left and the number of workers, so that it can be checked by hand;
:func:`sweep_status` feeds it from the study's trial records (Optuna's ``datetime_start`` and
``datetime_complete``) and :func:`status_line` writes it as one line.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from selfsup.select import study as S
from selfsup.select.selection import pick_highest


def eta_seconds(
    durations: Sequence[float], elapsed: Sequence[float], left: int, workers: int
) -> float | None:
    """Seconds until every slot is done; ``None`` while no trial has finished (nothing to go by).

    Every trial is taken to last the median ``m`` of ``durations`` (the finished trials'). Each running
    trial keeps its worker for the rest of ``m`` (none when it has already run longer, ``elapsed``); the
    ``left`` unclaimed slots go, one after the other, to whichever worker is free first; the estimate is
    when the last worker is free. There are ``max(workers, running, 1)`` workers (trials running beyond
    this machine's workers run on workers elsewhere). So with ``w`` idle workers it is
    ``ceil(left / w) * m``, and with one worker ``left * m`` plus what the running trial has left.
    """
    if not durations:
        return None
    m = statistics.median(durations)
    free = [max(m - e, 0.0) for e in elapsed]  # when each worker is free, from now
    free += [0.0] * (max(workers, len(free), 1) - len(free))
    heapq.heapify(free)
    for _ in range(left):
        heapq.heappush(free, heapq.heappop(free) + m)
    return max(free)


def format_duration(seconds: float | None) -> str:
    """``-`` (unknown), ``40 s``, ``4 min`` or ``2 h 05 min``: as precise as an estimate deserves."""
    if seconds is None:
        return "-"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    minutes = int(s / 60 + 0.5)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class SweepStatus:
    """One look at the sweep: slots done (of which failed), running and left, the best trial, the ETA."""

    done: int
    failed: int
    running: int
    left: int
    best: S.TrialRecord | None
    eta: float | None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def sweep_status(
    recs: list[S.TrialRecord], n: int, direction: str, workers: int, now: datetime | None = None
) -> SweepStatus:
    """The status of a sweep of ``n`` slots from its trial records; ``now`` defaults to the clock (Optuna
    stores naive local times, and so does this)."""
    now = now or datetime.now()
    slots = S.slot_table(recs, n)
    done = [slots.done[k] for k in sorted(slots.done)]
    i = pick_highest([r.score for r in done], direction)
    durations = [d for r in done if (d := _seconds(r.datetime_start, r.datetime_complete)) is not None]
    elapsed = [_seconds(r.datetime_start, now) or 0.0 for r in slots.busy.values()]
    left = len(slots.free)
    return SweepStatus(
        done=len(done),
        failed=sum(r.state == "failed" for r in done),
        running=len(slots.busy),
        left=left,
        best=done[i] if i is not None else None,
        eta=eta_seconds(durations, elapsed, left, workers),
    )


def status_line(s: SweepStatus) -> str:
    """``3 done, 2 running, 7 left, ETA 4 min`` (``3 done (1 failed)`` when some failed)."""
    failed = f" ({s.failed} failed)" if s.failed else ""
    return f"{s.done} done{failed}, {s.running} running, {s.left} left, ETA {format_duration(s.eta)}"
