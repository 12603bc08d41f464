"""Error classes for user mistakes.

Every error a user can fix (bad path, bad shape, NaN input, unknown name) is a :class:`SelfsupError`.
The CLI prints its message without a traceback and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape


class SelfsupError(ValueError):
    """A user-facing error: the message says what is wrong and how to fix it."""


class ShapeError(SelfsupError):
    """Tensor or array with the wrong shape."""


class NonFiniteError(SelfsupError):
    """NaN or Inf where finite numbers are required."""


class ConfigError(SelfsupError):
    """Unknown or invalid configuration key or value."""


class CheckpointError(SelfsupError):
    """A checkpoint that is missing, truncated, corrupted or unsafe."""


class DivergenceError(SelfsupError):
    """Training produced a non-finite loss."""


class Stopped(Exception):  # noqa: N818 - not an error: the run did what the scheduler asked
    """A run stopped on the scheduler's signal after writing a checkpoint at its current step (the CLI
    prints the message and exits 143; :mod:`selfsup.train.preempt`)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid ones."""
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} '{name}'.{did_you_mean(name, choices)} Valid {kind}s: {', '.join(choices)}."
    )


def say_error(message: str) -> None:
    """``error: <first line>`` on stderr and, when the message has more, one indented line joining the rest
    (the CLI's error boundary, :mod:`selfsup.cli.boundary`; also rank 0 of a multi-process run)."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()] or ["(no message)"]
    err = Console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(lines[0])}", highlight=False, soft_wrap=True)
    if len(lines) > 1:
        err.print("  " + escape("; ".join(lines[1:])), highlight=False, soft_wrap=True)
