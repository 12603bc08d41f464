"""The one rule every ``selfsup`` command follows: a user mistake prints ``error: ...`` and exits 2."""

from __future__ import annotations

import functools

import typer
from rich.console import Console

from selfsup.errors import SelfsupError

console = Console()
err_console = Console(stderr=True)


def user_errors(fn):
    """Turn a SelfsupError into 'error: ...' on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SelfsupError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
