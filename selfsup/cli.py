"""The ``selfsup`` command. User mistakes print one clear line and exit with status 2."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from selfsup.cli_errors import console, err_console, user_errors
from selfsup.errors import SelfsupError

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
    console.print(_metrics_table(f"quality of {file}", rep))
    for w in rep.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}")


@app.command(context_settings={"allow_extra_args": False})
@user_errors
def train(
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. optim.lr=1e-3 train.epochs=50"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML preset (see configs/) or a run directory"),
    resume: Path = typer.Option(None, "--resume", help="continue the run in this directory exactly"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
):
    """Train a representation. With no argument: VICReg on MNIST-1D (the main job)."""
    from selfsup import config as C
    from selfsup.train import fit

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise SelfsupError(f"'{resume}' is not a run directory (no config.yaml)")
        cfg = C.resolve(config or resume, overrides)
        fit(cfg, run_dir=resume, resume=True, console=console, progress=not quiet)
    else:
        fit(C.resolve(config, overrides), console=console, progress=not quiet)


def _load_run(run_dir: Path):
    from selfsup import config as C
    from selfsup.train import build
    from selfsup.train import checkpoint as ckpt

    cfg = C.resolve(run_dir)
    state, _ = ckpt.load_latest(run_dir / "checkpoints")
    return cfg, state, build


@app.command()
@user_errors
def embed(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    data: str = typer.Option(None, "--data", help="dataset spec (default: the run's dataset)"),
    split: str = typer.Option("train", "--split", help="train or test"),
    layer: str = typer.Option(None, "--layer", help="named layer (default: backbone output)"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the .npy"),
):
    """Embed a dataset with a trained run's backbone (or any named layer) and save an N x D .npy."""
    from selfsup.data import load_dataset
    from selfsup.embeddings import save_embeddings
    from selfsup.train.loop import embed as embed_x

    cfg, state, build = _load_run(run_dir)
    ds = load_dataset(data or cfg.data.dataset, seed=cfg.train.seed)
    c = build(cfg, data=load_dataset(cfg.data.dataset, seed=cfg.train.seed) if data else ds)
    c.model.load_state_dict(state["model"])
    part = {"train": ds.train, "test": ds.test}.get(split)
    if part is None:
        raise SelfsupError(
            f"split '{split}' is not available for '{ds.name}'; use train"
            + ("" if ds.test is None else " or test")
        )
    if tuple(part.x.shape[1:]) != tuple(c.data.sample_shape):
        raise SelfsupError(
            f"samples of '{ds.name}' have shape {tuple(part.x.shape[1:])} but the run was "
            f"trained on {tuple(c.data.sample_shape)}"
        )
    layer = layer or c.model.backbone.layer_names[-1]
    z = embed_x(c.model, part.x, c.device, [layer])[layer]
    save_embeddings(z, output)
    console.print(f"wrote {tuple(z.shape)} embeddings of layer '{layer}' to {output}")


@app.command()
@user_errors
def probe(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    layer: str = typer.Option(None, "--layer", help="named layer (default: backbone output)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Linear probe and kNN (k = 20) of a trained run on its dataset's test split."""
    from selfsup.train.loop import probe_run

    cfg, state, build = _load_run(run_dir)
    c = build(cfg)
    c.model.load_state_dict(state["model"])
    if layer is not None and layer not in c.model.layer_names:
        from selfsup.errors import unknown_name

        raise unknown_name("layer", layer, c.model.layer_names)
    res = probe_run(c, layer)
    if not res:
        raise SelfsupError(f"dataset '{c.data.name}' has no labelled test split; probes need labels")
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        console.print(_metrics_table(f"probes of {run_dir}", res))


@app.command()
@user_errors
def datasets():
    """List the built-in datasets with sizes and shapes."""
    from selfsup.data import list_datasets

    t = Table(title="datasets")
    rows = list_datasets()
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*[str(v) for v in r.values()])
    console.print(t)


@app.command()
@user_errors
def report(run_dir: Path = typer.Argument(..., help="a run directory")):
    """(Re)draw report.html for a run directory."""
    from selfsup.report import write_run_report

    if not (run_dir / "summary.json").is_file():
        raise SelfsupError(f"'{run_dir}' has no summary.json; is it a finished run directory?")
    console.print(f"wrote {write_run_report(run_dir)}")


# --- label-free model selection (selfsup/select) and PDE data (selfsup/pde) ---
from selfsup.pde.cli import pde_app  # noqa: E402
from selfsup.select.cli import layers as _layers_command  # noqa: E402
from selfsup.select.cli import sweep_app  # noqa: E402

app.add_typer(sweep_app, name="sweep")
app.add_typer(pde_app, name="pde")
app.command("layers")(_layers_command)


if __name__ == "__main__":
    app()
