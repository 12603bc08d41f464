"""The Optuna side of a sweep: storage, study, trial bookkeeping (slots) and stale-trial reaping.

Bookkeeping rule (how a killed sweep resumes with no trial lost or run twice)
-----------------------------------------------------------------------------
A sweep has ``n_trials`` *slots* numbered 0..n-1 (for a grid, slot k is the k-th grid point in sweep
order). Every Optuna trial that does work claims one slot in its user attribute ``slot``. A slot is

* **done** when a trial that claimed it is COMPLETE, or FAILED for a reason of its own (diverged,
  crashed, non-finite score: user attribute ``outcome``); a done slot is never run again;
* **busy** while a trial that claimed it is RUNNING;
* **free** otherwise: never claimed, or its last trial was *interrupted* (killed worker, Ctrl-C).

A worker asks Optuna for a new trial, waits until every lower-numbered RUNNING trial has claimed its slot,
then claims the lowest free slot. Claims are therefore made in trial-number order and two trials never
hold the same slot; a trial that finds no free slot (a race between workers) ends at once as FAILED with
``outcome: surplus`` and does no work. Trials end, and workers stop, when every slot is done, so the sweep
finishes with exactly ``n_trials`` finished trials (COMPLETE + failed-on-their-own).

A trial whose worker died stays RUNNING until it is found stale and marked FAILED (no ``outcome``, i.e.
interrupted): at once when the worker ran on this machine (its process is gone: host, boot id, pid and
start time are recorded in the ``worker`` attribute), otherwise when Optuna's RDB heartbeat
(``heartbeat_interval``) has been silent for ``grace_period`` seconds (a trial still without a slot after
ten minutes is also stale: its worker died before the first heartbeat). The next trial that claims the slot
inherits the interrupted trial's parameters *and its run directory*, which it moves to its own number and
resumes from the last checkpoint (``fit(resume=True)``): the work done before the kill is kept.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from selfsup.errors import ConfigError, SelfsupError

#: Trial outcomes (user attribute ``outcome``) that make a FAILED trial count as finished.
OWN_FAILURES = ("diverged", "crashed", "non-finite score")
STUDY_SPEC_ATTR = "selfsup_sweep"


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable URL is shown as it is
        return url


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """Open (and create the tables of) an Optuna RDB storage; unreachable -> :class:`SelfsupError`."""
    quiet_optuna()
    shown = safe_url(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise SelfsupError(
                f"cannot open the sweep storage '{shown}': directory '{Path(path).parent}' does not exist"
            )
    elif url.startswith(("postgresql", "postgres")):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    elif "://" not in url:
        raise ConfigError(
            f"storage '{shown}' is not a database URL; use e.g. sqlite:///path/study.db or "
            "postgresql://user:password@host:5432/dbname"
        )
    try:
        return _rdb_storage(url, engine_kwargs, heartbeat_interval, grace_period)
    except ModuleNotFoundError as err:
        hint = " pip install 'selfsup[postgres]' (psycopg2-binary)" if "psycopg" in str(err) else ""
        raise SelfsupError(
            f"the sweep storage '{shown}' needs a database driver that is not installed ({err}).{hint}"
        ) from None
    except Exception as err:  # noqa: BLE001 - sqlalchemy / driver errors of every kind
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SelfsupError(
            f"cannot open the sweep storage '{shown}': {first}. Check that the database "
            "server is running and reachable and that the URL (user, password, host, port, "
            "database) is right."
        ) from None


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat_interval, grace_period, tries: int = 3):
    """RDBStorage, retried when another process is creating the same new database at the same moment
    (both insert Optuna's schema version: one of them fails on alembic_version's unique key)."""
    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
            )
        except Exception as err:  # noqa: BLE001 - sqlalchemy's IntegrityError, without importing sqlalchemy
            if "alembic_version" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def ensure_study(storage, sweep) -> optuna.Study:
    """Create the sweep's study, or join it when it exists with the same fingerprint."""
    quiet_optuna()
    study = optuna.create_study(
        study_name=sweep.name, storage=storage, direction=sweep.spec.direction, load_if_exists=True
    )
    mine = {"hash": sweep.fingerprint_hash(), "spec": sweep.fingerprint()}
    stored = study.user_attrs.get(STUDY_SPEC_ATTR)
    if stored is None:
        study.set_user_attr(STUDY_SPEC_ATTR, mine)
    elif stored["hash"] != mine["hash"]:
        changed = sorted(
            k
            for k in mine["spec"]
            if json.dumps(mine["spec"][k], sort_keys=True)
            != json.dumps(stored["spec"].get(k), sort_keys=True)
        )
        raise ConfigError(
            f"the storage already holds a sweep named '{sweep.name}' with a different configuration "
            f"(changed: {', '.join(changed)}). Restore the original sweep file to resume it, or give this "
            "sweep another 'name' (or another storage)."
        )
    return study


