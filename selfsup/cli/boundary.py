"""The one rule every ``selfsup`` command follows: a user mistake prints ``error: ...`` (and at most one
indented hint line) and exits 2; anything else is a bug, said in one line with the traceback in a log file,
exit 1; Ctrl-C exits 130; a run stopped by the scheduler's SIGTERM or SIGUSR1 says where it stopped and
exits 143. Click's usage errors (unknown option, missing argument) follow the same rule.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfsup.errors import SelfsupError, Stopped, say_error

try:  # typer >= 0.20 ships its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException, UsageError

console = Console()
err_console = Console(stderr=True)

#: Columns of a console that writes to a pipe or a file: wide enough that no table is squeezed and no line
#: wraps (Rich's default there is 80 columns, which cut names and split every epoch line of a log in two).
PIPE_WIDTH = 100_000


def plain_when_piped() -> None:
    """Outside a terminal, the consoles neither wrap lines nor squeeze tables (see :func:`show`)."""
    for c in (console, err_console):
        if not c.is_terminal:
            c.width, c.soft_wrap = PIPE_WIDTH, True


def show(*tables: Table) -> None:
    """Print tables: boxed on a terminal; in a pipe or a file, plain aligned columns with full contents."""
    for t in tables:
        if not console.is_terminal:
            t.box, t.show_edge, t.pad_edge = None, False, False
        console.print(t)


def metrics_table(title: str, report: dict) -> Table:
    """A two-column table of the numbers in ``report``."""
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in report.items():
        if isinstance(v, (int, float)):
            t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    return t


def _os_error(err: OSError) -> str:
    what = err.strerror or str(err)
    where = err.filename if err.filename is not None else ""
    return f"{what}: '{where}'" if where else what


def _log_bug() -> Path:
    """Write the current exception's traceback to a log file; return its path."""
    directory = Path(os.environ.get("SELFSUP_LOG_DIR") or tempfile.gettempdir())
    path = directory / f"selfsup-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:  # readable by its owner only: the command line may hold a storage URL with a password
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(" ".join(sys.argv) + "\n\n" + traceback.format_exc())
    except OSError:
        path = Path("(could not write the log)")
    return path


def user_errors(fn):
    """The error boundary of a command (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except SelfsupError as err:
            if not getattr(err, "silent", False):  # several processes: rank 0 has said it already
                say_error(str(err))
            raise typer.Exit(2) from None
        except OSError as err:  # a path, a permission, a full disk: the user's to fix
            say_error(_os_error(err))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            say_error("interrupted")
            raise typer.Exit(130) from None
        except Stopped as stopped:  # the scheduler's signal: checkpointed at the step it stopped
            if str(stopped):  # rank 0 says where (the others stopped with it)
                err_console.print(f"stopped: {escape(str(stopped))}", highlight=False, soft_wrap=True)
            raise typer.Exit(143) from None
        except Exception as err:  # noqa: BLE001 - the last line of defence: a bug, not a user mistake
            log = _log_bug()
            say_error(
                f"internal error (a bug in selfsup, please report it): {type(err).__name__}: {err}\n"
                f"traceback written to {log}"
            )
            raise typer.Exit(1) from None

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def run_app(app: typer.Typer, prog_name: str = "selfsup") -> None:
    """Run the command line: click's usage errors become ``error:`` lines too (exit 2); Python warnings are
    one ``warning:`` line each."""
    warnings.showwarning = _show_warning
    plain_when_piped()
    try:
        code = app(prog_name=prog_name, standalone_mode=False)  # typer.Exit(n) comes back as n
    except UsageError as err:
        if not err.format_message():  # no arguments: click has printed the help
            sys.exit(0)
        hint = f"see '{err.ctx.command_path} --help'" if err.ctx is not None else "see 'selfsup --help'"
        say_error(f"{err.format_message()}\n{hint}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        say_error("interrupted")
        sys.exit(130)
    except ClickException as err:
        say_error(err.format_message())
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
