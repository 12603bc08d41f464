"""What ``selfsup export`` writes, read back: a backbone's weights (torch's format or safetensors'), the
export directory's ``card.json``, and a backbone cut at one named layer.

An export directory holds ``backbone.pth`` (``--format torchvision`` / ``timm``: the library's own state
dict), ``backbone.safetensors`` or ``backbone.onnx``, beside ``card.json`` and ``README.md`` (the model
card). The card's ``selfsup`` entry rebuilds the backbone in selfsup (:func:`rebuild`); its ``build`` entry
rebuilds it with the library alone. A library backbone's own keys lack the ``net.`` that selfsup's wrapper
adds (``card["key_prefix"]``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from selfsup.errors import CheckpointError, ConfigError, unknown_name
from selfsup.models.backbones import Backbone
from selfsup.models.registry import build_backbone

CARD = "card.json"


def safetensors_module():
    """``safetensors.torch``, or one error naming the extra that installs it."""
    try:
        import safetensors.torch
    except ImportError:
        raise ConfigError(
            "safetensors files need the safetensors package: pip install 'selfsup[safetensors]'"
        ) from None
    return safetensors.torch


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from a ``.safetensors`` file or a ``torch.save`` file (safe loader only)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state = safetensors_module().load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except Exception as err:  # weights_only refuses pickled code; anything else is not a weights file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"'{path}' is not a weights file the safe loaders accept: {first}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"'{path}' holds no state dict of tensors")
    return state


def read_card(directory: str | Path) -> dict:
    """The ``card.json`` of an export directory."""
    path = Path(directory) / CARD
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"'{directory}' is not a selfsup export (its {CARD}: {err})") from None
    if not isinstance(card, dict) or "selfsup" not in card or "format" not in card:
        raise CheckpointError(
            f"'{path}' is not the card of a selfsup export (no 'selfsup' or 'format' entry)"
        )
    return card


def is_export(path: str | Path) -> bool:
    return (Path(path) / CARD).is_file()


def read_export(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """An export's backbone weights in selfsup's keys, and its card."""
    card = read_card(directory)
    if card["format"] == "onnx":
        raise CheckpointError(
            f"'{directory}' is an ONNX export: a graph for onnxruntime, not weights to load into torch; "
            "export the run with --format safetensors (or torchvision/timm) for that"
        )
    state = read_state_dict(Path(directory) / card["weights"])
    prefix = card.get("key_prefix", "")
    return {prefix + k: v for k, v in state.items()}, card


class LayerCut(nn.Module):
    """A backbone read at one named layer: ``forward(x)`` is ``B x D``, the layer's features (the backbone's
    own output when ``layer`` is its last)."""

    def __init__(self, backbone: Backbone, layer: str) -> None:
        super().__init__()
        if layer not in backbone.layer_names:
            raise unknown_name("backbone layer", layer, backbone.layer_names)
        self.backbone, self.layer = backbone, layer
        self.out_dim = backbone.layer_dims[layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == self.backbone.layer_names[-1]:
            return self.backbone(x)
        return self.backbone.forward_layers(x, [self.layer])[self.layer]

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, out_dim={self.out_dim}"


def rebuild(card: dict, state: dict[str, torch.Tensor]) -> LayerCut:
    """The exported backbone as selfsup builds it, its weights loaded (strictly), cut at the card's layer,
    in eval mode."""
    spec = card["selfsup"]
    backbone = build_backbone(spec["backbone"], spec["sample_shape"], **spec["backbone_args"])
    try:
        backbone.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"the export's weights do not fit its own card's backbone ({first})") from None
    return LayerCut(backbone, card["layer"]["name"]).eval()
