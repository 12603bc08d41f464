"""objects3d: determinism, the recorded factors are the ones applied (rotation, position), the layout,
the split by instance, the cache, bad inputs and the preview command."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.data import load_dataset
from selfsup.data.objects3d import (
    CANONICAL_FACTORS,
    CLASSES,
    FACTOR_NAMES,
    canonical_pose,
    generate,
    make_shapes,
    render_views,
    sample_factors,
)
from selfsup.data.objects3d import loader as loader_module
from selfsup.data.objects3d.render import HALF_WIDTH
from selfsup.data.objects3d.shapes import ELLIPSOID
from selfsup.errors import ConfigError
from selfsup.rotations import axis_angle, canonical, multiply

SMALL = {"classes": 3, "instances": 2, "views": 3}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))


def _views(shapes, n, **changes):
    """Factors of ``n`` images of instance 0 under a fixed light along the view axis, centred, scale 1."""
    f = {k: v[:n] for k, v in sample_factors(2, 1, n, seed=5).items()}  # random rotations
    f.update(
        light=torch.tensor([0.0, 0.0, 1.0]).expand(n, 3),
        position=torch.zeros(n, 2),
        scale=torch.ones(n),
        hue=torch.full((n,), 0.1),
        background_hue=torch.full((n,), 0.6),
    )
    f["instance"] = torch.zeros(n, dtype=torch.int64)
    f.update(changes)
    return f


def test_generation_is_deterministic_per_seed():
    x1, y1, f1 = generate(**SMALL, seed=0)
    x2, y2, f2 = generate(**SMALL, seed=0)
    assert x1.dtype == torch.uint8 and x1.shape == (18, 3, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert all(torch.equal(f1[k], f2[k]) for k in FACTOR_NAMES)
    x3, _, f3 = generate(**SMALL, seed=1)
    assert not torch.equal(x1, x3) and not torch.equal(f1["quaternion"], f3["quaternion"])
    # an instance's views do not depend on how many views or instances were asked for
    x4, _, _ = generate(classes=3, instances=1, views=2, seed=0)
    assert torch.equal(x4[:2], x1[:2])


def test_rotation_about_the_view_axis_rotates_the_image():
    """The recorded quaternion is the rotation applied. For ``q' = r q`` with ``r`` +90 degrees about the
    camera's z axis (which points at the viewer), every camera point turns from +x towards +y, i.e.
    counter-clockwise on screen (rows grow downwards), so with the light along the view axis and the
    object centred, ``image(q') == torch.rot90(image(q), 1, dims=(-2, -1))`` (rows towards columns, numpy's
    counter-clockwise). Only edge pixels may differ, by float rounding; and ``r`` of -90 degrees is the
    other direction, which must not match (the chair and car have no such symmetry)."""
    shapes = make_shapes(3, 1, seed=2)[[0, 2]]  # chair, car
    n = 4
    f = _views(shapes, n)
    f["instance"] = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([0.0, 0.0, 1.0])
    turned = dict(
        f, quaternion=canonical(multiply(axis_angle(z, torch.tensor(math.pi / 2)), f["quaternion"]))
    )
    a = render_views(shapes, f, 64).float()
    b = render_views(shapes, turned, 64).float()
    diff = (b - torch.rot90(a, 1, dims=(-2, -1))).abs()
    assert diff.mean() < 0.5 and (diff > 16).float().mean() < 0.005, (diff.mean(), (diff > 16).float().mean())
    wrong = (b - torch.rot90(a, -1, dims=(-2, -1))).abs()
    assert wrong.mean() > 10 * diff.mean() + 1


def test_position_offset_moves_the_silhouette_as_projected():
    """An image-plane offset of (3 pixels right, 2 pixels up) moves the orthographic image by exactly that
    many pixels (the super-sampled grid shifts by whole sub-pixels): image(pos) equals image(0) shifted,
    and the silhouette's centroid (pixels away from the flat background) moves by (+3, -2) (x, row)."""
    shapes = make_shapes(3, 1, seed=0)
    pixel = 2 * HALF_WIDTH / 32
    n = 3
    base = _views(shapes, n, scale=torch.full((n,), 0.6), instance=torch.arange(n))
    moved = dict(base, position=torch.tensor([3 * pixel, 2 * pixel]).expand(n, 2))
    a, b = render_views(shapes, base, 32).float(), render_views(shapes, moved, 32).float()
    shifted = torch.roll(a, shifts=(-2, 3), dims=(-2, -1))
    assert (b - shifted).abs().amax() <= 2
    background = a[:, :, :1, :1]
    assert torch.allclose(
        _centroid(b, background) - _centroid(a, background), torch.tensor([3.0, -2.0]), atol=0.05
    )


