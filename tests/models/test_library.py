"""``torchvision:NAME`` backbones: any torchvision classifier without its head, its top-level children as
named layers, weights from torchvision's cache or a local file, every mistake one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchvision import models as tvm
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.errors import ConfigError
from selfsup.models import build_backbone


def test_a_torchvision_resnet_without_its_head_and_with_named_layers():
    b = build_backbone("torchvision:resnet18", (3, 32, 32)).eval()
    assert b.layer_names == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "pool",
    ]
    assert b.out_dim == 512 and b.layer_dims["layer2"] == 128
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = b.forward_layers(x)
        assert torch.equal(feats["pool"], b(x))
        ref = tvm.resnet18()
        ref.load_state_dict({**b.net.state_dict(), "fc.weight": ref.fc.weight, "fc.bias": ref.fc.bias})
        ref.fc = torch.nn.Identity()
        assert torch.allclose(b(x), ref.eval()(x), atol=1e-6)  # the library's own model, head removed
    assert (feats["bn1"] < 0).any() and not (feats["relu"] < 0).any()  # read before the in-place ReLU
    assert list(b.forward_layers(x, ["layer3"])) == ["layer3"]


def test_a_vit_gives_its_class_token_and_its_mean_patch_token():
    b = build_backbone("torchvision:vit_b_16", (3, 32, 32), image_size=32).eval()  # 4 patches of 16 px
    assert b.layer_names == ["conv_proj", "encoder", "encoder.mean", "pool"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = b.forward_layers(x)
        tokens = b.net.encoder(torch.cat([b.net.class_token.expand(2, -1, -1), b.net._process_input(x)], 1))
    assert torch.allclose(feats["encoder"], tokens[:, 0]) and torch.allclose(
        feats["encoder.mean"], tokens[:, 1:].mean(1)
    )
    assert torch.allclose(feats["pool"], tokens[:, 0])


def test_weights_come_from_torchvisions_cache_or_a_file(tmp_path, monkeypatch):
    state = tvm.resnet18().state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / tvm.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1])
    torch.save(state, tmp_path / "mine.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing is downloaded: the file is already there
    for options in ({"weights": "IMAGENET1K_V1"}, {"weights_path": str(tmp_path / "mine.pth")}):
        b = build_backbone("torchvision:resnet18", (3, 32, 32), **options)
        assert all(torch.equal(v, state[k]) for k, v in b.net.state_dict().items()), options


@pytest.mark.parametrize(
    "name,shape,options,message",
    [
        ("torchvision:resnet19", (3, 32, 32), {}, "Did you mean 'resnet18'"),
        ("torchvision:resnet18", (3, 32, 32), {"weights": "IMAGENET"}, "has no weights 'IMAGENET'"),
        ("torchvision:resnet18", (3, 32, 32), {"num_clases": 3}, "unexpected keyword argument 'num_clases'"),
        ("torchvision:resnet18", (1, 8, 8), {}, "takes RGB images"),
        ("torchvision:resnet18", (3, 32, 32), {"weights_path": "nowhere.pth"}, "is not a file"),
    ],
)
def test_mistakes_are_config_errors(name, shape, options, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone(name, shape, **options)


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(tvm.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ConfigError, match="is for another architecture"):
        build_backbone("torchvision:resnet18", (3, 32, 32), weights_path=str(tmp_path / "r34.pth"))


@pytest.mark.slow
def test_a_torchvision_backbone_trains_and_reports_its_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "rgb.npz",
        x=rng.integers(0, 255, (64, 3, 16, 16), dtype=np.uint8),
        y=rng.integers(0, 2, 64),
    )
    args = [
        "data.dataset=arrays:rgb.npz",
        "model.backbone=torchvision:resnet18",
        "model.projector=64-32",
        "train.batch_size=32",
        "train.epochs=1",
        "data.monitor_size=32",
        "train.lidar_samples=0",
        "train.name=r",
    ]
    res = CliRunner().invoke(app, ["train", "--quiet", *args])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert {"layer2", "pool", "proj1"} <= set(summary["layers"])
    bad = CliRunner().invoke(
        app, ["train", "--quiet", *args[:-1], "model.backbone=torchvision:resnt18", "train.name=b"]
    )
    assert (
        bad.exit_code == 2
        and "Did you mean 'resnet18'" in bad.output
        and not (tmp_path / "runs" / "b").exists()
    )


TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 48, "num_heads": 3}


def test_a_timm_vit_names_its_blocks_and_gives_class_and_mean_tokens():
    b = build_backbone("timm:vit_tiny_patch16_224", (3, 32, 32), **TINY_VIT).eval()
    blocks = [n for i in range(3) for n in (f"blocks.{i}", f"blocks.{i}.mean")]
    assert b.layer_names == [*blocks, "norm", "norm.mean", "pool"] and b.out_dim == 48
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = b.forward_layers(x)
        tokens = b.net.forward_features(x)  # timm's own: 1 class token + 16 patch tokens, normalised
    assert tokens.shape == (2, 17, 48)
    assert torch.allclose(feats["norm"], tokens[:, 0]) and torch.allclose(
        feats["norm.mean"], tokens[:, 1:].mean(1)
    )
    assert torch.allclose(feats["pool"], b(x)) and torch.allclose(b(x), tokens[:, 0])


def test_a_timm_cnn_takes_the_samples_channels():
    b = build_backbone("timm:resnet18", (1, 16, 16))
    assert b.layer_names == ["act1", "layer1", "layer2", "layer3", "layer4", "pool"] and b.out_dim == 512


def test_timm_weights_come_from_a_local_file(tmp_path):
    import timm

    full = timm.create_model("vit_tiny_patch16_224", **TINY_VIT)  # with its classifier, as timm saves it
    torch.save(full.state_dict(), tmp_path / "vit.pth")
    b = build_backbone(
        "timm:vit_tiny_patch16_224", (3, 32, 32), weights_path=str(tmp_path / "vit.pth"), **TINY_VIT
    )
    mine = b.net.state_dict()
    assert mine and all(torch.equal(v, full.state_dict()[k]) for k, v in mine.items())
    other = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, embed_dim=24, num_heads=3
    )
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="its weights do not load"):
        build_backbone(
            "timm:vit_tiny_patch16_224", (3, 32, 32), weights_path=str(tmp_path / "other.pth"), **TINY_VIT
        )


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("timm:vit_tiny_patch16_22", {}, "Did you mean 'vit_tiny_patch16_224'"),
        ("timm:resnet18", {"num_clases": 3}, "num_clases"),
        ("timm:resnet18", {"weights_path": "nowhere.pth"}, "is not a file"),
    ],
)
def test_timm_mistakes_are_config_errors(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone(name, (3, 32, 32), **options)


def test_a_missing_timm_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "timm", None)  # import timm now fails
    with pytest.raises(ConfigError, match=r"pip install 'selfsup\[timm\]'"):
        build_backbone("timm:resnet18", (3, 32, 32))
