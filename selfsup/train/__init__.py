"""Training: the loop (:func:`fit`), optimisers and schedules, checkpoints."""

from selfsup.train.loop import build, embed, fit, probe_run

__all__ = ["build", "embed", "fit", "probe_run"]
