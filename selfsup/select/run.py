"""``selfsup sweep``: validate, create or join the study, start the workers, show progress, summarise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from selfsup.errors import ConfigError, SelfsupError, Stopped
from selfsup.methods import RUN_METRICS
from selfsup.select import study as S
from selfsup.select import summary as summ
from selfsup.select.progress import status_line, sweep_status
from selfsup.select.spec import Sweep, load_sweep, threads_per_worker


def _write_resolved(sweep: Sweep) -> None:
    path = sweep.sweep_dir / "sweep.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(
        "# written by selfsup sweep: the resolved sweep (--config this file reruns it)\n"
        + yaml.safe_dump(sweep.resolved_dict(), sort_keys=False)
    )
    tmp.replace(path)


def _check_dir(sweep: Sweep, recs: list[S.TrialRecord]) -> None:
    trials = sweep.trials_dir
    if not recs and trials.is_dir() and any(trials.iterdir()):
        raise ConfigError(
            f"'{trials}' already holds trial directories, but the storage has no trial of sweep "
            f"'{sweep.name}' (a deleted or different storage?). Remove that directory, or give the sweep "
            "another name or out_dir."
        )


def _line(sweep: Sweep, r: S.TrialRecord) -> str:
    params = escape("  ".join(f"{k}={v}" for k, v in r.params.items()))
    if r.state == "complete":
        acc = r.metrics.get("linear_acc")
        acc_s = f"  linear {100 * acc:.1f} %" if acc is not None else ""
        score = f"{sweep.objective.metric} [bold]{r.score:.4g}[/]"
        return f"trial {r.number} (slot {r.slot}) {params}  {score}{acc_s}"
    if r.state == "failed":
        return (
            f"trial {r.number} (slot {r.slot}) {params}  [red]FAILED ({r.outcome})[/]: "
            f"{(r.reason or '').splitlines()[0][:150]}"
        )
    return f"trial {r.number} (slot {r.slot}) {params}  [yellow]interrupted[/]: its slot will be resumed"


def run_sweep(
    path: str | Path,
    storage: str | None = None,
    workers: int | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume, or join) the sweep of ``path``; return its summary."""
    console = console or Console()
    sweep = load_sweep(path, storage=storage, workers=workers)
    spec = sweep.spec
    if spec.selection.rule is not None:  # before any trial: a misspelt rule would only show at the summary
        summ.check_rule(spec.selection.rule)
    if spec.storage is None:
        sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    st = S.open_storage(sweep.storage_url, spec.heartbeat_interval, spec.grace_period)
    study = S.ensure_study(st, sweep)
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    recs = S.records(study)
    _check_dir(sweep, recs)
    _write_resolved(sweep)
    logs = sweep.sweep_dir / "logs"
    logs.mkdir(exist_ok=True)
    for f in logs.glob("worker-*.error"):
        f.unlink()

    n = sweep.n_trials
    obj = sweep.objective
    of_layer = "" if obj.metric in RUN_METRICS else f" of {obj.layer}"
    console.print(
        f"sweep [bold]{sweep.name}[/]: {n} trials, sampler {spec.sampler}, "
        f"{spec.workers} worker(s), objective {obj.metric}{of_layer} ({spec.direction}); "
        f"storage {S.safe_url(sweep.storage_url)}; directory {sweep.sweep_dir}"
    )
    if not S.slot_table(recs, n).all_done:
        _work(sweep, study, st, console, progress)
    recs = S.records(study)
    if not S.slot_table(recs, n).all_done:
        errors = [f.read_text() for f in sorted(logs.glob("worker-*.error"))]
        if errors:
            raise SelfsupError(errors[0])
        raise SelfsupError(
            f"the workers stopped before the sweep was done; see the logs in {logs}. "
            "Rerun the same command to resume."
        )
    summary = summ.summarize(sweep, recs)
    summ.write(summary, sweep.sweep_dir)
    for t in summ.tables(summary):
        console.print(t)
    console.print(f"sweep directory: [bold]{sweep.sweep_dir}[/]  (report: {sweep.sweep_dir / 'report.html'})")
    return summary


