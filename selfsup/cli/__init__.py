"""The ``selfsup`` command: one Typer app, its commands registered here from the modules of this package.

=====================  ============================================================================
module                 commands
=====================  ============================================================================
:mod:`.runs`           ``train``, ``embed``, ``probe``, ``report``, ``export``
:mod:`.evaluations`    ``quality``, ``layers``, ``equivariance``, ``robustness``
:mod:`.sweeps`         ``sweep`` (and ``sweep summary``), ``select-epoch``
:mod:`.catalog`        ``datasets``, ``methods``
:mod:`.pde_app`        ``pde generate``, ``pde info``, ``pde evaluate``
:mod:`.objects3d_app`  ``objects3d preview``
:mod:`.boundary`       the error boundary (one ``error:`` line, exit 2) and output for terminals and pipes
=====================  ============================================================================

Every command imports what it needs (torch, optuna, h5py) when it runs, so that ``selfsup --help`` and
argument errors stay fast.
"""

from __future__ import annotations

import typer

from selfsup.cli import catalog, evaluations, runs, sweeps
from selfsup.cli.boundary import run_app
from selfsup.cli.objects3d_app import objects3d_app
from selfsup.cli.pde_app import pde_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Joint-embedding self-supervised learning that tells you how good it is without labels.",
)
app.command(context_settings={"allow_extra_args": False})(runs.train)
app.command()(runs.embed)
app.command()(runs.probe)
app.command()(runs.report)
app.command()(runs.export)
app.command()(evaluations.quality)
app.command()(evaluations.layers)
app.command("select-epoch")(sweeps.select_epoch)
app.command()(evaluations.equivariance)
app.command()(evaluations.robustness)
app.command()(catalog.datasets)
app.command()(catalog.methods)
app.add_typer(sweeps.sweep_app, name="sweep")
app.add_typer(pde_app, name="pde")
app.add_typer(objects3d_app, name="objects3d")


def main() -> None:
    """The ``selfsup`` console script."""
    run_app(app)
