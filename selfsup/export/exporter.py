"""``selfsup export``: one checkpoint of a run, cut at one backbone layer, written in a library's format
with its model card, atomically (a temporary directory renamed into place: an error leaves nothing)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selfsup.errors import CheckpointError, SelfsupError
from selfsup.export.card import make_card, write_card
from selfsup.export.writers import FILES, check_format, library_entry, write_file
from selfsup.models.exported import LayerCut
from selfsup.paths import check_output_dir
from selfsup.select.layers import pick_layer
from selfsup.train import checkpoint as ckpt

READ_HOOKED = (
    "a forward hook on `{name}` of the library's model: a feature map averaged over its spatial axes, a "
    "token sequence's class token (`NAME`) or the mean of its patch tokens (`NAME.mean`)"
)


def export_run(
    run_dir: str | Path,
    fmt: str,
    output: str | Path | None = None,
    epoch: str = "last",
    layer: str = "backbone",
    probes: bool = True,
) -> Path:
    """Export ``run_dir``'s checkpoint of ``epoch`` (``last``, a number, or ``auto``: the label-free pick
    of ``select-epoch``) cut at ``layer`` (a backbone layer, ``backbone`` for its output, or ``auto``: the
    label-free pick of :mod:`selfsup.select.layers`) in format ``fmt``; return the export directory."""
    from selfsup.evaluate.layers import score_layers
    from selfsup.train import load_run
    from selfsup.train.rundir import read_run_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise SelfsupError(f"'{run_dir}' is not a run directory (no config.yaml)")
    check_format(fmt, str(read_run_config(run_dir).get("model", {}).get("backbone", "")))
    out = Path(output) if output is not None else run_dir / f"export-{fmt}"
    if out.exists():
        raise SelfsupError(f"'{out}' exists; remove it or give another directory with -o")
    check_output_dir(out, "-o")
    path, chosen_epoch = choose_checkpoint(run_dir, epoch)
    c, path = load_run(run_dir, device="cpu", checkpoint=path)
    scores = score_layers(c, path, probes=probes)
    cut = choose_layer(c, scores, layer)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        written = {"file": FILES[fmt], **write_file(fmt, cut["cut"], tmp / FILES[fmt])}
        card = make_card(
            c=c,
            fmt=fmt,
            checkpoint=path,
            epoch=chosen_epoch,
            layer=cut,
            scores=scores,
            library=library_entry(cut["cut"], fmt),
            written=written,
        )
        write_card(card, tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def choose_checkpoint(run_dir: Path, epoch: str) -> tuple[Path, dict]:
    """The checkpoint of ``epoch`` (``last``, ``auto`` or a number) and the card's ``epoch`` entry."""
    from selfsup.select.epochs import select_epoch
    from selfsup.select.selection import pick_highest

    kept = ckpt.epoch_checkpoints(run_dir / "checkpoints")
    if not kept:
        raise CheckpointError(f"'{run_dir}' has no checkpoint; was the run trained?")
    entry = {"epochs_trained": max(kept)}
    if epoch == "last":
        return kept[max(kept)], {"epoch": max(kept), "rule": "the newest checkpoint", **entry}
    if epoch != "auto":
        if not epoch.isdigit() or int(epoch) not in kept:
            raise SelfsupError(
                f"--epoch {epoch}: use last, auto or a kept epoch: {', '.join(map(str, sorted(kept)))} "
                "(train.keep_checkpoints keeps more)"
            )
        return kept[int(epoch)], {"epoch": int(epoch), "rule": "given (--epoch)", **entry}
    result = select_epoch(run_dir)
    comparable = [e for e in result["epochs"] if not e["excluded"] and e["epoch"] in kept]
    if not comparable:
        raise SelfsupError(
            f"--epoch auto: no kept checkpoint of '{run_dir}' is past the early phase; keep more checkpoints "
            "(train.keep_checkpoints) or give --epoch"
        )
    best = comparable[pick_highest([e["score"] for e in comparable], result["direction"])]
    most = "highest" if result["direction"] == "maximize" else "lowest"
    rule = f"select-epoch: the {most} {result['metric']} after the early phase, among the kept checkpoints"
    entry["scores"] = {str(e["epoch"]): e["score"] for e in result["epochs"]}
    if result["pick"] != best["epoch"]:
        entry["note"] = f"epoch {result['pick']} scored best but its checkpoint was not kept"
    return kept[best["epoch"]], {"epoch": best["epoch"], "rule": rule, **entry}


def choose_layer(c, scores: dict, layer: str) -> dict:
    """The card's ``layer`` entry for ``layer`` (a name, ``backbone`` or ``auto``), with ``cut``: the
    backbone cut there."""
    from selfsup.methods import resolve_layer

    backbone = c.model.backbone
    if layer == "auto":
        picked = pick_layer(scores)
        name, rule = picked["pick"], picked["rule"]
        extra = {"scores": picked["scores"], "tied": picked["tied"]}
    else:
        name = resolve_layer(layer, c.model.layer_names)
        if name not in backbone.layer_names:
            raise SelfsupError(
                f"layer '{name}' is the projector's; an export holds the backbone: choose one of "
                f"{', '.join(backbone.layer_names)} (or auto)"
            )
        rule, extra = ("the backbone's output" if layer == "backbone" else "given (--layer)"), {}
    cut = LayerCut(backbone, name).eval()
    if name == backbone.layer_names[-1]:
        read = "the model's own output (`model(x)`)"
    elif getattr(backbone, "library", None):
        read = READ_HOOKED.format(name=name.removesuffix(".mean"))
    else:
        read = "`selfsup.load_backbone` returns the backbone cut at this layer"
    return {"name": name, "dim": cut.out_dim, "rule": rule, "read": read, **extra, "cut": cut}
