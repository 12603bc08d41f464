"""Backbones (named layers, shapes, errors) and MLP heads (spec parsing, layer outputs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.models import (
    BACKBONES,
    Backbone,
    backbone_options,
    build_backbone,
    build_mlp,
    head_layer_outputs,
    head_output_dim,
    parse_spec,
)

# (name, sample_shape, kwargs, expected out_dim, expected layer names); small widths keep the tests fast.
CASES = [
    ("conv1d", (1, 40), {"width": 8}, 32, ["stem", "layer1", "layer2", "layer3", "pool"]),
    (
        "conv1d",
        (2, 40),
        {"width": 8, "pool": "flatten"},
        32 * 10,
        ["stem", "layer1", "layer2", "layer3", "flatten"],
    ),
    ("conv1d", (1, 41), {"width": 4, "pool": "flatten", "blocks": [1, 2, 1]}, 16 * 11, None),
    ("convnet", (1, 8, 8), {"width": 8}, 32, ["stem", "layer1", "layer2", "layer3", "pool"]),
    ("convnet", (3, 32, 32), {"width": 4, "blocks": 2}, 16, None),
    (
        "resnet18",
        (3, 32, 32),
        {"small_input": True},
        512,
        ["stem", "layer1", "layer2", "layer3", "layer4", "pool"],
    ),
    ("resnet18", (3, 32, 32), {"small_input": False}, 512, None),
    ("mlp", (1, 40), {"hidden": "32-16"}, 16, ["fc1", "fc2"]),
    ("mlp", (64,), {"hidden": "24"}, 24, ["fc1"]),
]


def _ids(case):
    return f"{case[0]}-{'x'.join(map(str, case[1]))}-{case[2]}"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_backbone_shapes_and_layers(case):
    name, shape, kwargs, out_dim, names = case
    model = build_backbone(name, shape, **kwargs)
    assert isinstance(model, Backbone)
    assert model.out_dim == out_dim
    if names is not None:
        assert model.layer_names == names
    assert list(model.layer_dims) == model.layer_names
    assert model.layer_dims[model.layer_names[-1]] == out_dim
    x = torch.randn(2, *shape)
    model.eval()  # deterministic BN so forward and forward_layers can be compared exactly
    with torch.no_grad():
        z = model(x)
        feats = model.forward_layers(x)
    assert z.shape == (2, out_dim)
    assert list(feats) == model.layer_names
    for layer, f in feats.items():
        assert f.shape == (2, model.layer_dims[layer]), layer
        assert torch.isfinite(f).all()
    torch.testing.assert_close(feats[model.layer_names[-1]], z)


def test_forward_matches_last_layer_in_train_mode():
    model = build_backbone("conv1d", (1, 40), width=8)
    x = torch.randn(16, 1, 40)
    torch.manual_seed(1)
    z = model(x)
    last = model.forward_layers(x, [model.layer_names[-1]])
    assert list(last) == ["pool"]
    torch.testing.assert_close(last["pool"], z)


def test_intermediate_layer_is_global_average_pool_of_feature_map():
    model = build_backbone("convnet", (1, 8, 8), width=4).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        fmap = model.stages["layer2"](model.stages["layer1"](model.stages["stem"](x)))
        feats = model.forward_layers(x, ["layer2"])
    assert fmap.shape == (2, 8, 4, 4)
    torch.testing.assert_close(feats["layer2"], fmap.mean(dim=(2, 3)))


def test_forward_layers_selection_network_order_and_dedup():
    model = build_backbone("conv1d", (1, 40), width=4)
    x = torch.randn(4, 1, 40)
    feats = model.forward_layers(x, ["layer2", "stem", "layer2"])
    assert list(feats) == ["stem", "layer2"]
    assert feats["stem"].shape == (4, 4) and feats["layer2"].shape == (4, 8)
    assert model.forward_layers(x, "layer1")["layer1"].shape == (4, 4)
    assert model.forward_layers(x, []) == {}


def test_forward_layers_stops_after_deepest_requested_layer():
    model = build_backbone("conv1d", (1, 40), width=4)
    ran = []
    for name, stage in model.stages.items():
        stage.register_forward_hook(lambda *_args, n=name: ran.append(n))
    model.forward_layers(torch.randn(2, 1, 40), ["layer1"])
    assert ran == ["stem", "layer1"]


def test_unknown_layer_name_did_you_mean():
    model = build_backbone("conv1d", (1, 40), width=4)
    with pytest.raises(ConfigError) as err:
        model.forward_layers(torch.randn(2, 1, 40), ["layer4", "poll"])
    msg = str(err.value)
    assert "layer4" in msg and "Did you mean" in msg
    for name in model.layer_names:
        assert name in msg
    with pytest.raises(ConfigError, match="Did you mean 'pool'"):
        model.forward_layers(torch.randn(2, 1, 40), ["poll"])


@pytest.mark.parametrize(
    "name,shape,kwargs",
    [
        ("conv1d", (1, 40), {"width": 4}),
        ("convnet", (1, 8, 8), {"width": 4}),
        ("mlp", (10,), {"hidden": "8-8"}),
    ],
)
def test_gradient_flows_to_every_parameter(name, shape, kwargs):
    model = build_backbone(name, shape, **kwargs)
    x = torch.randn(4, *shape, requires_grad=True)
    model(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_gradient_flows_through_intermediate_layer():
    model = build_backbone("convnet", (3, 8, 8), width=4)
    x = torch.randn(4, 3, 8, 8)
    model.forward_layers(x, ["layer1"])["layer1"].pow(2).sum().backward()
    assert model.stages["stem"][0].weight.grad.abs().sum() > 0
    assert model.stages["layer3"][0].conv1.weight.grad is None


def test_resnet18_stems():
    small = build_backbone("resnet18", (3, 32, 32), small_input=True)
    normal = build_backbone("resnet18", (3, 32, 32), small_input=False)
    conv_s, conv_n = small.stages["stem"][0], normal.stages["stem"][0]
    assert conv_s.kernel_size == (3, 3) and conv_s.stride == (1, 1)
    assert isinstance(small.stages["stem"][3], nn.Identity)
    assert conv_n.kernel_size == (7, 7) and conv_n.stride == (2, 2)
    assert isinstance(normal.stages["stem"][3], nn.MaxPool2d)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        s = small.eval().forward_layers(x, ["stem"])["stem"]
        assert small.stages["stem"](x).shape == (2, 64, 32, 32)
        assert normal.eval().stages["stem"](x).shape == (2, 64, 8, 8)
    assert s.shape == (2, 64)
    assert not any(isinstance(m, nn.Linear) for m in small.modules())  # fc removed
    # auto: small stem for small images, ImageNet stem for large ones
    assert build_backbone("resnet18", (3, 32, 32)).small_input is True
    assert build_backbone("resnet18", (1, 96, 96)).stages["stem"][0].in_channels == 1


def test_resnet50_tiny_forward():
    model = build_backbone("resnet50", (3, 32, 32))
    assert model.out_dim == 2048
    assert model.layer_dims == {
        "stem": 64,
        "layer1": 256,
        "layer2": 512,
        "layer3": 1024,
        "layer4": 2048,
        "pool": 2048,
    }
    with torch.no_grad():
        z = model.eval()(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 2048) and torch.isfinite(z).all()


def test_state_dict_roundtrip_gives_same_output():
    a = build_backbone("conv1d", (1, 40), width=4).eval()
    torch.manual_seed(5)
    b = build_backbone("conv1d", (1, 40), width=4).eval()
    x = torch.randn(3, 1, 40)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))


def test_conv1d_avg_accepts_other_lengths_flatten_does_not():
    avg = build_backbone("conv1d", (1, 40), width=4)
    assert avg(torch.randn(2, 1, 64)).shape == (2, 16)
    flat = build_backbone("conv1d", (1, 40), width=4, pool="flatten")
    with pytest.raises(ShapeError, match=r"sample_shape=\(1, 64\)"):
        flat(torch.randn(2, 1, 64))


def test_unknown_backbone_did_you_mean():
    with pytest.raises(ConfigError) as err:
        build_backbone("resnet17", (3, 32, 32))
    msg = str(err.value)
    assert "Did you mean 'resnet18'" in msg
    for name in BACKBONES:
        assert name in msg


def test_unknown_backbone_option():
    with pytest.raises(ConfigError, match="Did you mean 'width'"):
        build_backbone("conv1d", (1, 40), widht=8)
    assert backbone_options("conv1d")["pool"] == "avg"
    assert backbone_options("resnet18") == {"small_input": None, "zero_init_residual": False}


@pytest.mark.parametrize(
    "name,shape,hint",
    [
        ("conv1d", (3, 32, 32), "convnet"),
        ("conv1d", (40,), "(1, 40)"),
        ("convnet", (1, 40), "conv1d"),
        ("resnet18", (1, 40), "conv1d"),
        ("resnet50", (2, 3, 32, 32), "channels, height, width"),
    ],
)
def test_wrong_sample_shape_dims(name, shape, hint):
    with pytest.raises(ShapeError) as err:
        build_backbone(name, shape)
    assert hint in str(err.value)
    assert str(shape) in str(err.value)


def test_bad_sample_shape_values():
    with pytest.raises(ShapeError):
        build_backbone("mlp", ())
    with pytest.raises(ShapeError):
        build_backbone("conv1d", (1, 0))
    with pytest.raises(ShapeError):
        build_backbone("conv1d", "abc")


def test_wrong_input_batch_shape():
    model = build_backbone("conv1d", (1, 40), width=4)
    with pytest.raises(ShapeError, match="B x 1 x 40"):
        model(torch.randn(2, 40))
    with pytest.raises(ShapeError, match="channel"):
        model(torch.randn(2, 3, 40))
    with pytest.raises(ShapeError):
        model.forward_layers(torch.randn(2, 1, 8, 8))
    mlp = build_backbone("mlp", (1, 40), hidden="8")
    with pytest.raises(ShapeError):
        mlp(torch.randn(2, 1, 41))
    img = build_backbone("convnet", (3, 8, 8), width=4)
    with pytest.raises(ShapeError):
        img(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("conv1d", {"width": 0}),
        ("conv1d", {"pool": "max"}),
        ("conv1d", {"stem_kernel": 4}),
        ("conv1d", {"blocks": [1, 1]}),
        ("convnet", {"blocks": 0}),
        ("mlp", {"hidden": ""}),
        ("mlp", {"hidden": "512-x"}),
    ],
)
def test_bad_backbone_options(name, kwargs):
    shape = (1, 40) if name != "convnet" else (1, 8, 8)
    with pytest.raises(ConfigError):
        build_backbone(name, shape, **kwargs)


# ------------------------------------------------------------------------------------------------ heads


def test_build_mlp_structure():
    head = build_mlp(64, "2048-2048-2048")
    assert isinstance(head, nn.Sequential)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head) == 2
    assert sum(isinstance(m, nn.ReLU) for m in head) == 2
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (64, 2048),
        (2048, 2048),
        (2048, 2048),
    ]
    assert linears[0].bias is not None and linears[1].bias is not None
    assert linears[-1].bias is None
    assert isinstance(head[-1], nn.Linear)  # no BN/ReLU after the last layer
    assert head_output_dim(head, 64) == 2048


def test_build_mlp_single_layer_and_bias():
    head = build_mlp(16, "8", last_bias=True)
    assert len(head) == 1 and head[0].bias is not None
    assert build_mlp(16, 8)[0].out_features == 8
    x = torch.randn(5, 16)
    assert head(x).shape == (5, 8)


def test_build_mlp_empty_is_identity():
    head = build_mlp(16, "")
    assert isinstance(head, nn.Identity)
    assert isinstance(build_mlp(16, None), nn.Identity)
    assert head_output_dim(head, 16) == 16
    assert head_layer_outputs(head, torch.randn(2, 16)) == {}


def test_parse_spec():
    assert parse_spec("2048-2048-2048") == [2048, 2048, 2048]
    assert parse_spec(" 8 - 16 ") == [8, 16]
    assert parse_spec("") == [] and parse_spec(None) == []
    assert parse_spec(32) == [32]


@pytest.mark.parametrize("spec", ["2048-abc", "0", "8-0-8", "8--8", "-8", "8-", "1.5", "8x8", True, [8, 8]])
def test_bad_spec(spec):
    with pytest.raises(ConfigError) as err:
        build_mlp(16, spec)
    assert "2048-2048-2048" in str(err.value)
    assert isinstance(err.value, SelfsupError)


@pytest.mark.parametrize("in_dim", [0, -3, 2.0])
def test_bad_in_dim(in_dim):
    with pytest.raises(ConfigError):
        build_mlp(in_dim, "8")


def test_head_layer_outputs():
    head = build_mlp(16, "32-24-8").eval()
    x = torch.randn(6, 16)
    with torch.no_grad():
        outs = head_layer_outputs(head, x)
        z = head(x)
    assert list(outs) == ["proj1", "proj2", "proj3"]
    assert outs["proj1"].shape == (6, 32) and outs["proj2"].shape == (6, 24) and outs["proj3"].shape == (6, 8)
    assert (outs["proj1"] >= 0).all() and (outs["proj2"] >= 0).all()  # post-ReLU hidden layers
    torch.testing.assert_close(outs["proj3"], z)
    # proj1 is the first Linear-BN-ReLU block applied to x
    with torch.no_grad():
        torch.testing.assert_close(outs["proj1"], head[2](head[1](head[0](x))))


def test_head_layer_outputs_non_sequential():
    lin = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    outs = head_layer_outputs(lin, x)
    assert list(outs) == ["proj1"]
    torch.testing.assert_close(outs["proj1"], lin(x))


@pytest.mark.parametrize(
    "stride,padding,kernel,length", [(1, 1, 3, 40), (2, 1, 3, 41), (1, 2, 5, 40), (2, 0, 1, 40)]
)
def test_conv1d_matmul_backward_passes_gradcheck(stride, padding, kernel, length):
    # the custom backward (conv_transpose1d + im2col matmul) against autograd's numerical Jacobian, float64
    from selfsup.models.backbones import _Conv1dMatmulBackward

    g = torch.Generator().manual_seed(length)
    x = torch.randn(3, 4, length, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(5, 4, kernel, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: _Conv1dMatmulBackward.apply(a, b, stride, padding), (x, w))


def test_conv1d_under_cpu_bf16_autocast_matches_nn_conv1d():
    # same forward and gradients as nn.Conv1d's own bfloat16 path (to bfloat16 precision), same state dict
    from selfsup.models.backbones import Conv1d

    torch.manual_seed(0)
    ours = Conv1d(8, 16, 3, stride=2, padding=1, bias=False)
    ref = nn.Conv1d(8, 16, 3, stride=2, padding=1, bias=False)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(32, 8, 20)
    outs, grads = [], []
    for conv in (ours, ref):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(xi)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        outs.append(y.float())
        grads.append((xi.grad, conv.weight.grad))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)  # the forward is the same oneDNN call
    for a, b in zip(grads[0], grads[1], strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * float(b.abs().max()))
    with torch.no_grad():  # float32 (no autocast): exactly nn.Conv1d
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_conv1d_custom_backward_only_where_it_pays():
    # float64 stays float64 under autocast (as nn.Conv1d), and long signals take nn.Conv1d's own path
    from selfsup.models.backbones import MATMUL_BACKWARD_MAX_LENGTH, Conv1d

    conv = Conv1d(4, 6, 3, padding=1, bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv.double()(torch.randn(2, 4, 8, dtype=torch.float64)).dtype == torch.float64
        y = conv.float()(torch.randn(2, 4, MATMUL_BACKWARD_MAX_LENGTH + 1, requires_grad=True))
        assert y.dtype == torch.bfloat16 and "Convolution" in type(y.grad_fn).__name__
        y = conv(torch.randn(2, 4, MATMUL_BACKWARD_MAX_LENGTH, requires_grad=True))
        assert "_Conv1dMatmulBackward" in type(y.grad_fn).__name__


def test_models_without_batch_norm():
    """``batch_norm=False`` (mlp backbone) and ``head_batch_norm=False`` (heads): no BatchNorm anywhere, so a
    sample's embedding does not depend on its batch (what makes 1 and N processes agree on CPUs)."""
    from selfsup.methods import SSLModel, get_method

    backbone = build_backbone("mlp", (1, 8, 8), hidden="32-32", batch_norm=False)
    model = SSLModel(get_method("byol"), backbone, "32-16", "8-16", head_batch_norm=False)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.randn(6, 1, 8, 8)
    model.train()
    assert torch.allclose(
        model.projector(model.backbone(x))[:2], model.projector(model.backbone(x[:2])), atol=1e-6
    )
    with_bn = SSLModel(get_method("byol"), build_backbone("mlp", (1, 8, 8), hidden="32-32"), "32-16", "8-16")
    n_bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in with_bn.modules())
    assert (
        n_bn == 2 + 1 + 1 + 3
    )  # backbone (2 layers), projector, predictor, target (backbone 2 + projector 1)
