"""Models: backbones with named layers (registry ``BACKBONES``, and ``torchvision:NAME``) and MLP heads built
from spec strings."""

from selfsup.models.backbones import (
    Backbone,
    BasicBlock1d,
    BasicBlock2d,
    Conv1dResNet,
    ConvNet,
    MLPBackbone,
    SmallResNet,
    TorchvisionResNet,
)
from selfsup.models.equivariant import ConcatPredictor, HyperPredictor, SplitHead
from selfsup.models.heads import build_mlp, head_depth, head_layer_outputs, head_output_dim, parse_spec
from selfsup.models.library import TorchvisionBackbone
from selfsup.models.registry import (
    BACKBONES,
    backbone_options,
    build_backbone,
    check_backbone_options,
    get_backbone,
)

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
    "TorchvisionBackbone",
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
