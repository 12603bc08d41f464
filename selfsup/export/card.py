"""The model card beside an export: ``card.json`` (what programs read) and ``README.md`` (what people read,
the name the Hugging Face hub shows).

The card says what was trained (method, data, epochs, the config), how good it is (the label-free metrics
of every layer, and the linear and kNN probes when the data has labels), which checkpoint and which layer
were exported and by which rule, how to rebuild it (``build``/``rebuild``: the library alone; ``selfsup``:
selfsup's own builder) and what it takes as input.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

import selfsup

SHOWN = ("rankme", "rankme_norm", "alpha_req", "linear_acc", "knn_acc")  # the README's table columns


def source_commit() -> str | None:
    """The git commit of the selfsup source in use, when it runs from a checkout (else ``None``)."""
    root = Path(selfsup.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def input_entry(sample_shape, dtype: str) -> dict[str, Any]:
    values = "uint8 images divided by 255: values in [0, 1]" if dtype == "uint8" else "as stored, float32"
    return {"shape": ["N", *sample_shape], "dtype": "float32", "values": values, "name": "x"}


def make_card(
    *, c, fmt: str, checkpoint: Path, epoch: dict, layer: dict, scores: dict, library: dict, written: dict
) -> dict[str, Any]:
    """The card of an export of run components ``c`` (:func:`selfsup.train.load_run`)."""
    cfg, backbone = c.cfg, layer["cut"].backbone
    args = {k: v for k, v in cfg.model.backbone_args.items() if k not in ("weights", "weights_path")}
    dtype = str(c.data.train.x.dtype).replace("torch.", "")
    return {
        "format": fmt,
        "weights": written.pop("file"),
        **written,
        **library,
        "selfsup": {
            "backbone": cfg.model.backbone,
            "backbone_args": args,
            "sample_shape": list(backbone.sample_shape),
        },
        "layer": {k: v for k, v in layer.items() if k != "cut"},
        "epoch": epoch,
        "input": input_entry(backbone.sample_shape, dtype),
        "method": cfg.method.name,
        "data": c.data.name,
        "checkpoint": checkpoint.name,
        "metrics": scores["layers"],
        "probes": "linear and kNN (k = 20) on the test split" if scores["probes"] else None,
        "selfsup_version": selfsup.__version__,
        "commit": source_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"),
    }


def _metrics_table(card: dict) -> list[str]:
    rows = card["metrics"]
    cols = [k for k in SHOWN if any(r.get(k) is not None for r in rows)]
    lines = ["| layer | part | width | " + " | ".join(cols) + " |", "|---" * (3 + len(cols)) + "|"]
    for r in rows:
        cells = [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in cols]
        mark = " (exported)" if r["layer"] == card["layer"]["name"] else ""
        lines.append(f"| {r['layer']}{mark} | {r['part']} | {r['dim']} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(card: dict) -> str:
    """``README.md``: the card for people."""
    layer, epoch = card["layer"], card["epoch"]
    lines = [
        f"# {card['method']} backbone ({card['selfsup']['backbone']}) trained on {card['data']}",
        "",
        f"Self-supervised with selfsup {card['selfsup_version']}"
        + (f" (commit {card['commit'][:12]})" if card["commit"] else "")
        + f"; exported in the {card['format']} format on {card['created'][:10]}.",
        "",
        f"- **Checkpoint**: epoch {epoch['epoch']} of {epoch['epochs_trained']} ({card['checkpoint']}); "
        f"chosen by: {epoch['rule']}",
        f"- **Layer**: `{layer['name']}` ({layer['dim']} features); chosen by: {layer['rule']}",
        f"- **Input**: float32 batches shaped {' x '.join(map(str, card['input']['shape']))}, "
        f"{card['input']['values']}",
        "",
        "## Load it",
        "",
        "```python",
        card["rebuild"],
        "```",
        "",
        f"The layer: {layer['read']}",
        "",
        "## Quality of every layer",
        "",
        "Label-free metrics on the run's monitor subset (RankMe; RankMe / width; alpha-ReQ)"
        + (f"; probes: {card['probes']}." if card["probes"] else "; the data has no labels: no probes."),
        "",
        *_metrics_table(card),
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(card["config"], sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(card: dict, directory: Path) -> None:
    (directory / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (directory / "README.md").write_text(render_markdown(card))