def load_study(storage, name: str) -> optuna.Study:
    quiet_optuna()
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        have = ", ".join(names) or "none"
        raise SelfsupError(f"the storage holds no sweep named '{name}' (it has: {have})") from None


# --- trial records ----------------------------------------------------------------------------------------


@dataclass
class TrialRecord:
    number: int
    trial_id: int
    state: str  # complete | failed | running | interrupted | surplus | waiting
    slot: int | None
    params: dict[str, Any]
    score: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    reason: str | None = None
    run_dir: str | None = None
    worker: dict | None = None
    resumed_from: int | None = None
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None  # when it ended (None while it runs)

    @property
    def finished(self) -> bool:
        return self.state in ("complete", "failed")

    def as_dict(self) -> dict[str, Any]:
        skip = ("trial_id", "worker", "datetime_start", "datetime_complete")
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def classify(t: FrozenTrial) -> str:
    outcome = t.user_attrs.get("outcome")
    if t.state == TrialState.COMPLETE:
        return "complete"
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.WAITING:
        return "waiting"
    if t.state == TrialState.PRUNED:
        return "failed"
    if outcome == "surplus":
        return "surplus"
    if outcome in OWN_FAILURES:
        return "failed"
    return "interrupted"


def record(t: FrozenTrial) -> TrialRecord:
    a = t.user_attrs
    return TrialRecord(
        number=t.number,
        trial_id=t._trial_id,
        state=classify(t),
        slot=a.get("slot"),
        params=dict(t.params),
        score=t.value if t.state == TrialState.COMPLETE else None,
        metrics=a.get("metrics", {}),
        outcome=a.get("outcome"),
        reason=a.get("reason"),
        run_dir=a.get("run_dir"),
        worker=a.get("worker"),
        resumed_from=a.get("resumed_from"),
        datetime_start=t.datetime_start,
        datetime_complete=t.datetime_complete,
    )


def records(study: optuna.Study) -> list[TrialRecord]:
    return [record(t) for t in study.get_trials(deepcopy=False)]


@dataclass
class Slots:
    n: int
    done: dict[int, TrialRecord]
    busy: dict[int, TrialRecord]
    inherit: dict[int, TrialRecord]  # free slot -> its last interrupted trial

    @property
    def free(self) -> list[int]:
        return [k for k in range(self.n) if k not in self.done and k not in self.busy]

    @property
    def all_done(self) -> bool:
        return len(self.done) >= self.n


def slot_table(recs: list[TrialRecord], n: int, exclude: int | None = None) -> Slots:
    done: dict[int, TrialRecord] = {}
    busy: dict[int, TrialRecord] = {}
    inherit: dict[int, TrialRecord] = {}
    for r in sorted(recs, key=lambda r: r.number):
        if r.slot is None or r.number == exclude or not 0 <= r.slot < n:
            continue
        if r.finished:
            done.setdefault(r.slot, r)
        elif r.state == "running":
            busy[r.slot] = r
        elif r.state == "interrupted":
            inherit[r.slot] = r
    return Slots(n, done, busy, {k: v for k, v in inherit.items() if k not in done and k not in busy})


# --- workers and stale trials ----------------------------------------------------------------------------


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "start": _proc_start(pid)}


def is_dead_here(worker: dict | None) -> bool:
    """True when ``worker`` ran on this machine (same host name and boot) and its process is gone."""
    if not worker or worker.get("boot") is None or worker.get("start") is None:
        return False
    if worker.get("host") != socket.gethostname() or worker.get("boot") != _boot_id():
        return False
    return _proc_start(int(worker["pid"])) != worker["start"]


def reap(study: optuna.Study, storage, grace_period: int) -> None:
    """Mark the RUNNING trials of dead workers FAILED (that is: interrupted, to be resumed)."""
    quiet_optuna()
    optuna.storages.fail_stale_trials(study)  # heartbeat silent for grace_period (any machine)
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        age = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
        # A trial claims its slot within seconds of its creation; one still without a slot after ten
        # minutes lost its worker before the first heartbeat (the heartbeat rule cannot see it).
        unclaimed_for_long = t.user_attrs.get("slot") is None and age > max(600, 10 * grace_period)
        if is_dead_here(t.user_attrs.get("worker")) or unclaimed_for_long:
            try:
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
