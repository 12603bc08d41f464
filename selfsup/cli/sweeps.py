"""Label-free selection: ``sweep`` (and ``sweep summary``) over hyper-parameters, ``select-epoch`` of a run.

Heavy imports (optuna, torch) happen inside the commands so that ``selfsup --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from selfsup.cli.boundary import console, err_console, show, user_errors

sweep_app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    help="Label-free hyper-parameter sweeps (Optuna): selfsup sweep --config SWEEP.yaml; "
    "selfsup sweep summary DIR.",
)


@sweep_app.callback()
@user_errors
def sweep(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="sweep YAML (see configs/sweeps/)"),
    storage: str = typer.Option(None, "--storage", help="database URL, overrides the file's storage"),
    workers: int = typer.Option(None, "--workers", min=1, help="worker processes here, overrides the file"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
):
    """Run a sweep: each trial is a normal run scored by a label-free metric (RankMe by default).

    Rerun the same command to resume a killed sweep, or on another machine with the same storage URL to
    add workers.
    """
    if ctx.invoked_subcommand is not None:
        return
    from selfsup.errors import SelfsupError

    if config is None:
        raise SelfsupError(
            "pass a sweep file: selfsup sweep --config SWEEP.yaml (examples in "
            "configs/sweeps/), or selfsup sweep summary DIR"
        )
    from selfsup.select.run import run_sweep

    try:
        run_sweep(config, storage=storage, workers=workers, console=console, progress=not quiet)
    except KeyboardInterrupt:
        err_console.print("interrupted: rerun the same command to resume the sweep")
        raise typer.Exit(130) from None


@sweep_app.command("summary")
@user_errors
def summary(
    sweep_dir: Path = typer.Argument(..., help="a sweep directory (holds sweep.yaml)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    storage: str = typer.Option(None, "--storage", help="database URL, if not the one in sweep.yaml"),
    rule: str = typer.Option(
        None, "--rule", help="selection rule: highest, threshold or a named rule (rankme-relative ...)"
    ),
    tol: float = typer.Option(None, "--tol", help="threshold rule: relative tolerance to the best score"),
    prefer: str = typer.Option(None, "--prefer", help="threshold rule: min or max value of --key"),
    key: str = typer.Option(None, "--key", help="threshold rule: the hyper-parameter to prefer"),
):
    """Table of a sweep, the label-free pick vs the label oracle; writes summary.json and report.html."""
    from selfsup.errors import SelfsupError
    from selfsup.select.run import sweep_summary
    from selfsup.select.summary import check_rule, tables

    if rule is not None:
        check_rule(rule)
    if prefer is not None and prefer not in ("min", "max"):
        raise SelfsupError(f"--prefer must be min or max, got '{prefer}'")
    if tol is not None and not 0 <= tol < 1:
        raise SelfsupError(f"--tol must be in [0, 1), got {tol}")
    result = sweep_summary(sweep_dir, storage=storage, rule=rule, tol=tol, prefer=prefer, key=key)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    show(*tables(result))
    console.print(f"wrote {Path(sweep_dir) / 'summary.json'} and {Path(sweep_dir) / 'report.html'}")


@user_errors
def select_epoch(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    metric: str = typer.Option("backbone/rankme", "--metric", help="label-free metric of metrics.jsonl"),
    direction: str = typer.Option(None, "--direction", help="maximize or minimize (default: by the metric)"),
    probe: bool = typer.Option(False, "--probe", help="accuracy: linear probe of each kept checkpoint"),
    all_epochs: bool = typer.Option(False, "--all-epochs", help="compare the early phase too"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
):
    """The epoch to keep, chosen without labels (highest RankMe by default, after the early phase when
    RankMe is still falling), and, when labels exist, how close it comes to the best epoch (gap in points,
    Kendall's tau over the compared epochs)."""
    from rich.table import Table

    from selfsup.select.epochs import select_epoch as _select

    if direction not in (None, "maximize", "minimize"):
        raise typer.BadParameter("use maximize or minimize", param_hint="--direction")
    result = _select(run_dir, metric, direction, probe, all_epochs)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    t = Table(
        title=f"{metric} per epoch of {run_dir} ({result['direction']}; accuracy: {result['accuracy']})"
    )
    for col in ("epoch", metric, "accuracy", "checkpoint kept", ""):
        t.add_column(col, justify="right")
    for e in result["epochs"]:
        acc = "-" if e["acc"] is None else f"{100 * e['acc']:.2f} %"
        mark = " + ".join(k for k in ("pick", "oracle") if e["epoch"] == result[k]).replace("oracle", "best")
        if e["excluded"]:
            mark = f"{mark} ({e['excluded']})" if mark else e["excluded"]
        t.add_row(str(e["epoch"]), f"{e['score']:.4g}", acc, "yes" if e["checkpoint"] else "no", mark)
    show(t)
    line = f"pick: epoch {result['pick']}"
    if result["gap_points"] is not None:
        tau = result["agreement"]["kendall_tau"]
        line += f"; best epoch {result['oracle']}, gap {result['gap_points']:.2f} points"
        line += f", Kendall tau {tau:.2f}" if tau is not None else ""
    console.print(line)
    if not any(e["checkpoint"] for e in result["epochs"] if e["epoch"] == result["pick"]):
        err_console.print(
            f"note: epoch {result['pick']}'s checkpoint is no longer kept; train with train.keep_checkpoints "
            "at least train.epochs to keep every epoch's"
        )
