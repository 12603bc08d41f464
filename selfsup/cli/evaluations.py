"""Label-free and labelled measures of embeddings and trained runs: ``quality`` of an embedding matrix, every
``layers``' quality and probes, SIE's ``equivariance``, ``robustness`` under controlled factors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from selfsup.cli.boundary import console, err_console, metrics_table, show, user_errors


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
    show(metrics_table(f"quality of {file}", rep))
    for w in rep.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}")


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
    from selfsup.evaluate.equivariance import equivariance_table, evaluate_equivariance
    from selfsup.report import write_run_report

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
    from selfsup.evaluate.robustness import evaluate_robustness
    from selfsup.report import write_run_report

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


@user_errors
def layers(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    layer: list[str] = typer.Option(None, "--layer", help="only these layers (repeat the option)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    no_probes: bool = typer.Option(False, "--no-probes", help="label-free metrics only (no linear / kNN)"),
):
    """Quality (RankMe ...) and probe accuracy of every backbone and projector layer (Guillotine)."""
    from selfsup.evaluate.layers import evaluate_layers
    from selfsup.report.layer_outputs import layers_table, write_layers
    from selfsup.select.layers import pick_layer

    result = evaluate_layers(run_dir, layers=layer or None, probes=not no_probes)
    if any(r["part"] == "backbone" for r in result["layers"]):
        result["label_free_layer"] = pick_layer(result)  # what `selfsup export --layer auto` cuts at
    jpath, ppath = write_layers(run_dir, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    show(layers_table(result))
    if "label_free_layer" in result:
        pick = result["label_free_layer"]
        console.print(f"label-free pick: {pick['pick']} ({pick['rule']})")
    if not result["labelled"] and not no_probes:
        err_console.print("note: the dataset has no labelled test split: probes skipped")
    console.print(f"wrote {jpath} and {ppath}")
