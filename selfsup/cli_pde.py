"""``selfsup pde``: generate PDE datasets into HDF5 files and summarise them.

Mounted by the main command as ``app.add_typer(pde_app, name="pde")``. Heavy imports (torch, h5py) happen
inside the commands so that ``selfsup --help`` stays fast.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import typer
from rich.table import Table

from selfsup.cli_errors import console, user_errors
from selfsup.errors import ConfigError, SelfsupError
from selfsup.paths import check_output_file

pde_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="PDE datasets (KdV, KS, heat, Burgers) with exact Lie point symmetries.",
)


@pde_app.command()
@user_errors
def generate(
    equation: str = typer.Argument(..., help="kdv, ks, heat or burgers"),
    n: int = typer.Option(512, "--n", help="number of trajectories"),
    split: str = typer.Option(
        "train", "--split", help="group written in the file (appended to an existing file)"
    ),
    seed: int = typer.Option(None, "--seed", help="random seed (default: derived from the split name)"),
    batch_size: int = typer.Option(256, "--batch-size", help="trajectories solved at once"),
    output: Path = typer.Option(..., "-o", "--output", help="HDF5 file to write"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads during the solve"),
    float32: bool = typer.Option(False, "--float32", help="store u in float32 (solved in float64)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing split"),
    param: list[str] = typer.Option([], "--param", "-p", help="override a default, e.g. -p nx=128 -p T=50"),
):
    """Generate N trajectories of EQUATION into split S of FILE, with a progress bar."""
    import torch

    from selfsup.pde.generate import generate as run
    from selfsup.pde.generate import parse_options
    from selfsup.pde.io import list_splits, write_h5
    from selfsup.train.components import pick_device

    check_output_file(output, what="--output")
    if not split.strip() or "/" in split:
        raise ConfigError(f"--split must be a plain group name such as train or test, got {split!r}")
    device = pick_device(device)
    if output.exists() and split in list_splits(output) and not overwrite:
        raise SelfsupError(
            f"{output} already has a split '{split}'; choose another --split or pass --overwrite"
        )
    seed = zlib.crc32(split.encode()) % 2**31 if seed is None else seed
    data = run(
        equation,
        n,
        seed=seed,
        device=device,
        progress=True,
        batch_size=batch_size,
        dtype=torch.float32 if float32 else torch.float64,
        threads=threads,
        **parse_options(param, "--param expects KEY=VALUE"),
    )
    write_h5(output, data, split=split, overwrite=overwrite)
    typer.echo(
        f"wrote {data.n} {data.equation} trajectories {tuple(data.u.shape)} to {output}:{split} (seed {seed})"
    )


@pde_app.command()
@user_errors
def info(file: Path = typer.Argument(..., help="HDF5 file (selfsup or LPSDA layout)")):
    """Summarise a PDE file: equation, splits, shapes, dt/dx and coefficient ranges."""
    from selfsup.pde.io import list_splits, read_h5

    table = Table(title=str(file))
    for col in ("split", "equation", "u shape", "dtype", "dt range", "dx range", "coefficients"):
        table.add_column(col)
    for split in list_splits(file):
        d = read_h5(file, split)
        coeffs = ", ".join(f"{k} {_range(v)}" for k, v in d.coeffs.items()) or "-"
        table.add_row(
            split,
            d.equation,
            "x".join(map(str, d.u.shape)),
            str(d.u.dtype).replace("torch.", ""),
            _range(d.dt),
            _range(d.dx),
            coeffs,
        )
    console.print(table)


def _range(v) -> str:
    lo, hi = v.min().item(), v.max().item()
    return f"{lo:.4g}" if lo == hi else f"[{lo:.4g}, {hi:.4g}]"


@pde_app.command()
@user_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run trained on pde:PATH.h5 or pde-gen:EQUATION data"),
    seeds: int = typer.Option(3, "--seeds", help="seeds (supervised baseline, ridge split, solvers)"),
    sup_epochs: int = typer.Option(20, "--sup-epochs", help="epochs of the supervised regression baseline"),
    solver_steps: int = typer.Option(300, "--solver-steps", help="training steps of each time-stepper"),
    history: int = typer.Option(20, "--history", help="input steps of the time-stepper"),
    future: int = typer.Option(20, "--future", help="steps predicted per call of the time-stepper"),
    layer: str = typer.Option(None, "--layer", help="representation layer (default: backbone output)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    skip: list[str] = typer.Option([], "--skip", help="skip 'regression' or 'timestepping'"),
    solver_dilated: bool = typer.Option(
        True, "--solver-dilated/--solver-plain", help="dilated (default) or plain time-stepper convolutions"
    ),
    conditioning: str = typer.Option("shift", "--conditioning", help="shift (additive, default) or film"),
):
    """Coefficient regression (SSL + ridge vs supervised) and time-stepping (with/without the representation).

    Writes RUN_DIR/pde_eval.json and prints a table (mean +- std over seeds).
    """
    from selfsup.pde.evaluate import evaluate_run

    for s in skip:
        if s not in ("regression", "timestepping"):
            raise ConfigError(f"--skip takes 'regression' or 'timestepping', got '{s}'")
    r = evaluate_run(
        run_dir,
        seeds,
        sup_epochs,
        solver_steps,
        history,
        future,
        layer,
        device,
        skip=tuple(skip),
        solver_dilated=solver_dilated,
        conditioning=conditioning,
    )
    table = Table(title=f"{r['equation']}: {run_dir} ({len(r['seeds'])} seeds, layer {r['layer']})")
    for col in ("task", "target", "method", "mean", "std"):
        table.add_column(col, no_wrap=True)
    reg = r.get("regression", {})
    for name in reg.get("targets", []):
        for kind in ("ssl_linear", "supervised"):
            v = reg[kind][name]
            table.add_row("regression", name, kind, f"{v['mean']:.4g}", f"{v['std']:.2g}")
        table.add_row("regression", name, "train mean", f"{reg['mean'][name]:.4g}", "-")
    ts = r.get("timestepping")
    if ts:
        target = f"{ts['history']}->{ts['future']} x{ts['rollout_steps'] // ts['future']}"
        for kind in ("baseline", "ssl_conditioned"):
            v = ts[kind]
            table.add_row("time-stepping", target, kind, f"{v['mean']:.4g}", f"{v['std']:.2g}")
    table.caption = "regression: relative error |pred - true| / true; time-stepping: rollout NMSE"
    console.print(table)
    typer.echo(f"wrote {Path(run_dir) / 'pde_eval.json'} ({r['seconds']:.0f} s)")
