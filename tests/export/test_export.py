"""``selfsup export`` and ``selfsup.load_backbone`` on tiny trained runs of three kinds of backbone
(selfsup's ``convnet``, ``torchvision:resnet18``, a ``timm`` ViT): every format round trips to the same
features (the library formats rebuilt by their libraries alone, in a process that never imports selfsup),
the card says what was exported and why, ``model.init_from`` takes an export, and every mistake is one
error line with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import selfsup
from selfsup import config as C
from selfsup.cli import app
from selfsup.export import export_run
from selfsup.select.layers import LAYER_RULE, pick_layer
from selfsup.train import build, fit

pytestmark = pytest.mark.slow  # every test reads a trained run
runner = CliRunner()
HERE = Path(__file__).parent
COMMON = [
    "model.projector=32-32",
    "train.batch_size=32",
    "train.epochs=3",
    "train.keep_checkpoints=3",
    "train.monitor_every=1",
    "data.monitor_size=32",
    "train.lidar_samples=0",
]
BACKBONES = {
    "conv": ["model.backbone=convnet", "model.backbone_args={width: 8}"],
    "tv": ["model.backbone=torchvision:resnet18"],
    "vit": [
        "model.backbone=timm:vit_tiny_patch16_224",
        "model.backbone_args={img_size: 16, patch_size: 8, depth: 2, embed_dim: 24, num_heads: 2}",
    ],
}
FORMATS = {"conv": ["safetensors", "onnx"], "tv": ["torchvision", "safetensors", "onnx"]}
FORMATS["vit"] = ["timm", "safetensors", "onnx"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of 3 epochs on 96 labelled 16 px RGB images, every checkpoint kept."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 255, (n, 3, 16, 16), dtype=np.uint8)  # noqa: E731
    np.savez(
        root / "rgb.npz",
        x=images(96),
        y=rng.integers(0, 3, 96),
        x_test=images(48),
        y_test=rng.integers(0, 3, 48),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    try:
        out = {}
        for name, args in BACKBONES.items():
            over = [
                f"data.dataset=arrays:{root / 'rgb.npz'}",
                *COMMON,
                *args,
                f"train.out_dir={root}",
                f"train.name={name}",
            ]
            out[name] = Path(
                fit(C.resolve(None, over), console=Console(quiet=True), progress=False)["run_dir"]
            )
        yield out
    finally:
        torch.set_num_threads(threads)


def test_every_format_round_trips_and_the_libraries_alone_rebuild_it(runs, tmp_path):
    x = torch.rand(5, 3, 16, 16)
    exports = []
    for name, formats in FORMATS.items():
        with torch.no_grad():
            want = selfsup.load_backbone(runs[name])(x)  # the run's newest checkpoint, its output
        for fmt in formats:
            out = export_run(runs[name], fmt, tmp_path / f"{name}-{fmt}", probes=fmt == "onnx")
            card = json.loads((out / "card.json").read_text())
            assert (
                card["format"] == fmt and (out / card["weights"]).is_file() and (out / "README.md").is_file()
            )
            assert card["epoch"]["epoch"] == 3 and card["layer"]["name"] == "pool"
            assert card["method"] == "vicreg" and card["selfsup_version"] == selfsup.__version__
            assert {r["layer"] for r in card["metrics"]} >= {"pool", "proj1"}
            if fmt != "onnx":  # selfsup reads its exports back to the same features
                with torch.no_grad():
                    assert torch.allclose(selfsup.load_backbone(out)(x), want, atol=1e-6), (name, fmt)
            if fmt == "onnx" or card["library"] in ("torchvision", "timm"):
                np.savez(out / "expected.npz", x=x.numpy(), features=want.numpy())
                exports.append(str(out))
    res = subprocess.run(
        [sys.executable, str(HERE / "library_roundtrip.py"), *exports], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    diffs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(diffs) == 7  # torchvision 2 (torchvision, safetensors), timm 2, onnx 3
    for d in diffs:
        assert d["max_abs_diff"] <= (1e-5 if d["format"] == "onnx" else 1e-6), d
    onnx_card = json.loads((tmp_path / "vit-onnx" / "card.json").read_text())
    assert onnx_card["onnxruntime_max_abs_diff"] <= 1e-5 and onnx_card["probes"]  # labelled: probes in
    assert all("linear_acc" in r and "knn_acc" in r for r in onnx_card["metrics"])


def test_label_free_epoch_and_layer(runs, tmp_path):
    from selfsup.select.epochs import select_epoch

    res = runner.invoke(
        app,
        [
            "export",
            str(runs["tv"]),
            "--format",
            "onnx",
            "--epoch",
            "auto",
            "--layer",
            "auto",
            "--no-probes",
            "-o",
            str(tmp_path / "auto"),
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "auto" / "card.json").read_text())
    assert card["epoch"]["epoch"] == select_epoch(runs["tv"])["pick"]  # every checkpoint is kept
    assert "select-epoch" in card["epoch"]["rule"] and len(card["epoch"]["scores"]) == 3
    layer = card["layer"]
    best = max(layer["scores"].values())  # the deepest layer within 1 % of the highest RankMe
    assert layer["rule"] == LAYER_RULE and layer["name"] == layer["tied"][-1]
    assert layer["tied"] == [k for k, v in layer["scores"].items() if v >= 0.99 * best]
    readme = (tmp_path / "auto" / "README.md").read_text()
    assert f"`{layer['name']}`" in readme and LAYER_RULE in readme
    cut = selfsup.load_backbone(runs["tv"], layer=layer["name"])  # what the ONNX graph outputs
    import onnxruntime

    x = torch.rand(4, 3, 16, 16)
    session = onnxruntime.InferenceSession(str(tmp_path / "auto" / "backbone.onnx"))
    with torch.no_grad():
        assert np.allclose(session.run(None, {"x": x.numpy()})[0], cut(x).numpy(), atol=1e-5)


def test_the_layer_rule_takes_the_deepest_layer_within_1_percent_of_the_highest_rankme():
    rows = [
        {"layer": "stem", "part": "backbone", "rankme": 20.0},
        {"layer": "layer2", "part": "backbone", "rankme": 31.29},
        {"layer": "layer3", "part": "backbone", "rankme": 25.0},
        {"layer": "pool", "part": "backbone", "rankme": 31.0},  # within 1 %: a tie, and deeper
        {"layer": "proj1", "part": "projector", "rankme": 90.0},  # the projector is not exported
        {"layer": "nan", "part": "backbone", "rankme": float("nan")},
    ]
    got = pick_layer({"layers": rows})
    assert got["pick"] == "pool" and got["tied"] == ["layer2", "pool"]
    assert set(got["scores"]) == {"stem", "layer2", "layer3", "pool", "nan"}
    rows[3]["rankme"] = 30.9  # 1.2 % below: no longer tied
    assert pick_layer({"layers": rows})["pick"] == "layer2"


def test_a_run_starts_from_an_export(runs, tmp_path):
    for name, fmt in (("conv", "safetensors"), ("tv", "torchvision")):
        out = export_run(runs[name], fmt, tmp_path / name, probes=False)
        over = [*COMMON, *BACKBONES[name], f"data.dataset={C.resolve(runs[name]).data.dataset}"]
        got = build(C.resolve(None, [*over, f"model.init_from={out}"])).model.backbone.state_dict()
        want = build(C.resolve(runs[name])).model.backbone.state_dict()  # random init: differs
        ref = selfsup.load_backbone(runs[name]).backbone.state_dict()
        assert any(not torch.equal(want[k], ref[k]) for k in ref)
        assert all(torch.equal(got[k], ref[k]) for k in ref), name
    bad = [*COMMON, *BACKBONES["conv"], f"data.dataset={C.resolve(runs['conv']).data.dataset}"]
    with pytest.raises(selfsup.SelfsupError, match="does not fit model.backbone"):
        build(C.resolve(None, [*bad, f"model.init_from={tmp_path / 'tv'}"]))  # another architecture


@pytest.mark.parametrize(
    "run,args,message",
    [
        ("conv", ["--format", "torchvision"], "backbone is 'convnet', not torchvision:NAME"),
        ("tv", ["--format", "timm"], "export it with --format safetensors or onnx"),
        ("vit", ["--format", "safetensor"], "Did you mean 'safetensors'"),
        ("conv", ["--format", "onnx", "--layer", "proj1"], "an export holds the backbone"),
        ("conv", ["--format", "onnx", "--layer", "stage9"], "unknown layer 'stage9'"),
        ("conv", ["--format", "onnx", "--epoch", "7"], "use last, auto or a kept epoch: 1, 2, 3"),
    ],
)
def test_mistakes_are_one_error_line_and_nothing_is_written(runs, tmp_path, run, args, message):
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(runs[run]), *args, "--no-probes", "-o", str(out)])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert res.output.startswith("error:") and "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_a_missing_extra_or_an_existing_directory_is_refused(runs, tmp_path, monkeypatch):
    res = runner.invoke(app, ["export", str(runs["conv"]), "--format", "safetensors", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "exists" in res.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    res = runner.invoke(app, ["export", str(runs["conv"]), "--format", "onnx", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "pip install 'selfsup[onnx]'" in res.output
    assert not (tmp_path / "o").exists()
    with pytest.raises(selfsup.SelfsupError, match="neither an export"):
        selfsup.load_backbone(tmp_path)
