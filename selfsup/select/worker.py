"""One sweep worker process: claim a slot, train it with :func:`selfsup.train.fit`, report, repeat.

Started by ``selfsup sweep`` as ``python -m selfsup.select.worker SWEEP_DIR --index I --threads T``; it
reads ``SWEEP_DIR/sweep.yaml`` (the resolved sweep) and stops when every slot is done. The bookkeeping
rule is in :mod:`selfsup.select.study`.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from selfsup.errors import DivergenceError, SelfsupError, Stopped
from selfsup.methods import RUN_METRICS, methods_recording, resolve_layer
from selfsup.select import study as S
from selfsup.select.spec import ParamSpec, Sweep, finite, load_sweep

POLL_S = 1.0


class SlotSampler(optuna.samplers.BaseSampler):
    """Fixed values (a grid point, or an interrupted trial's parameters), else a sampler seeded per slot.

    Seeding by slot (not by process) keeps random / TPE sweeps reproducible whichever worker runs a slot.
    """

    def __init__(self, kind: str, seed: int):
        self.kind, self.seed = kind, seed
        self.fixed: dict[str, Any] | None = None
        self.inner: optuna.samplers.BaseSampler | None = None

    def prepare(self, slot: int, fixed: dict[str, Any] | None) -> None:
        self.fixed = fixed
        self.inner = None
        if fixed is None:
            seed = self.seed * 1_000_003 + slot
            self.inner = (
                optuna.samplers.TPESampler(seed=seed)
                if self.kind == "tpe"
                else optuna.samplers.RandomSampler(seed=seed)
            )

    def infer_relative_search_space(self, study, trial):
        return {} if self.inner is None else self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return {} if self.inner is None else self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        if self.fixed is not None:
            return self.fixed[param_name]
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        if self.inner is not None:
            self.inner.after_trial(study, trial, state, values)


class Heartbeat:
    """Record the trial's heartbeat now, then every ``interval`` seconds in a thread."""

    def __init__(self, storage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _beat(self) -> None:
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as err:  # noqa: BLE001 - a missed beat is retried; a long outage makes the trial stale
            print(f"warning: heartbeat of trial id {self.trial_id} failed: {err}", file=sys.stderr)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def __enter__(self):
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def suggest(trial: optuna.Trial, key: str, p: ParamSpec) -> Any:
    if p.values is not None:
        return trial.suggest_categorical(key, p.values)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=bool(p.log))
    return trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=bool(p.log))


def trial_metrics(summary: dict, sweep: Sweep) -> dict[str, Any]:
    """Score (the objective) and the numbers the summary reports for one finished run."""
    layers = summary["layers"]
    layer = resolve_layer(sweep.objective.layer, list(layers))
    rep = layers[layer]
    metric = sweep.objective.metric
    score = summary.get(metric) if metric in RUN_METRICS else rep.get(metric)
    out: dict[str, Any] = {"score": score, "layer": layer, "dim": rep.get("k")}
    for k in ("rankme_backbone", "linear_acc", "knn_acc", "train_seconds", *RUN_METRICS):
        if summary.get(k) is not None:
            out[k] = summary[k]
    for k in ("rankme", "alpha_req", "stable_rank", "nesum"):
        out[f"{k}@{layer}"] = rep.get(k)
    return out


def _of_layer(sweep: Sweep, metrics: dict) -> str:
    return "" if sweep.objective.metric in RUN_METRICS else f" of layer {metrics['layer']}"


def preflight(sweep: Sweep) -> list[str]:
    """Build the first trial's model once: bad dataset / backbone / layer names fail before any trial."""
    from selfsup.train import build
    from selfsup.train.components import check_batch_size

    spec = sweep.spec
    params = (
        sweep.grid()[0] if spec.sampler == "grid" else {k: p.candidates()[0] for k, p in spec.space.items()}
    )
    cfg = sweep.trial_config(params, "preflight")
    c = build(cfg)
    check_batch_size(cfg, c.data)
    names = c.model.layer_names
    resolve_layer(sweep.objective.layer, names)
    metric = sweep.objective.metric
    if metric in RUN_METRICS and metric not in c.model.run_metrics:
        raise SelfsupError(
            f"objective metric '{metric}' is recorded by method {', '.join(methods_recording(metric))} "
            f"only, not by '{cfg.method.name}'"
        )
    return names