def _centroid(images: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(column, row) centroid of the pixels that differ from the background."""
    mask = ((images - background).abs().sum(1) > 12).float()
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    return torch.stack([(cols * mask).sum((1, 2)), (rows * mask).sum((1, 2))], -1) / mask.sum((1, 2))[:, None]


def test_sphere_area_and_lambert_shading():
    """One ellipsoid of radius 0.5 seen at scale 1: the pixels it touches cover its area pi r^2 / pixel^2
    plus at most a rim of one pixel (2 pi r / pixel), and its centre, lit along the view axis, is
    albedo * (0.3 + 0.7) = the object's HSV colour (hue 0, s 0.7, v 0.9)."""
    sphere = torch.tensor([[[ELLIPSOID, 0, 0, 0, 0.5, 0.5, 0.5]]])
    f = _views(sphere, 1, hue=torch.zeros(1))
    img = render_views(sphere, f, 64).float()
    pixel = 2 * HALF_WIDTH / 64
    touched = ((img - img[:, :, :1, :1]).abs().sum(1) > 0).sum().item()
    assert 0 <= touched - math.pi * 0.25 / pixel**2 <= 2 * math.pi * 0.5 / pixel
    assert img[0, :, 32, 32].tolist() == pytest.approx([0.9 * 255, 0.27 * 255, 0.27 * 255], abs=2)


def test_recorded_factors():
    f = sample_factors(**SMALL, seed=0)
    n = 18
    assert set(f) == set(FACTOR_NAMES) and all(len(v) == n for v in f.values())
    assert f["instance"].dtype == torch.int64 and f["view"].dtype == torch.int64
    assert all(v.dtype == torch.float32 for k, v in f.items() if k not in ("instance", "view"))
    assert f["instance"].tolist() == [i for i in range(6) for _ in range(3)]
    assert f["view"].tolist() == [0, 1, 2] * 6
    q = f["quaternion"]
    assert torch.allclose(q.norm(dim=-1), torch.ones(n), atol=1e-6) and (q[:, 0] >= 0).all()
    assert torch.allclose(f["light"].norm(dim=-1), torch.ones(n), atol=1e-6)
    assert (f["light"][:, 2] >= math.cos(math.pi / 4) - 1e-6).all()  # within 45 degrees of the view axis
    assert ((f["background"] >= 0) & (f["background"] <= 1)).all()
    canon = sample_factors(**SMALL, factors=CANONICAL_FACTORS)
    q0 = canonical_pose().float().expand(n, 4)
    assert torch.allclose(canon["quaternion"], q0, atol=1e-6)
    assert torch.equal(canon["light"], torch.tensor([0.0, 0.0, 1.0]).expand(n, 3))
    assert len(set(canon["hue"].tolist())) == 1 and len(set(canon["background_hue"].tolist())) == 1


def test_loader_splits_by_instance_and_caches(tmp_path, monkeypatch):
    splits = load_dataset("objects3d", classes=3, instances=4, views=2, test_fraction=0.25, data_seed=1)
    assert splits.modality == "image" and splits.num_classes == 3 and splits.sample_shape == (3, 32, 32)
    assert splits.class_names == list(CLASSES[:3]) and splits.info["default_views"] == "pairs"
    tr, te = splits.train, splits.test
    assert len(tr) == 18 and len(te) == 6 and tr.x.dtype == torch.uint8 and tr.y.dtype == torch.int64
    assert not set(tr.factors["instance"].tolist()) & set(te.factors["instance"].tolist())
    assert sorted(te.y.tolist()) == [0, 0, 1, 1, 2, 2]  # one instance of each class, 2 views
    assert all(len(v) == len(tr) for v in tr.factors.values())
    manifest_files = list((tmp_path / "cache" / "objects3d").glob("*.json"))
    assert len(manifest_files) == 1
    manifest = json.loads(manifest_files[0].read_text())
    assert manifest == splits.info["manifest"] and manifest["counts"]["images"] == 24
    assert manifest["parameters"]["factors"]["rotation"] == pytest.approx(math.pi / 2)

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(loader_module, "generate", no_generation)
    again = load_dataset("objects3d", classes=3, instances=4, views=2, test_fraction=0.25, data_seed=1)
    assert torch.equal(again.train.x, tr.x) and torch.equal(again.test.y, te.y)
    assert all(torch.equal(again.train.factors[k], tr.factors[k]) for k in FACTOR_NAMES)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 48}, "image_size must be one of 32, 64"),
        ({"classes": 1}, "objects3d has 12 classes; classes must be 2..12"),
        ({"classes": 99}, "objects3d has 12 classes; classes must be 2..12"),
        ({"factors": {"rotaton": 0.5}}, "unknown objects3d factor 'rotaton'. Did you mean 'rotation'"),
        ({"factors": {"scale": [1.0, 0.5]}}, "low <= high"),
        ({"test_fraction": 1.0}, "test_fraction must be in"),
        ({"image_sise": 32}, "Did you mean 'image_size'"),
    ],
)
def test_bad_inputs(options, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("objects3d", **{"instances": 2, "views": 1, **options})


runner = CliRunner()


def test_cli_preview(tmp_path):
    out = tmp_path / "grid.png"
    res = runner.invoke(app, ["objects3d", "preview", "-o", str(out), "--classes", "2", "--n", "3"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["objects3d", "preview", "-o", str(out), "--image-size", "48"])
    assert res.exit_code == 2 and "error:" in res.output and "32, 64" in res.output
    assert "Traceback" not in res.output
