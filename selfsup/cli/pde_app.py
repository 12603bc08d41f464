"""``selfsup pde``: generate PDE datasets into HDF5 files and summarise them.

Mounted by the main command as ``app.add_typer(pde_app, name="pde")``. Heavy imports (torch, h5py) happen
inside the commands so that ``selfsup --help`` stays fast.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import typer
from rich.table import Table

from selfsup.cli.boundary import show, user_errors
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
def info(
    file: Path = typer.Argument(..., help="HDF5 file (selfsup or LPSDA layout)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
):
    """Summarise a PDE file: equation, splits, shapes, dt/dx and coefficient ranges."""
    from selfsup.pde.io import list_splits, read_h5

    rows = []
    for split in list_splits(file):
        d = read_h5(file, split)
        rows.append(
            {
                "split": split,
                "equation": d.equation,
                "u_shape": list(d.u.shape),
                "dtype": str(d.u.dtype).replace("torch.", ""),
                "dt": _range(d.dt),
                "dx": _range(d.dx),
                "coefficients": {k: _range(v) for k, v in d.coeffs.items()},
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=str(file))
    for col in ("split", "equation", "u shape", "dtype", "dt range", "dx range", "coefficients"):
        table.add_column(col)
    for r in rows:
        coeffs = ", ".join(f"{k} {_text(v)}" for k, v in r["coefficients"].items()) or "-"
        shape = "x".join(map(str, r["u_shape"]))
        table.add_row(r["split"], r["equation"], shape, r["dtype"], _text(r["dt"]), _text(r["dx"]), coeffs)
    show(table)


def _range(v) -> list[float]:
    """[min, max] of a tensor's values."""
    return [v.min().item(), v.max().item()]


def _text(r: list[float]) -> str:
    lo, hi = r
    return f"{lo:.4g}" if lo == hi else f"[{lo:.4g}, {hi:.4g}]"


@pde_app.command()
@user_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run trained on pde:PATH.h5 or pde-gen:EQUATION data"),
    seeds: int = typer.Option(3, "--seeds", help="seeds (supervised baseline, ridge split, solvers)"),
    sup_epochs: int = typer.Option(20, "--sup-epochs", help="epochs of the supervised regression baseline"),
    solver_steps: int = typer.Option(1000, "--solver-steps", help="training steps of each time-stepper"),
    solver: str = typer.Option("small", "--solver", help="time-stepper: small (ours) or lpsda (LPSDA's CNN)"),
    solver_optimizer: str = typer.Option(
        None, "--solver-optimizer", help="adam (ours) or lpsda (AdamW + LPSDA's steps); default: the solver's"
    ),
    solver_lr: float = typer.Option(None, "--solver-lr", help="default: adam 1e-3, lpsda 1e-4"),
    history: int = typer.Option(20, "--history", help="input steps of the time-stepper"),
    future: int = typer.Option(20, "--future", help="steps predicted per call of the time-stepper"),
    start: int = typer.Option(20, "--start", help="first input step of the test rollout (LPSDA: 20)"),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="give the solver log dx, log dt as inputs"),
    cond_dim: int = typer.Option(8, "--cond-dim", help="principal components of the code (0: all)"),
    cond_dropout: float = typer.Option(
        0.0, "--cond-dropout", help="share of training samples whose code is zeroed"
    ),
    diagnostics: str = typer.Option("oracle", "--diagnostics", help="extra codes: oracle,random or none"),
    layer: str = typer.Option(None, "--layer", help="representation layer (default: backbone output)"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    skip: list[str] = typer.Option([], "--skip", help="skip 'regression' or 'timestepping'"),
    labelled: int = typer.Option(None, "--labelled", help="use the first N training trajectories downstream"),
    solver_dilated: bool = typer.Option(
        True, "--solver-dilated/--solver-plain", help="small solver: dilated (default) or plain convolutions"
    ),
    conditioning: str = typer.Option("shift", "--conditioning", help="shift (additive, default) or film"),
    head: str = typer.Option("ridge", "--head", help="linear head: ridge (default) or sgd (the SSL code's)"),
    as_json: bool = typer.Option(False, "--json", help="print pde_eval.json's contents instead of tables"),
):
    """Coefficient regression (SSL + ridge vs supervised) and time-stepping (with/without the representation).

    Writes RUN_DIR/pde_eval.json and prints a table (mean +- std over seeds). Protocol: docs/pde-protocol.md.
    """
    from selfsup.pde.downstream import evaluate_run
    from selfsup.pde.stepping import SolverSpec

    for s in skip:
        if s not in ("regression", "timestepping"):
            raise ConfigError(f"--skip takes 'regression' or 'timestepping', got '{s}'")
    spec = SolverSpec(
        arch=solver,
        steps=solver_steps,
        optimizer=solver_optimizer,
        lr=solver_lr,
        history=history,
        future=future,
        start=start,
        grid=grid,
        dilated=solver_dilated,
        conditioning=conditioning,
        cond_dropout=cond_dropout,
    )
    diag = () if diagnostics.strip() in ("", "none") else tuple(d.strip() for d in diagnostics.split(","))
    r = evaluate_run(
        run_dir, seeds, sup_epochs, spec, cond_dim or None, diag, layer, device, tuple(skip), labelled, head
    )
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    show(*_evaluation_tables(r, run_dir))
    typer.echo(f"wrote {Path(run_dir) / 'pde_eval.json'} ({r['seconds']:.0f} s)")


