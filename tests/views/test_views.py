"""selfsup.views: per-sample random, batched, shape-preserving, reproducible; references for the kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.views import (
    VIEW_RECIPES,
    ImageViews,
    SignalViews,
    batch_shard,
    build_view_set,
    build_views,
    default_recipe,
)
from selfsup.views.image import (
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_flip_translate,
    gaussian_blur,
    sample_crop_boxes,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

CASES = [  # (recipe, sample_shape, view_index)
    ("simclr", (3, 32, 32), 0),
    ("byol", (3, 32, 32), 0),
    ("byol", (3, 32, 32), 1),
    ("vicreg", (3, 24, 20), 1),
    ("simclr", (1, 16, 16), 0),  # grey: colour ops skipped
    ("small-image", (1, 8, 8), 0),
    ("signal", (1, 40), 0),
    ("signal", (3, 25), 0),
]


def _batch(shape, n=16, device="cpu"):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=g)
    if len(shape) == 2:  # signals roughly in [-3, 3]
        x = 3 * (2 * x - 1)
    return x.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recipe,shape,view_index", CASES)
def test_shape_dtype_device_and_randomness(recipe, shape, view_index, device):
    views = build_views(recipe, shape, view_index=view_index)
    x = _batch(shape, device=device)
    a, b = views(x), views(x)
    for out in (a, b):
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert torch.isfinite(out).all()
    assert not torch.equal(a, b), "two calls must give different views"
    assert not torch.equal(a, x)
    # same torch seed -> same views
    torch.manual_seed(7)
    c = views(x)
    torch.manual_seed(7)
    d = views(x)
    assert torch.equal(c, d)


@pytest.mark.parametrize("recipe,shape,view_index", CASES)
def test_per_sample_randomness(recipe, shape, view_index):
    """A batch of identical samples: every row gets its own random parameters."""
    views = build_views(recipe, shape, view_index=view_index)
    x = _batch(shape, n=1).expand(12, *shape).contiguous()
    out = views(x).flatten(1)
    dist = torch.cdist(out, out)
    off_diag = dist[~torch.eye(12, dtype=torch.bool)]
    assert off_diag.min().item() > 1e-4


def test_kornia_backend_matches_contract():
    x = _batch((3, 32, 32), n=8)
    views = build_views("simclr", (3, 32, 32), backend="kornia")
    out = views(x)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    same = views(x[:1].expand(8, 3, 32, 32).contiguous()).flatten(1)
    assert torch.cdist(same, same)[~torch.eye(8, dtype=torch.bool)].min().item() > 1e-4


def test_byol_views_are_asymmetric():
    v0 = build_views("byol", (3, 96, 96), view_index=0)
    v1 = build_views("byol", (3, 96, 96), view_index=1)
    assert (v0.blur_p, v0.solarize_p) == (1.0, 0.0)
    assert (v1.blur_p, v1.solarize_p) == (0.1, 0.2)
    assert v0.blur_kernel == 11  # ~10 % of the side, odd
    pair = build_view_set("vicreg", (3, 96, 96), n_views=2)
    assert [m.blur_p for m in pair] == [1.0, 0.1]
    # small images drop the blur by default (SimCLR's CIFAR setting) but it can be switched back on
    assert build_views("simclr", (3, 32, 32)).blur_p == 0.0
    assert build_views("simclr", (3, 224, 224)).blur_p == 0.5
    assert build_views("simclr", (3, 32, 32), blur_p=0.5).blur_p == 0.5


def test_identity_settings_return_input():
    x = _batch((3, 12, 10), n=4)
    assert torch.allclose(ImageViews((3, 12, 10), crop_scale=None, flip_p=0.0)(x), x, atol=1e-6)
    flipped = ImageViews((3, 12, 10), crop_scale=None, flip_p=1.0)(x)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)
    sig = _batch((2, 30), n=4)
    off = SignalViews(
        max_shift=0,
        crop_scale=(1, 1),
        warp_strength=0,
        amplitude=(1, 1),
        max_trend=0,
        noise_std=0,
        corr_noise_std=0,
        mask_p=0,
    )
    assert torch.equal(off(sig), sig)


# ------------------------------------------------------------------------------------------- signal steps
_OFF = dict(
    max_shift=0,
    crop_scale=(1, 1),
    warp_strength=0,
    amplitude=(1, 1),
    max_trend=0,
    noise_std=0,
    corr_noise_std=0,
    mask_p=0,
)


def test_signal_warp_is_monotone_and_keeps_endpoints():
    ramp = torch.linspace(-1, 1, 40).expand(64, 1, 40).contiguous()
    out = SignalViews(**{**_OFF, "warp_strength": 0.5})(ramp)
    assert out.shape == ramp.shape
    assert (out.diff(dim=-1) >= -1e-6).all()  # a monotone warp of a ramp stays increasing
    assert torch.allclose(out[..., 0], ramp[..., 0], atol=1e-5)
    assert torch.allclose(out[..., -1], ramp[..., -1], atol=1e-5)
    assert not torch.allclose(out, ramp, atol=1e-3)


def test_signal_circular_shift_preserves_shape_and_mass():
    x = _batch((2, 40), n=32)
    out = SignalViews(**{**_OFF, "max_shift": 0.25})(x)
    assert out.shape == x.shape
    # a circular shift (with linear interpolation) keeps the sum of every channel exactly
    assert torch.allclose(out.sum(-1), x.sum(-1), atol=1e-4)
    assert not torch.allclose(out, x)


def test_signal_noise_levels():
    x = torch.zeros(512, 1, 40)
    white = SignalViews(**{**_OFF, "noise_std": 0.3})(x)
    assert abs(white.std().item() - 0.3) < 0.02
    corr = SignalViews(**{**_OFF, "corr_noise_std": 0.2, "corr_noise_sigma": 2.0})(x)
    assert abs(corr.std().item() - 0.2) < 0.02
    lag1 = lambda z: (z[..., 1:] * z[..., :-1]).mean() / z.pow(2).mean()  # noqa: E731
    assert lag1(corr).item() > 0.8 and abs(lag1(white).item()) < 0.1  # low-pass noise is correlated


def test_signal_mask_segment():
    x = torch.ones(64, 2, 40)
    out = SignalViews(**{**_OFF, "mask_p": 1.0, "max_mask": 0.1, "mask_value": 0.0})(x)
    masked = (out == 0).sum(-1)
    assert (masked[:, 0] == masked[:, 1]).all()  # the same segment in every channel
    assert masked.min().item() >= 1 and masked.max().item() <= 4
    assert ((out == 0) | (out == 1)).all()


# ------------------------------------------------------------------------------------------- image kernels
def test_colour_kernels_match_torchvision():
    x = torch.rand(6, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    for h in (-0.5, -0.2, 0.0, 0.13, 0.5):
        assert torch.allclose(adjust_hue(x, torch.full((6,), h)), TF.adjust_hue(x, h), atol=1e-5)
    assert torch.allclose(adjust_contrast(x, torch.full((6,), 0.4)), TF.adjust_contrast(x, 0.4), atol=1e-4)
    assert torch.allclose(
        adjust_saturation(x, torch.full((6,), 1.6)), TF.adjust_saturation(x, 1.6), atol=1e-4
    )
    blurred = gaussian_blur(x, torch.full((6,), 1.2), torch.ones(6, dtype=torch.bool), 5)
    assert torch.allclose(blurred, TF.gaussian_blur(x, [5, 5], [1.2, 1.2]), atol=1e-5)
    kept = gaussian_blur(x, torch.full((6,), 1.2), torch.zeros(6, dtype=torch.bool), 5)
    assert torch.allclose(kept, x, atol=1e-6)


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_crop_matches_grid_sample(padding_mode):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(10, 3, 20, 24, generator=g)
    torch.manual_seed(0)
    boxes = sample_crop_boxes(10, 20, 24, (0.08, 1.0), (3 / 4, 4 / 3), "cpu")
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 24 + 1e-4).all()
    area = boxes[:, 2] * boxes[:, 3] / (20 * 24)
    assert (area >= 0.08 - 1e-4).all() and (area <= 1 + 1e-4).all()
    flip = torch.arange(10) % 2 == 0
    shift = (torch.rand(10, 2, generator=g) - 0.5) * 0.4
    x0, y0, w, h = boxes.unbind(1)
    theta = torch.zeros(10, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -w / 24, w / 24)
    theta[:, 1, 1] = h / 20
    theta[:, 0, 2] = (2 * x0 + w) / 24 - 1 - 2 * shift[:, 0]
    theta[:, 1, 2] = (2 * y0 + h) / 20 - 1 - 2 * shift[:, 1]
    grid = F.affine_grid(theta, [10, 3, 20, 24], align_corners=False)
    ref = F.grid_sample(x, grid, padding_mode=padding_mode, align_corners=False)
    assert torch.allclose(crop_flip_translate(x, boxes, flip, shift, padding_mode), ref, atol=1e-5)


# ------------------------------------------------------------------------------------------- errors, registry
def test_errors_are_helpful():
    with pytest.raises(ConfigError, match="unknown view recipe 'simcrl'. Did you mean 'simclr'"):
        build_views("simcrl", (3, 32, 32))
    with pytest.raises(ConfigError, match="no option 'blur_prob'.*Did you mean 'blur_p'"):
        build_views("simclr", (3, 32, 32), blur_prob=0.5)
    with pytest.raises(ShapeError, match="'signal' recipe"):
        build_views("simclr", (1, 40))
    with pytest.raises(ShapeError, match="1-D signals"):
        build_views("signal", (3, 32, 32))
    views = build_views("simclr", (3, 32, 32))
    with pytest.raises(ShapeError, match=r"expected \(B, 3, 32, 32\)"):
        views(torch.rand(2, 3, 16, 16))
    with pytest.raises(ShapeError, match=r"\(B, C, L\)"):
        build_views("signal", (1, 40))(torch.rand(4, 40))
    with pytest.raises(ConfigError, match="probability"):
        build_views("simclr", (3, 32, 32), jitter_p=1.5)


def test_registry_and_defaults():
    assert {"simclr", "vicreg", "byol", "small-image", "signal"} <= set(VIEW_RECIPES)
    assert default_recipe((1, 40)) == "signal"
    assert default_recipe((1, 8, 8)) == "small-image"
    assert default_recipe((3, 32, 32)) == "simclr"
    assert build_views("simclr", (1, 32, 32)).grayscale_p == 0.0  # no colour ops on grey images


@pytest.mark.parametrize(
    "recipe,shape,options",
    [
        *((r, s, {"view_index": i}) for r, s, i in CASES),
        ("signal", (2, 40), {"noise_std": 0.1, "corr_noise_std": 0.2, "mask_p": 0.5, "max_trend": 0.2}),
        ("simclr", (3, 16, 16), {"noise_std": 0.05}),
    ],
)
def test_batch_shards_draw_the_rows_of_the_whole_batch(recipe, shape, options):
    """Several processes each holding rows of a batch (``batch_shard``) get, row for row, the views one
    process holding the whole batch gets from the same seed: exactly, not in distribution."""
    views = build_views(recipe, shape, **options)
    x = _batch(shape, n=12)
    torch.manual_seed(5)
    whole = views(x)
    for start, stop in ((0, 4), (4, 8), (8, 12), (3, 12)):
        torch.manual_seed(5)
        with batch_shard(start, 12):
            part = views(x[start:stop])
        assert torch.equal(part, whole[start:stop]), (start, stop)
    with batch_shard(10, 12), pytest.raises(SelfsupError, match="does not fit"):
        views(x[:4])


def test_kornia_backend_refuses_to_shard():
    views = build_views("simclr", (3, 16, 16), backend="kornia")
    with batch_shard(0, 8), pytest.raises(ConfigError, match="backend='torch'"):
        views(_batch((3, 16, 16), n=4))


@pytest.mark.parametrize("autocast", [False, True])
def test_cpu_row_selection_gives_the_values_of_the_whole_batch_path(monkeypatch, autocast):
    """On the CPU the jitter, grayscale and blur run only on their drawn rows, in chunks; the values (and,
    under bfloat16 autocast, the dtypes torch.where would promote to) are those of the all-rows path."""
    import selfsup.views.image as image

    def whole_batch(x, apply, fn):
        return torch.where(apply.view(-1, 1, 1, 1), fn(x, slice(None)), x)

    x = torch.rand(70, 3, 24, 24)
    views = build_views("simclr", (3, 24, 24), blur_p=0.5)
    out = {}
    for name in ("rows", "whole"):
        if name == "whole":
            monkeypatch.setattr(image, "_on_rows", whole_batch)
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out[name] = views(x)
    assert out["rows"].dtype == torch.float32 and torch.equal(out["rows"], out["whole"])
