"""Rebuild exports with their own libraries alone (no selfsup import) and compare their features with the
ones selfsup computed: ``python library_roundtrip.py EXPORT_DIR...``. Each directory holds the export and
``expected.npz`` (``x``, ``features``) written by the test. Prints one JSON line per export."""

import json
import sys
from pathlib import Path

import numpy as np
import torch


def rebuild(directory: Path, card: dict):
    if card["format"] == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(directory / card["weights"]))
        return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    if card["library"] == "torchvision":
        import torchvision

        model = torchvision.models.get_model(**card["build"])
    else:
        import timm

        model = timm.create_model(**card["build"])
    if card["head"]:
        setattr(model, card["head"], torch.nn.Identity())
    if card["format"] == "safetensors":
        import safetensors.torch

        state = safetensors.torch.load_file(str(directory / card["weights"]))
    else:
        state = torch.load(directory / card["weights"], weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


for arg in sys.argv[1:]:
    directory = Path(arg)
    card = json.loads((directory / "card.json").read_text())
    expected = np.load(directory / "expected.npz")
    model = rebuild(directory, card)
    with torch.no_grad():
        got = model(torch.from_numpy(expected["x"]))
    diff = float((got - torch.from_numpy(expected["features"])).abs().max())
    print(json.dumps({"export": arg, "format": card["format"], "max_abs_diff": diff}))
assert not any(name == "selfsup" or name.startswith("selfsup.") for name in sys.modules), "selfsup imported"
