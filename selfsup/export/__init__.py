"""Hand a trained backbone over: ``selfsup export`` writes one checkpoint of a run, cut at one layer, in
torchvision's, timm's, safetensors' or ONNX's format with a model card (:mod:`.run`, :mod:`.formats`,
:mod:`.card`); :func:`load_backbone` reads an export or a run back as a torch module (:mod:`.load`)."""

from selfsup.export.formats import FORMATS
from selfsup.export.load import load_backbone
from selfsup.export.run import export_run

__all__ = ["FORMATS", "export_run", "load_backbone"]
