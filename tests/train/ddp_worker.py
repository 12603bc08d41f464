"""One process of a test job (tests/train/test_distributed.py): the ``selfsup`` command, with the test's
probes.

    [torchrun ...] tests/train/ddp_worker.py RECORD_DIR SELFSUP-ARGS...

Writes the loss of every training step of this process to ``RECORD_DIR/losses-rank<R>-attempt<A>.json``
when it exits. Faults the tests inject, by environment (these hooks live here, not in the library):

- ``DDP_TEST_KILL=RANK:STEP``: that rank SIGKILLs itself at that training step (first torchrun attempt only);
- ``DDP_TEST_NAN=RANK:STEP``: that rank's views turn NaN at that step;
- ``DDP_TEST_SIGNAL=RANK:STEP:NAME``: that rank sends itself signal NAME (``SIGUSR1``) at that training step
  and writes the time to ``RECORD_DIR/signalled.txt``.
"""

import atexit
import json
import os
import signal
import sys
import time
from pathlib import Path

import selfsup.methods
from selfsup.cli import main

RANK = int(os.environ.get("RANK", "0"))
ATTEMPT = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
RECORD = Path(sys.argv.pop(1))
LOSSES: list[float] = []


def _step_of(variable: str) -> int | None:
    value = os.environ.get(variable)
    if not value:
        return None
    rank, step = (int(v) for v in value.split(":")[:2])
    return step if rank == RANK else None


KILL_AT = _step_of("DDP_TEST_KILL") if ATTEMPT == 0 else None
NAN_AT = _step_of("DDP_TEST_NAN")
SIGNAL_AT = _step_of("DDP_TEST_SIGNAL")
_forward = selfsup.methods.SSLModel.forward


def forward(self, views, index, transform=None):
    step = len(LOSSES) + 1
    if step == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    if step == NAN_AT:
        views = [v * float("nan") for v in views]
    if step == SIGNAL_AT:
        (RECORD / "signalled.txt").write_text(str(time.time()))
        os.kill(os.getpid(), getattr(signal, os.environ["DDP_TEST_SIGNAL"].split(":")[2]))
    loss, feats = _forward(self, views, index, transform)
    LOSSES.append(float(loss.detach()))
    return loss, feats


selfsup.methods.SSLModel.forward = forward
atexit.register(lambda: (RECORD / f"losses-rank{RANK}-attempt{ATTEMPT}.json").write_text(json.dumps(LOSSES)))
sys.argv = ["selfsup", *sys.argv[1:]]
main()
