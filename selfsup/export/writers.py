"""The four export formats: which backbones each takes, what it needs installed, how it is written and how
the library alone rebuilds it (the card's ``build`` and ``rebuild`` entries).

==============  ===================  =====================================================================
format          backbones            file
==============  ===================  =====================================================================
``torchvision`` ``torchvision:NAME`` ``backbone.pth``: ``net``'s state dict, as torchvision names it
``timm``        ``timm:NAME``        ``backbone.pth``: the timm model's state dict (``num_classes=0``)
``safetensors`` any                  ``backbone.safetensors``: the library's keys for a library backbone,
                                     selfsup's (``stages.*``) otherwise
``onnx``        any                  ``backbone.onnx``: the graph from input ``x`` (dynamic batch axis)
                                     to output ``features`` at the exported layer, checked by onnxruntime
==============  ===================  =====================================================================
"""

from __future__ import annotations

from pathlib import Path

import torch

from selfsup.errors import ConfigError, SelfsupError, unknown_name
from selfsup.models.exported import LayerCut, safetensors_module

FORMATS = ("torchvision", "timm", "safetensors", "onnx")
FILES = {
    "torchvision": "backbone.pth",
    "timm": "backbone.pth",
    "safetensors": "backbone.safetensors",
    "onnx": "backbone.onnx",
}
ONNX_TOLERANCE = 1e-4  # onnxruntime against torch, max abs difference; measured ~1e-6 on the tiny models


def onnx_modules():
    """``onnxruntime``, once torch's exporter has what it needs; else one error naming the extra."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export's dependencies)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"--format onnx needs onnx, onnxscript and onnxruntime ({err.name} is missing): "
            "pip install 'selfsup[onnx]'"
        ) from None
    return onnxruntime


def check_format(fmt: str, backbone: str) -> None:
    """``fmt`` can take a run whose backbone is ``backbone`` and its packages are installed."""
    if fmt not in FORMATS:
        raise unknown_name("export format", fmt, FORMATS)
    if fmt in ("torchvision", "timm") and not backbone.startswith(f"{fmt}:"):
        raise SelfsupError(
            f"--format {fmt} writes a {fmt} model's weights; this run's backbone is '{backbone}', not "
            f"{fmt}:NAME: export it with --format safetensors or onnx (any backbone takes those)"
        )
    if fmt == "safetensors":
        safetensors_module()
    if fmt == "onnx":
        onnx_modules()


def library_entry(cut: LayerCut, fmt: str) -> dict:
    """The card's ``library``, ``build``, ``head`` and ``rebuild`` entries: how to rebuild the export."""
    b = cut.backbone
    library = getattr(b, "library", None)
    load = {"safetensors": 'safetensors.torch.load_file("backbone.safetensors")'}.get(
        fmt, 'torch.load("backbone.pth", weights_only=True)'
    )
    if fmt == "onnx":
        code = [
            "import onnxruntime",
            'session = onnxruntime.InferenceSession("backbone.onnx")',
            'features = session.run(None, {"x": batch})[0]  # batch: float32 numpy, N x C x ...',
        ]
        return {"library": "onnxruntime", "build": None, "head": None, "rebuild": "\n".join(code)}
    if library is None:
        return {
            "library": "selfsup",
            "build": None,
            "head": None,
            "rebuild": 'import selfsup\nmodel = selfsup.load_backbone(".")  # this directory',
        }
    make = {"torchvision": "torchvision.models.get_model(**build)", "timm": "timm.create_model(**build)"}
    code = [
        f"import json, torch, {library}" + (", safetensors.torch" if fmt == "safetensors" else ""),
        'build = json.load(open("card.json"))["build"]',
        f"model = {make[library]}",
    ]
    if b.head:
        code.append(f"model.{b.head} = torch.nn.Identity()  # the classifier, not part of the backbone")
    code.append(f"model.load_state_dict({load})  # strict")
    return {"library": library, "build": dict(b.build), "head": b.head, "rebuild": "\n".join(code)}


def write_file(fmt: str, cut: LayerCut, path: Path) -> dict:
    """Write ``cut``'s export in ``fmt`` to ``path``; return what the card records of it (``key_prefix``;
    for ONNX the opset and onnxruntime's difference from torch)."""
    b = cut.backbone
    library = getattr(b, "library", None)
    state = (b.net if library else b).state_dict()
    prefix = "net." if library else ""
    if fmt in ("torchvision", "timm"):
        torch.save(state, path)
    elif fmt == "safetensors":
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        safetensors_module().save_file(tensors, str(path), metadata={"format": "pt"})
    else:
        return {"key_prefix": "", **_write_onnx(cut, path)}
    return {"key_prefix": prefix}


def _write_onnx(cut: LayerCut, path: Path) -> dict:
    """torch's exporter (``dynamo=True``), a dynamic batch axis; then onnxruntime on another batch size."""
    ort = onnx_modules()
    shape = tuple(cut.backbone.sample_shape)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, *shape, generator=gen)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(
            cut,
            (x,),
            input_names=["x"],
            output_names=["features"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))
    check = torch.randn(3, *shape, generator=gen)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"x": check.numpy()})[0])
    with torch.no_grad():
        diff = float((got - cut(check)).abs().max())
    if not diff <= ONNX_TOLERANCE:
        raise SelfsupError(
            f"the ONNX graph differs from the torch model by {diff:.2e} (> {ONNX_TOLERANCE:g}); "
            "export with --format safetensors instead"
        )
    return {"onnx_opset": program.model.opset_imports.get("", None), "onnxruntime_max_abs_diff": diff}
