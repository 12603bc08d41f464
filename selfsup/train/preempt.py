"""Stop cleanly when the cluster scheduler says so, and come back where the run stopped.

SLURM sends SIGTERM before it pre-empts a job or kills it at its time limit, and the signal of
``sbatch --signal=USR1@90`` ninety seconds before. While :func:`watching`, either signal only raises a flag;
the training loop reads it once per step (agreed across processes, so every rank stops at the same step),
finishes that step, writes a checkpoint there (mid-epoch: the position in the epoch's permutation and every
RNG state, so the resume is exact) and raises :class:`Stopped`. Rank 0 then asks SLURM to requeue the job
(:func:`requeue`); the command exits 143. The requeued job runs the same command, whose run directory is
named from ``SLURM_JOB_ID`` (:func:`slurm_run_dir`), and resumes it. SLURM and torchrun launch; nothing
here starts a process but ``scontrol``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from selfsup import config as C
from selfsup.errors import Stopped

#: The signals that ask a run to stop at its current step.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: The exit status of a stopped command: 128 + SIGTERM, what a scheduler expects of a terminated job.
EXIT_STATUS = 143


class StopFlag:
    """Set by a stop signal (:func:`watching`); ``signal_name`` says which arrived first."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def set(self, signum: int, frame=None) -> None:
        self.signal_name = self.signal_name or signal.Signals(signum).name


@contextlib.contextmanager
def watching() -> Iterator[StopFlag]:
    """A stop flag raised by SIGTERM or SIGUSR1 for the duration of the block (their previous handlers come
    back after it; after a stop, :class:`Stopped` out of the block, both are ignored). Outside the main thread
    signals cannot be caught: the flag then never rises. DataLoader workers forked inside the block inherit
    the handler, so a signal sent to every process of the job does not kill them before the loop has
    stopped."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    before = {s: signal.signal(s, flag.set) for s in SIGNALS}
    stopped = False
    try:
        yield flag
    except Stopped:  # this process's signal, or another process's (agreed at a step): this one never heard it
        stopped = True
        raise
    finally:
        for s, handler in before.items():
            # After a stop, a signal must not kill the leaving process (torchrun sends SIGTERM to the slower
            # ranks once one has exited): ignored, not caught, because Python puts the default action back for
            # every caught signal while the interpreter shuts down, and ignored ones stay ignored.
            signal.signal(s, signal.SIG_IGN if stopped else handler)


def slurm_run_dir(cfg: C.RunConfig) -> Path | None:
    """Inside a SLURM job, a run without ``train.name`` is ``train.out_dir/METHOD-DATASET-slurmJOBID``: the
    same directory for the job and its requeued restarts (``SLURM_JOB_ID`` stays when SLURM requeues; each
    task of an array job has its own). None outside SLURM."""
    job = _slurm_job()
    if not job or cfg.train.name is not None:
        return None
    return Path(cfg.train.out_dir) / f"{cfg.method.name}-{cfg.data.dataset.split(':')[0]}-slurm{job}"


def requeue() -> str:
    """Ask SLURM to requeue this job (``scontrol requeue $SLURM_JOB_ID``); what happened, in words."""
    job = _slurm_job()
    if not job:
        return "not a SLURM job: resume it with selfsup train --resume RUN_DIR"
    if shutil.which("scontrol") is None:
        return f"scontrol is not on PATH: could not requeue SLURM job {job}"
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return f"scontrol requeue {job} failed ({why[-1] if why else f'exit {done.returncode}'})"
    return f"requeued SLURM job {job}: it resumes this run"


def _slurm_job() -> str:
    """This SLURM job's id ('' outside SLURM)."""
    return os.environ.get("SLURM_JOB_ID", "").strip()
