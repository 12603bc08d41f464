"""Models: backbones with named layers (registry ``BACKBONES``) and MLP heads built from spec strings."""

from selfsup.models.backbones import (
    BACKBONES,
    Backbone,
    BasicBlock1d,
    BasicBlock2d,
    Conv1dResNet,
    ConvNet,
    MLPBackbone,
    SmallResNet,
    TorchvisionResNet,
    backbone_options,
    build_backbone,
    check_backbone_options,
    get_backbone,
)
from selfsup.models.equivariant import ConcatPredictor, HyperPredictor, SplitHead
from selfsup.models.heads import build_mlp, head_depth, head_layer_outputs, head_output_dim, parse_spec

__all__ = [
    "BACKBONES",
    "Backbone",
    "BasicBlock1d",
    "BasicBlock2d",
    "Conv1dResNet",
    "ConvNet",
    "MLPBackbone",
    "SmallResNet",
    "TorchvisionResNet",
    "backbone_options",
    "build_backbone",
    "check_backbone_options",
    "get_backbone",
    "build_mlp",
    "ConcatPredictor",
    "HyperPredictor",
    "SplitHead",
    "head_depth",
    "head_layer_outputs",
    "head_output_dim",
    "parse_spec",
]