def _pm(v: dict) -> str:
    return f"{v['mean']:.4g}" if len(v["values"]) == 1 else f"{v['mean']:.4g} ± {v['std']:.2g}"


def _evaluation_tables(r: dict, run_dir: Path) -> list[Table]:
    """Rich tables of a ``pde_eval.json`` result: regression errors per target, rollout errors per code."""
    title = f"{r['equation']}: {run_dir} ({len(r['seeds'])} seeds, layer {r['layer']})"
    tables = []
    reg = r.get("regression", {})
    if reg.get("targets"):
        table = Table(title=f"{title}: coefficient regression")
        for col in ("target", "method", "rel. error", "NMSE"):
            table.add_column(col, no_wrap=True)
        for name in reg["targets"]:
            for kind in ("ssl_linear", "supervised"):
                table.add_row(name, kind, _pm(reg[kind][name]), _pm(reg[f"{kind}_nmse"][name]))
            table.add_row(name, "train mean", f"{reg['mean'][name]:.4g}", f"{reg['mean_nmse'][name]:.4g}")
        table.caption = "relative error |pred - true| / |true|; NMSE mean (pred - true)^2 / mean true^2"
        tables.append(table)
    ts = r.get("timestepping")
    if ts:
        sv, share = ts["solver"], ts.get("fraction_of_oracle_gain", {})
        table = Table(title=f"{title}: time-stepping, {sv['arch']} solver, {sv['steps']} steps")
        for col in ("code", "NMSE (LPSDA)", "NMSE (global)", "oracle gain"):
            table.add_column(col, no_wrap=True)
        for kind in ("baseline", "ssl_conditioned", "oracle", "random"):
            if kind in ts:
                gain = "" if kind not in share else "no gain" if share[kind] is None else f"{share[kind]:.0%}"
                table.add_row(kind, _pm(ts[kind]["nmse_sum"]), _pm(ts[kind]["nmse_global"]), gain)
        first, last = sv["start"], sv["start"] + sv["history"] - 1
        table.caption = (
            f"rollout of {ts['rollout_steps']} steps from input steps {first}-{last}; "
            "LPSDA: per-step NMSE summed over the steps; global: sum err^2 / sum u^2; oracle gain: "
            "(baseline - code) / (baseline - oracle) of the mean LPSDA NMSE"
        )
        tables.append(table)
    return tables
