"""Hand a trained backbone over: ``selfsup export`` writes one checkpoint of a run, cut at one layer, in
torchvision's, timm's, safetensors' or ONNX's format with a model card (:mod:`.exporter`, :mod:`.writers`,
:mod:`.card`); :func:`load_backbone` reads an export or a run back as a torch module (:mod:`.load`)."""

from selfsup.export.exporter import export_run
from selfsup.export.load import load_backbone
from selfsup.export.writers import FORMATS

__all__ = ["FORMATS", "export_run", "load_backbone"]
