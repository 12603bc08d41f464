"""Error classes for user mistakes.

Every error a user can fix (bad path, bad shape, NaN input, unknown name) is a :class:`SelfsupError`.
The CLI prints its message without a traceback and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
