"""The stop flag of :mod:`selfsup.train.preempt`: raised by the scheduler's signals; the handlers after it."""

import os
import signal

import pytest

from selfsup.errors import Stopped
from selfsup.train import preempt


def test_a_stop_signal_raises_the_flag_and_is_ignored_after_the_stop():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped), preempt.watching() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop and stop.signal_name == "SIGUSR1"  # the first one names the stop
        raise Stopped("at this step")
    # a leaving process must survive torchrun's SIGTERM, even while Python shuts down (which puts the
    # default action back for caught signals, not for ignored ones)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    signal.signal(signal.SIGTERM, before)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def test_without_a_stop_the_previous_handlers_come_back():
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGUSR1, mine)
    try:
        with preempt.watching() as stop:
            assert signal.getsignal(signal.SIGUSR1) == stop.set
        assert not stop and signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_process_stopped_by_another_ignores_the_signals_too():
    """Under torchrun a rank stops because another heard the signal: its own flag never rose."""
    try:
        with pytest.raises(Stopped), preempt.watching() as stop:
            raise Stopped("")
        assert not stop and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