class Worker:
    def __init__(self, sweep: Sweep, log=None):
        self.sweep = sweep
        spec = sweep.spec
        self.log = log or sys.stdout
        self.storage = S.open_storage(sweep.storage_url, spec.heartbeat_interval, spec.grace_period)
        self.sampler = SlotSampler(spec.sampler, spec.seed)
        self.study = optuna.load_study(study_name=sweep.name, storage=self.storage, sampler=self.sampler)
        self.study_id = self.storage.get_study_id_from_name(sweep.name)
        self.me = S.worker_identity()
        self.n = sweep.n_trials

    def say(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=self.log, flush=True)

    def reap(self) -> None:
        S.reap(self.study, self.storage, self.sweep.spec.grace_period)

    def run(self) -> None:
        while True:
            self.reap()
            slots = S.slot_table(S.records(self.study), self.n)
            if slots.all_done:
                self.say("every slot is done; worker stops")
                return
            if not slots.free:  # the rest is running (here or elsewhere, or on a dead worker not yet stale)
                time.sleep(POLL_S)
                continue
            trial = self.new_trial()
            with Heartbeat(self.storage, trial._trial_id, self.sweep.spec.heartbeat_interval):
                try:
                    slot, inherit = self.claim(trial)
                    if slot is None:
                        trial.set_user_attr("outcome", "surplus")
                        self._end(trial, state=TrialState.FAIL)
                        continue
                    self.run_slot(trial, slot, inherit)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # This worker was silent past the grace period and another one failed its trial
                    # (interrupted): that slot is resumed by whoever claims it next.
                    self.say(f"trial {trial.number} was marked interrupted by another worker; moving on")
                except (KeyboardInterrupt, Stopped):  # interrupted (a stop checkpointed it): resumed later
                    self._end(trial, state=TrialState.FAIL)
                    raise

    def new_trial(self) -> optuna.Trial:
        """A RUNNING trial created with this worker's identity in one transaction (what ``ask`` does, plus
        the ``worker`` attribute, so that a kill right after creation is still recognised)."""
        template = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"worker": self.me})
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        return optuna.Trial(self.study, trial_id)

    def claim(self, trial: optuna.Trial) -> tuple[int | None, S.TrialRecord | None]:
        """Wait until every lower-numbered running trial has a slot, then take the lowest free one."""
        waited = 0.0
        while True:
            recs = S.records(self.study)
            unclaimed = [
                r for r in recs if r.number < trial.number and r.state == "running" and r.slot is None
            ]
            if not unclaimed:
                break
            time.sleep(0.1)
            waited += 0.1
            if waited >= POLL_S:
                self.reap()
                waited = 0.0
        slots = S.slot_table(recs, self.n, exclude=trial.number)
        if not slots.free:
            return None, None
        slot = slots.free[0]
        trial.set_user_attr("slot", slot)
        return slot, slots.inherit.get(slot)

    def adopt(self, inherit: S.TrialRecord | None, run_dir: Path) -> bool:
        """Move an interrupted trial's run directory to ``run_dir``; True when it can be resumed."""
        if inherit is None or not inherit.run_dir:
            return False
        src = self.sweep.sweep_dir / inherit.run_dir
        if not src.is_dir():
            return False
        from selfsup.train.checkpoint import list_checkpoints

        if (src / "config.yaml").is_file() and list_checkpoints(src / "checkpoints"):
            os.replace(src, run_dir)
            return True
        shutil.rmtree(src, ignore_errors=True)  # killed before its first checkpoint: nothing to keep
        return False

    def _end(self, trial: optuna.Trial, value: float | None = None, state=None) -> None:
        try:
            self.study.tell(trial, value, state=state)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError) as err:
            # Another worker found this trial stale and failed it (this worker was silent too long).
            self.say(f"trial {trial.number}: could not record the result ({err})")

    def _fail(self, trial: optuna.Trial, outcome: str, reason: str) -> None:
        trial.set_user_attr("outcome", outcome)
        trial.set_user_attr("reason", reason[:2000])
        self._end(trial, state=TrialState.FAIL)
        self.say(f"trial {trial.number} FAILED ({outcome}): {reason.splitlines()[0] if reason else ''}")

    def write_report(self, trial: optuna.Trial, run_dir: Path) -> Path | None:
        """The trial's own ``report.html`` (what ``selfsup train`` writes; the sweep report links it, the
        trackers of ``train.loggers`` get it). A report that cannot be drawn is said in the worker log and
        does not fail the trial."""
        from selfsup.report import write_run_report

        start = time.perf_counter()
        try:
            path = write_run_report(run_dir)
        except Exception as err:  # noqa: BLE001 - the trial's numbers are in; only its pictures are missing
            if not isinstance(err, SelfsupError):
                traceback.print_exc(file=self.log)
            self.say(f"trial {trial.number}: no report.html ({type(err).__name__}: {err}); the trial goes on")
            return None
        self.say(f"trial {trial.number}: wrote report.html in {time.perf_counter() - start:.2f} s")
        return path

    def run_slot(self, trial: optuna.Trial, slot: int, inherit: S.TrialRecord | None) -> None:
        from rich.console import Console

        from selfsup.train import fit

        sweep, spec = self.sweep, self.sweep.spec
        if spec.sampler == "grid":
            fixed = sweep.grid()[slot]
        elif inherit is not None and set(inherit.params) == set(spec.space):
            fixed = inherit.params
        else:
            fixed = None
        self.sampler.prepare(slot, fixed)
        params = {k: suggest(trial, k, p) for k, p in spec.space.items()}
        name = str(trial.number)
        run_dir = sweep.trials_dir / name
        sweep.trials_dir.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("run_dir", f"trials/{name}")
        resume = self.adopt(inherit, run_dir)
        if resume:
            trial.set_user_attr("resumed_from", inherit.number)
        shown = "  ".join(f"{k}={v}" for k, v in params.items())
        self.say(
            f"trial {trial.number} slot {slot}: {shown}"
            + (f" (resuming trial {inherit.number})" if resume else "")
        )
        console = Console(file=self.log, width=110, force_terminal=False, soft_wrap=True)
        try:
            cfg = sweep.trial_config(params, name)
            report = functools.partial(self.write_report, trial)
            summary = fit(cfg, run_dir=run_dir, resume=resume, console=console, progress=False, report=report)
            metrics = trial_metrics(summary, sweep)
        except DivergenceError as err:
            return self._fail(trial, "diverged", str(err))
        except (KeyboardInterrupt, Stopped):  # run() marks the trial interrupted: resumed by the next claim
            raise
        except Exception as err:  # noqa: BLE001 - a crashed trial is recorded and the sweep goes on
            if not isinstance(err, SelfsupError):
                traceback.print_exc(file=self.log)
            return self._fail(trial, "crashed", f"{type(err).__name__}: {err}")
        trial.set_user_attr("metrics", metrics)
        if not finite(metrics["score"]):
            return self._fail(
                trial,
                "non-finite score",
                f"{sweep.objective.metric}{_of_layer(sweep, metrics)} is {metrics['score']}",
            )
        self._end(trial, float(metrics["score"]))
        self.say(f"trial {trial.number} complete: {sweep.objective.metric}={metrics['score']:.4g}")


def _stop(signum, frame):
    raise Stopped(f"stopped by {signal.Signals(signum).name} between trials")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfsup.select.worker", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    err_file = args.sweep_dir / "logs" / f"worker-{args.index}.error"
    try:
        sweep = load_sweep(args.sweep_dir / "sweep.yaml", sweep_dir=args.sweep_dir)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        for s in (signal.SIGTERM, signal.SIGUSR1):  # between trials; a training trial checkpoints first
            signal.signal(s, _stop)
        worker = Worker(sweep)
        worker.say(f"worker {args.index} (pid {os.getpid()}), storage {S.safe_url(sweep.storage_url)}")
        preflight(sweep)
        worker.run()
    except SelfsupError as err:
        err_file.parent.mkdir(parents=True, exist_ok=True)
        err_file.write_text(str(err))
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Stopped as stopped:  # the scheduler's signal: the trial's checkpoint is written
        print(f"stopped: {stopped}", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
