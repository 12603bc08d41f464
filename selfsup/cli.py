"""The ``selfsup`` command. User mistakes print one clear line and exit with status 2.

The sub-commands of :mod:`selfsup.select` and :mod:`selfsup.pde` live in :mod:`selfsup.cli_sweep` and
:mod:`selfsup.cli_pde`. Every command imports what it needs (torch, optuna, h5py) when it runs, so that
``selfsup --help`` and argument errors stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from selfsup.cli_errors import console, err_console, run_app, show, user_errors
from selfsup.cli_objects3d import objects3d_app
from selfsup.cli_pde import pde_app
from selfsup.cli_sweep import layers as _layers_command
from selfsup.cli_sweep import select_epoch as _select_epoch_command
from selfsup.cli_sweep import sweep_app
from selfsup.errors import SelfsupError
from selfsup.paths import check_output_file

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Joint-embedding self-supervised learning that tells you how good it is without labels.",
)


def _metrics_table(title: str, report: dict) -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in report.items():
        if isinstance(v, (int, float)):
            t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    return t


@app.command()
@user_errors
def quality(
    file: Path = typer.Argument(..., help="embeddings: .npy, .npz or .pt holding an N x K matrix"),
    key: str = typer.Option(None, "--key", help="array to use inside a .npz (or a dict .pt)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    n_views: int = typer.Option(None, "--n-views", help="rows are n_views views per sample (enables LiDAR)"),
):
    """Label-free quality of an embedding matrix: RankMe, alpha-ReQ, NESum, stable rank, collapse ..."""
    from selfsup.embeddings import load_embeddings
    from selfsup.quality import quality_report

    rep = quality_report(load_embeddings(file, key), n_views=n_views)
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
        return
    show(_metrics_table(f"quality of {file}", rep))
    for w in rep.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}")


@app.command(context_settings={"allow_extra_args": False})
@user_errors
def train(
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. optim.lr=1e-3 train.epochs=50"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML preset (see configs/) or a run directory"),
    resume: Path = typer.Option(None, "--resume", help="continue the run in this directory exactly"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="processes on this machine (torchrun --standalone --nproc-per-node N)"
    ),
):
    """Train a representation. With no argument: VICReg on MNIST-1D (the main job).

    Several processes or machines: torchrun --nproc-per-node N -m selfsup train ... (README).
    """
    from selfsup import config as C
    from selfsup.report import write_run_report
    from selfsup.train import fit
    from selfsup.train.distributed import launch_local
    from selfsup.train.rundir import read_run_config

    if nproc > 1:  # the same command in nproc processes, started by torchrun's own engine
        if resume is None:
            C.resolve(config, overrides)  # a bad config is said once, here, not once per process
        args = [*(overrides or []), *(["--config", str(config)] if config else [])]
        args += [*(["--resume", str(resume)] if resume else []), *(["--quiet"] if quiet else [])]
        raise typer.Exit(launch_local(nproc, ["train", *args]))

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise SelfsupError(f"'{resume}' is not a run directory (no config.yaml)")
        saved = C.load_yaml(config) if config else read_run_config(resume)
        cfg = C.from_dict(C.apply_overrides(saved, list(overrides or [])))
        summary = fit(cfg, run_dir=resume, resume=True, console=console, progress=not quiet)
    else:
        summary = fit(C.resolve(config, overrides), console=console, progress=not quiet)
    if summary.get("rank", 0) != 0:  # one of several processes: rank 0 reports
        return
    report = write_run_report(summary["run_dir"])
    console.print(f"run directory: [bold]{summary['run_dir']}[/]  (report: {report})")


DATA_ARGS_HELP = "loader options of --data, as YAML, e.g. '{image_size: 96}' (default: the dataset's own)"


def _other_data(c, spec: str, data_args: str | None):
    """Another dataset for a trained run (``--data``, loaded with ``--data-args``), of the run's shape."""
    import yaml

    from selfsup.train.components import load_data

    try:
        args = yaml.safe_load(data_args) if data_args else {}
    except yaml.YAMLError:
        args = None
    if not isinstance(args, dict):
        raise SelfsupError(
            f"--data-args must be a YAML mapping such as '{{image_size: 96}}', got {data_args!r}"
        )
    other = load_data(c.cfg, spec, load_args=args)
    if tuple(other.sample_shape) != tuple(c.data.sample_shape):
        raise SelfsupError(
            f"samples of '{spec}' have shape {tuple(other.sample_shape)} but the run was trained on "
            f"{tuple(c.data.sample_shape)}; load them at that shape (--data-args, e.g. '{{image_size: "
            f"{c.data.sample_shape[-1]}}}')"
        )
    return other


