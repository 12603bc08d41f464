"""Suite-wide rules.

- ``slow`` marks tests that train end to end or start processes; ``make test-fast`` deselects them. A test
  without the mark that takes longer than ``SLOW_S`` (set-up included: a module fixture that trains is
  paid by its first test) is listed at the end of the run, so that the fast loop stays fast.
- The CPU path (bfloat16 steps on a CPU with AMX tiles, float32 steps elsewhere) is decided by
  ``$SELFSUP_AMX`` where set (``1``/``0``), else by torch's probe: ``SELFSUP_AMX=0 make test`` runs the suite
  as on a CPU without AMX, ``SELFSUP_AMX=1 make test`` as on one with. Tests of either path set it
  themselves, so both paths run on every machine.
"""

from __future__ import annotations

import pytest

SLOW_S = 5.0
_unmarked_durations: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    if call.when in ("setup", "call") and item.get_closest_marker("slow") is None:
        _unmarked_durations[item.nodeid] = _unmarked_durations.get(item.nodeid, 0.0) + call.duration


def pytest_terminal_summary(terminalreporter):
    over = {k: v for k, v in _unmarked_durations.items() if v > SLOW_S}
    if not over:
        return
    terminalreporter.section(f"tests over {SLOW_S:g} s without the slow mark (mark them slow)", yellow=True)
    for nodeid, seconds in sorted(over.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