def _work(sweep: Sweep, study, st, console: Console, progress: bool) -> None:
    """Start the workers and watch them. Ctrl-C interrupts them; the scheduler's SIGTERM or SIGUSR1 is passed
    on, so that each worker checkpoints its trial at the current step (``selfsup train``'s stop) and exits."""
    procs = _start_workers(sweep)
    in_main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, _raise_stopped) for s in STOP_SIGNALS} if in_main else {}
    try:
        _watch(sweep, study, st, procs, _progress_bar(console, progress))
    except KeyboardInterrupt:
        _interrupt_workers(procs)
        raise
    except Stopped:
        _interrupt_workers(procs, signal.SIGTERM)
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for _, log in procs:
            log.close()


def _start_workers(sweep: Sweep) -> list[tuple[subprocess.Popen, Any]]:
    """Start ``spec.workers`` worker processes, each writing to its log; return (process, open log) pairs."""
    spec = sweep.spec
    sweep_dir = sweep.sweep_dir.resolve()
    threads = threads_per_worker(spec)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    for i in range(spec.workers):
        log = open(sweep_dir / "logs" / f"worker-{i}.log", "a")  # closed in _work's finally
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "selfsup.select.worker",
                        str(sweep_dir),
                        "--index",
                        str(i),
                        "--threads",
                        str(threads),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                ),
                log,
            )
        )
    return procs


#: What a scheduler sends before it pre-empts or times out a job (:mod:`selfsup.train.preempt`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def _raise_stopped(signum, frame):
    raise Stopped(
        f"stopped by {signal.Signals(signum).name}: the workers checkpointed their trials where they were; "
        "rerun the same command (or requeue the job) to resume the sweep"
    )


def _progress_bar(console: Console, progress: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=True,
    )


def _bar_shown(bar: Progress) -> bool:
    """Whether the bar is drawn: not with ``--quiet``, nor when the output is a file or a pipe (rich draws a
    live display on a terminal only); then a status line after each finished trial says how far it is."""
    c = bar.console
    return not bar.disable and c.is_terminal and not c.is_dumb_terminal


def _watch(sweep: Sweep, study, st, procs: list[tuple[subprocess.Popen, Any]], bar: Progress) -> None:
    """Until every worker has exited: reap dead trials, print each finished trial once, update the bar
    (done / running / left, failed, best, ETA), or, without a bar, print the status after new trials."""
    spec = sweep.spec
    n = sweep.n_trials
    seen: set[int] = set()
    shown = _bar_shown(bar)
    with bar:
        task = bar.add_task(sweep.name, total=n, status="")
        while True:
            S.reap(study, st, spec.grace_period)
            recs = S.records(study)
            new = [
                r
                for r in sorted(recs, key=lambda r: r.number)
                if r.number not in seen and r.state in ("complete", "failed", "interrupted")
            ]
            for r in new:
                seen.add(r.number)
                bar.console.print(_line(sweep, r))
            s = sweep_status(recs, n, spec.direction, spec.workers)
            if new and not shown:
                bar.console.print(status_line(s), highlight=False)
            best = f"{s.best.score:.4g} (trial {s.best.number})" if s.best else "-"
            bar.update(task, completed=s.done, status=f"{status_line(s)}  best {best}")
            if all(p.poll() is not None for p, _ in procs):
                break
            time.sleep(0.5)


def _interrupt_workers(procs: list[tuple[subprocess.Popen, Any]], sig: int = signal.SIGINT) -> None:
    """Signal the running workers (SIGINT: stop now; SIGTERM: checkpoint the current step first), wait up to
    30 s in all for them to exit, then kill the rest. Either way they mark their trial interrupted."""
    for p, _ in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.time() + 30
    for p, _ in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


def sweep_summary(
    sweep_dir: str | Path,
    storage: str | None = None,
    rule: str | None = None,
    tol: float | None = None,
    prefer: str | None = None,
    key: str | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Summarise a sweep directory (finished or not) from its storage; write summary.json and report.html."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "sweep.yaml").is_file():
        raise SelfsupError(
            f"'{sweep_dir}' is not a sweep directory (no sweep.yaml); pass the directory that "
            "selfsup sweep printed"
        )
    sweep = load_sweep(sweep_dir / "sweep.yaml", sweep_dir=sweep_dir, storage=storage)
    st = S.open_storage(sweep.storage_url)
    study = S.load_study(st, sweep.name)
    summary = summ.summarize(sweep, S.records(study), rule=rule, tol=tol, prefer=prefer, key=key)
    if write:
        summ.write(summary, sweep_dir)
    return summary
