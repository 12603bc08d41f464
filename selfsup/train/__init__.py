"""Training: the loop (:func:`fit`), what a run is made of (:func:`build`, :func:`load_run`), what ``fit``
measures (:func:`embed`, :func:`probe_run`, the monitor and the final summary), optimisers and schedules,
checkpoints, the run directory and several processes. Evaluations of a finished run are in
:mod:`selfsup.evaluate`."""

from selfsup.train.components import Components, build, load_run, monitor_subset, pick_device
from selfsup.train.loop import fit
from selfsup.train.measure import embed, probe_run
from selfsup.train.rundir import read_metrics

__all__ = [
    "Components",
    "build",
    "embed",
    "fit",
    "load_run",
    "monitor_subset",
    "pick_device",
    "probe_run",
    "read_metrics",
]