@app.command()
@user_errors
def embed(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    data: str = typer.Option(None, "--data", help="dataset spec (default: the run's dataset)"),
    data_args: str = typer.Option(None, "--data-args", help=DATA_ARGS_HELP),
    split: str = typer.Option("train", "--split", help="train or test"),
    layer: str = typer.Option(None, "--layer", help="named layer (default: backbone output)"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the .npy"),
):
    """Embed a dataset with a trained run's backbone (or any named layer) and save an N x D .npy."""
    from selfsup.embeddings import save_embeddings
    from selfsup.methods import resolve_layer
    from selfsup.train import embed as embed_x
    from selfsup.train import load_run

    check_output_file(output, ".npy", "--output")
    c, _ = load_run(run_dir)
    ds = _other_data(c, data, data_args) if data else c.data
    part = {"train": ds.train, "test": ds.test}.get(split)
    if part is None:
        raise SelfsupError(
            f"split '{split}' is not available for '{ds.name}'; use train"
            + ("" if ds.test is None else " or test")
        )
    layer = resolve_layer(layer, c.model.layer_names)
    z = embed_x(c.model, part.x, c.device, [layer])[layer]
    save_embeddings(z, output)
    console.print(f"wrote {tuple(z.shape)} embeddings of layer '{layer}' to {output}")


@app.command()
@user_errors
def probe(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    layer: str = typer.Option(None, "--layer", help="named layer (default: backbone output)"),
    data: str = typer.Option(
        None, "--data", help="a labelled dataset spec of the same sample shape (default: the run's)"
    ),
    data_args: str = typer.Option(None, "--data-args", help=DATA_ARGS_HELP),
    as_json: bool = typer.Option(False, "--json"),
):
    """Linear probe and kNN (k = 20) of a trained run on its dataset's test split (or on ``--data``'s:
    a run trained on unlabelled images is probed on a labelled set, e.g. STL-10's train/test)."""
    from selfsup.train import load_run, probe_run

    c, _ = load_run(run_dir)
    if data:
        c.data = _other_data(c, data, data_args)
    res = probe_run(c, layer)
    if not res:
        raise SelfsupError(f"dataset '{c.data.name}' has no labelled test split; probes need labels")
    if "probes_skipped" in res:
        raise SelfsupError(f"no probe for '{run_dir}': {res['probes_skipped']}")
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        show(_metrics_table(f"probes of {run_dir}", res))


@app.command()
@user_errors
def equivariance(
    run_dir: Path = typer.Argument(..., help="a run directory trained on data with recorded transformations"),
    pairs: int = typer.Option(8000, "--pairs", min=100, help="view pairs per split for the R^2 probes"),
    epochs: int = typer.Option(40, "--epochs", min=1, help="epochs of the R^2 probes' MLP"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
):
    """SIE's evaluation (objects3d): linear probe on the invariant / equivariant parts and the whole,
    R^2 of the relative rotation (and colour) from two views' representations, predictor retrieval (MRR,
    Hit@k) against the identity, RankMe per part. Writes equivariance.json and a report section."""
    from selfsup.report import write_run_report
    from selfsup.train.equivariance import equivariance_table, evaluate_equivariance

    res = evaluate_equivariance(run_dir, seed=seed, n_pairs=pairs, epochs=epochs)
    if (run_dir / "summary.json").is_file():
        write_run_report(run_dir)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    t = Table(title=f"equivariance of {run_dir} ({res['method']})")
    for col in ("part", "dims", "RankMe", "linear acc", "rotation R^2", "colour R^2"):
        t.add_column(col, justify="right" if col != "part" else "left")
    for row in equivariance_table(res):
        t.add_row(*row)
    show(t)
    for name, r in res["retrieval"].items():
        hits = "  ".join(f"Hit@{k} {v:.3f}" for k, v in r["hits"].items())
        console.print(
            f"retrieval ({name}): MRR {r['mrr']:.3f}  {hits}  among {r['mean_candidates']:.0f} views"
        )


@app.command()
@user_errors
def robustness(
    run_dir: Path = typer.Argument(..., help="a run directory trained on objects3d"),
    layer: str = typer.Option(None, "--layer", help="named layer (default: backbone output)"),
    views: int = typer.Option(5, "--views", min=1, help="renders of each test object per varied factor"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Accuracy under controlled factors (Ibrahim et al. 2022): a linear probe trained on canonical renders
    of the run's training objects, tested on canonical test objects and with one factor varied at a time
    (pose, position, size, background, lighting, colour). Writes robustness.json/.png, a report section."""
    from selfsup.report import write_run_report
    from selfsup.train.robustness import evaluate_robustness

    res = evaluate_robustness(run_dir, layer, views)
    if (run_dir / "summary.json").is_file():
        write_run_report(run_dir)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    t = Table(title=f"robustness of {run_dir} ({res['method']}, layer {res['layer']})")
    parts = list(res["parts"])  # SIE: its invariant and equivariant parts, scored alike
    for col in ("varied factor", "accuracy", "change (points)", *(f"{p} part" for p in parts)):
        t.add_column(col, justify="left" if col == "varied factor" else "right")
    t.add_row(
        "none",
        f"{100 * res['canonical_accuracy']:.1f} %",
        "-",
        *(f"{100 * res['parts'][p]['canonical_accuracy']:.1f} %" for p in parts),
    )
    for name, r in res["factors"].items():
        by_part = (f"{100 * res['parts'][p]['factors'][name]['accuracy']:.1f} %" for p in parts)
        t.add_row(name, f"{100 * r['accuracy']:.1f} %", f"{-100 * r['drop']:+.1f}", *by_part)
    show(t)


@app.command()
@user_errors
def datasets(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """List the built-in datasets with sizes and shapes."""
    from selfsup.data import list_datasets

    rows = list_datasets()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="datasets")
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*[str(v) for v in r.values()])
    show(t)


@app.command()
@user_errors
def report(run_dir: Path = typer.Argument(..., help="a run directory")):
    """(Re)draw report.html for a run directory."""
    from selfsup.report import write_run_report

    if not (run_dir / "summary.json").is_file():
        raise SelfsupError(f"'{run_dir}' has no summary.json; is it a finished run directory?")
    console.print(f"wrote {write_run_report(run_dir)}")


# label-free model selection (selfsup/select) and PDE data (selfsup/pde)
app.add_typer(sweep_app, name="sweep")
app.add_typer(pde_app, name="pde")
app.add_typer(objects3d_app, name="objects3d")
app.command("layers")(_layers_command)
app.command("select-epoch")(_select_epoch_command)


def main() -> None:
    """The ``selfsup`` console script."""
    run_app(app)


if __name__ == "__main__":
    main()
