"""Commands on one run: ``train`` it, ``embed`` data with it, ``probe`` it, redraw its ``report``, ``export``
its backbone."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from selfsup.cli.boundary import console, metrics_table, show, user_errors
from selfsup.errors import SelfsupError


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

    Several processes or machines: torchrun --nproc-per-node N -m selfsup train ...
    (docs/guide/distributed.md).
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
        summary = fit(cfg, resume, True, console, not quiet, report=write_run_report)
    else:
        summary = fit(
            C.resolve(config, overrides), console=console, progress=not quiet, report=write_run_report
        )
    if summary.get("rank", 0) != 0:  # one of several processes: rank 0 reports
        return
    report = Path(summary["run_dir"]) / "report.html"
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


@user_errors
def embed(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    data: str = typer.Option(None, "--data", help="dataset spec (default: the run's dataset)"),
    data_args: str = typer.Option(None, "--data-args", help=DATA_ARGS_HELP),
    split: str = typer.Option("train", "--split", help="train or test"),
    layer: str = typer.Option(None, "--layer", help="named layer (default: backbone output)"),
    output: Path = typer.Option(
        ..., "-o", "--output", help="FILE.npz (embeddings with their sample ids) or FILE.npy (the matrix)"
    ),
    plot: Path = typer.Option(None, "--plot", help="also a picture: FILE.png, the 2-D map coloured by label"),
    map_method: str = typer.Option(
        "pca", "--map", help="the picture's 2-D map: pca, or umap (selfsup[umap])"
    ),
):
    """Embed a dataset with a trained run's backbone (or any named layer): an N x D matrix with the id of
    each sample (its file path for folder data, else its index), as .npz (or a bare .npy); with --plot, a
    picture of it."""
    from selfsup.embeddings import MAP_METHODS, check_embeddings_file, map_2d, save_embeddings
    from selfsup.methods import resolve_layer
    from selfsup.paths import check_output_file
    from selfsup.train import embed as embed_x
    from selfsup.train import load_run

    check_embeddings_file(output, "--output")
    if plot is not None:
        check_output_file(plot, ".png", "--plot")
        if map_method not in MAP_METHODS:
            raise SelfsupError(f"--map takes {' or '.join(MAP_METHODS)}, got '{map_method}'")
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
    xy = map_2d(z, map_method) if plot is not None else None  # before writing: a missing umap loses nothing
    save_embeddings(z, output, ids=part.sample_ids(), layer=layer)
    what = "with their ids " if output.suffix == ".npz" else ""
    console.print(f"wrote {tuple(z.shape)} embeddings of layer '{layer}' {what}to {output}")
    if plot is not None:
        from selfsup.report.embedding_maps import map_figure

        labels = None if part.y is None else part.y.cpu().numpy()
        map_figure({f"{map_method.upper()} of '{layer}' ({split}, {len(z)} samples)": xy}, labels).savefig(
            plot, dpi=110, bbox_inches="tight"
        )
        console.print(f"wrote {plot}")


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
        show(metrics_table(f"probes of {run_dir}", res))


@user_errors
def report(run_dir: Path = typer.Argument(..., help="a run directory")):
    """(Re)draw report.html for a run directory."""
    from selfsup.report import write_run_report

    if not (run_dir / "summary.json").is_file():
        raise SelfsupError(f"'{run_dir}' has no summary.json; is it a finished run directory?")
    console.print(f"wrote {write_run_report(run_dir)}")


@user_errors
def export(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    fmt: str = typer.Option(..., "--format", "-f", help="torchvision, timm, safetensors or onnx"),
    output: Path = typer.Option(None, "-o", "--output", help="export directory (default: RUN/export-FORMAT)"),
    epoch: str = typer.Option("last", "--epoch", help="last, auto (label-free, as select-epoch) or a number"),
    layer: str = typer.Option(
        "backbone", "--layer", help="a backbone layer, backbone (its output) or auto (label-free pick)"
    ),
    no_probes: bool = typer.Option(False, "--no-probes", help="no linear / kNN probes in the model card"),
):
    """Export a run's backbone in its library's format (torchvision, timm), as safetensors or as ONNX,
    with a model card (README.md and card.json): what was trained, every layer's label-free metrics and
    probes, and how to rebuild it with the library alone."""
    from selfsup.export import export_run

    out = export_run(run_dir, fmt, output, epoch=epoch, layer=layer, probes=not no_probes)
    card = json.loads((out / "card.json").read_text())
    console.print(
        f"wrote {out / card['weights']} (epoch {card['epoch']['epoch']}, layer '{card['layer']['name']}') "
        f"and its model card {out / 'README.md'}"
    )
