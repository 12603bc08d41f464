"""``selfsup.load_backbone``: a trained backbone as a torch module, from an export directory or a run."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from selfsup.errors import SelfsupError
from selfsup.models.exported import LayerCut, is_export, read_export, rebuild


def load_backbone(source: str | Path, layer: str | None = None) -> nn.Module:
    """The backbone of ``source`` in eval mode on the CPU, ``forward(x)`` giving ``B x D`` features.

    ``source``: a directory written by ``selfsup export`` (any format but ONNX; cut at the card's layer) or
    a file in it, or a run directory (its newest checkpoint, cut at the backbone's output). ``layer`` reads
    another named layer of the backbone. Example::

        model = selfsup.load_backbone("runs/vicreg-mnist1d/export-safetensors")
        features = model(batch)  # float32, N x C x ... as in the card's "input"
    """
    path = Path(source).expanduser()
    if path.is_file() and is_export(path.parent):
        path = path.parent
    if is_export(path):
        state, card = read_export(path)
        model = rebuild(card, state)
    elif (path / "config.yaml").is_file():
        from selfsup.train import load_run

        c, _ = load_run(path, device="cpu")
        model = LayerCut(c.model.backbone, c.model.backbone.layer_names[-1]).eval()
    else:
        raise SelfsupError(
            f"'{source}' is neither an export (a directory with card.json) nor a run directory (config.yaml)"
        )
    return model if layer is None else LayerCut(model.backbone, layer).eval()
