"""SIE: rotations (against scipy), the criterion (against a float64 NumPy transcription of the public
formula), the hypernetwork predictor, the transformation-aware pairs and the equivariance probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from sklearn.metrics import r2_score

from selfsup import config as C
from selfsup import rotations as Q
from selfsup.criteria import sie_loss
from selfsup.data import ArrayDataset, DataSplits
from selfsup.data.stream import as_float
from selfsup.errors import ConfigError, ShapeError
from selfsup.models import HyperPredictor, SplitHead, head_layer_outputs
from selfsup.probes.transformation import r2_scores, retrieval, transformation_r2
from selfsup.train.components import build
from selfsup.views import TransformPairs, batch_shard, draw_views


def _scipy_quat(q: np.ndarray) -> np.ndarray:
    """scipy's (x, y, z, w) as our canonical (w, x, y, z)."""
    q = np.concatenate([q[:, 3:], q[:, :3]], 1)
    return q * np.where(q[:, :1] < 0, -1, 1)


def test_rotations_match_scipy():
    angles = torch.rand(50, 3, dtype=torch.float64) * 3 - 1.5
    q = Q.from_euler_xyz(angles)
    ref = Rotation.from_euler("xyz", angles.numpy())
    np.testing.assert_allclose(q.numpy(), _scipy_quat(ref.as_quat()), atol=1e-12)
    np.testing.assert_allclose(Q.to_matrix(q).numpy(), ref.as_matrix(), atol=1e-12)
    assert (q[:, 0] >= 0).all() and torch.allclose(q.norm(dim=1), torch.ones(50, dtype=torch.float64))


def test_relative_rotation_composes():
    """r = relative(q1, q2) satisfies q2 = r q1 (as rotations: R(q2) = R(r) R(q1)), against scipy."""
    q1, q2 = (
        Q.canonical(torch.randn(20, 4, dtype=torch.float64)),
        Q.canonical(torch.randn(20, 4, dtype=torch.float64)),
    )
    r = Q.relative(q1, q2)
    torch.testing.assert_close(Q.canonical(Q.multiply(r, q1)), q2)
    rot = lambda q: Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], 1))  # noqa: E731
    np.testing.assert_allclose(
        (rot(r.numpy()) * rot(q1.numpy())).as_matrix(), rot(q2.numpy()).as_matrix(), atol=1e-12
    )


def _sie_reference(z1, z2, pred, n_inv, sim=10.0, equi=0.45, std=10.0, cov=1.0, eps=1e-4):
    """The public code's loss (facebookresearch/SIE, src/models.py, class SIE), in float64 NumPy, with the
    K x K covariance matrices."""
    x, y, p = (np.asarray(a, dtype=np.float64) for a in (z1, z2, pred))
    n, k = x.shape
    inv = ((x[:, :n_inv] - y[:, :n_inv]) ** 2).mean() if n_inv else 0.0  # SIEOnlyEqui: no term
    eq = ((p - y[:, n_inv:]) ** 2).mean()
    hinge = lambda a: np.maximum(0, 1 - np.sqrt(a.var(0, ddof=1) + eps)).mean()  # noqa: E731
    xc, yc = x - x.mean(0), y - y.mean(0)
    off = lambda c: (c**2).sum() - (np.diag(c) ** 2).sum()  # noqa: E731
    cov_loss = (off(xc.T @ xc / (n - 1)) + off(yc.T @ yc / (n - 1))) / k
    std_loss = hinge(x) / 2 + hinge(y) / 2 + hinge(p) / 2
    return sim * inv + equi * sim * eq + std * std_loss + cov * cov_loss


@pytest.mark.parametrize("n,k,n_inv", [(32, 12, 6), (8, 20, 10), (16, 6, 0)])
def test_sie_loss_matches_public_formula(n, k, n_inv):
    g = torch.Generator().manual_seed(n + k)
    z1, z2 = torch.randn(n, k, generator=g) * 0.7, torch.randn(n, k, generator=g)
    pred = torch.randn(n, k - n_inv, generator=g) * 0.5
    got = float(sie_loss(z1, z2, pred, n_inv))
    assert got == pytest.approx(_sie_reference(z1, z2, pred, n_inv), rel=1e-5)


def test_sie_loss_rejects_bad_shapes():
    z = torch.randn(8, 6)
    with pytest.raises(ShapeError, match="n_inv"):
        sie_loss(z, z, torch.randn(8, 3), 6)
    with pytest.raises(ShapeError, match="pred must be"):
        sie_loss(z, z, torch.randn(8, 4), 3)


def test_hypernetwork_identity_transformation_is_identity_map():
    """The predictor of the identity transformation (rotation 1, no colour shift) is the identity map
    (rho(e) = I); W(t) is affine in t (the public hypernetwork is linear); gradients are finite."""
    identity = torch.tensor([1.0, 0, 0, 0, 0, 0])
    pred = HyperPredictor(5, identity)
    z = torch.randn(7, 5)
    torch.testing.assert_close(pred(z, identity.expand(7, 6)), z)
    t1, t2 = torch.randn(1, 6), torch.randn(1, 6)
    torch.testing.assert_close(
        pred.weights(0.3 * t1 + 0.7 * t2), 0.3 * pred.weights(t1) + 0.7 * pred.weights(t2)
    )
    t = torch.randn(7, 6, requires_grad=True)
    out = pred(z.requires_grad_(), t)
    out.square().sum().backward()
    grads = [t.grad, z.grad, *(p.grad for p in pred.parameters())]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert pred.hypernet[-1].weight.grad.abs().sum() > 0


def test_split_head_blocks_concatenate_both_projectors():
    head = SplitHead(16, 6, "8-4")  # invariant 10 dims -> "5-2", equivariant 6 -> "3-2" (public scaling)
    assert (head.inv_out, head.eq_out, head.out_dim) == (2, 2, 4)
    h = torch.randn(5, 16)
    blocks = head_layer_outputs(head.eval(), h)
    assert list(blocks) == ["proj1", "proj2"] and blocks["proj1"].shape == (5, 8)
    torch.testing.assert_close(blocks["proj2"], head(h))
    torch.testing.assert_close(head(h)[:, 2:], head.eq(h[:, 10:]))


def _fake_objects(n_inst=6, views=4, size=8, seed=0) -> DataSplits:
    """A tiny dataset with recorded factors (random images: only the bookkeeping matters)."""
    g = torch.Generator().manual_seed(seed)
    n = n_inst * views
    factors = {
        "instance": torch.arange(n_inst).repeat_interleave(views),
        "quaternion": Q.canonical(torch.randn(n, 4, generator=g)),
        "hue": torch.rand(n, generator=g),
        "background_hue": torch.rand(n, generator=g),
    }
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    train = ArrayDataset(x, factors["instance"] % 2, factors)
    return DataSplits("fake", "image", train, None, 2, (3, size, size), info={"default_views": "pairs"})


def test_pairs_draw_another_view_of_the_same_instance_with_its_transformation():
    data = _fake_objects(views=3)
    f = data.train.factors
    pairs = TransformPairs(data.train.x, f, as_float, colour=True)
    idx = torch.arange(len(data.train)).repeat(20)
    torch.manual_seed(0)
    j = pairs.partners(idx)
    assert (j != idx).all() and (f["instance"][j] == f["instance"][idx]).all()
    assert len(set(zip(idx.tolist(), j.tolist(), strict=True))) == 2 * len(data.train)  # both others drawn
    torch.manual_seed(1)
    views, t = pairs(as_float(data.train.x[idx[:5]]), idx[:5])
    torch.manual_seed(1)
    j5 = pairs.partners(idx[:5])
    torch.testing.assert_close(views[1], as_float(data.train.x[j5]))
    torch.testing.assert_close(
        Q.canonical(Q.multiply(t[:, :4], f["quaternion"][idx[:5]])), f["quaternion"][j5]
    )
    assert (t[:, 4:].abs() <= 0.5).all()
    hue_shift = torch.remainder(f["hue"][j5] - f["hue"][idx[:5]] - t[:, 4], 1.0)
    assert torch.allclose(torch.minimum(hue_shift, 1 - hue_shift), torch.zeros(5), atol=1e-6)


def test_pairs_shard_like_one_process():
    """Two processes holding halves of a batch draw the partners one process would (DDP exactness)."""
    data = _fake_objects()
    pairs = TransformPairs(data.train.x, data.train.factors, as_float)
    idx = torch.arange(8)
    torch.manual_seed(3)
    whole = pairs.partners(idx)
    halves = []
    for offset in (0, 4):
        torch.manual_seed(3)
        with batch_shard(offset, 8):
            halves.append(pairs.partners(idx[offset : offset + 4]))
    torch.testing.assert_close(torch.cat(halves), whole)


def _cfg(method="sie", **data):
    return C.from_dict(
        {
            "method": {"name": method},
            "model": {"backbone": "convnet", "backbone_args": {"width": 8}, "projector": "16-16"},
            "data": {"views": "pairs", **data},
            "train": {"batch_size": 8},
        }
    )


@pytest.mark.parametrize("method", ["sie", "sie-nosplit", "vicreg"])
def test_methods_train_on_pairs(method):
    data = _fake_objects()
    c = build(_cfg(method), data)
    idx = torch.arange(8)
    views, t = draw_views(c.views, as_float(data.train.x[idx]), idx)
    loss, _ = c.model(views, idx, t)
    loss.backward()
    assert torch.isfinite(loss)
    if method == "sie":
        assert c.model.n_inv == 8 and c.model.predictor.dim == 8


def test_sie_needs_transformations_and_sane_split():
    with pytest.raises(ConfigError, match="data.views=pairs"):
        build(C.from_dict({"method": {"name": "sie"}, "model": {"projector": "16"}, "train": {"epochs": 1}}))
    with pytest.raises(ConfigError, match="lacks instance"):
        build(C.from_dict({"data": {"views": "pairs"}, "model": {"projector": "16"}}))
    with pytest.raises(ConfigError, match="equivariant_dim"):
        cfg = _cfg()
        build(
            cfg.model_copy(update={"model": cfg.model.model_copy(update={"equivariant_dim": 64})}),
            _fake_objects(),
        )
    with pytest.raises(ConfigError, match="n_views=2"):
        build(_cfg(n_views=3), _fake_objects())


def test_r2_scores_match_sklearn():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(40, 4, generator=g) + torch.tensor([3.0, 0, 0, 0])
    p = y + 0.3 * torch.randn(40, 4, generator=g)
    glob, per_output = r2_scores(p, y)
    assert per_output == pytest.approx(r2_score(y.numpy(), p.numpy()), rel=1e-6)
    yd, pd = y.double().numpy(), p.double().numpy()
    assert glob == pytest.approx(1 - ((yd - pd) ** 2).sum() / ((yd - yd.mean()) ** 2).sum(), rel=1e-9)


def test_transformation_r2_reads_a_linear_relation_and_not_noise():
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(600, 6, generator=g), torch.randn(600, 6, generator=g)
    t = f2[:, :2] - f1[:, :2]  # readable from the pair
    res = transformation_r2((f1[:400], f2[:400], t[:400]), (f1[400:], f2[400:], t[400:]), epochs=40)
    assert res.r2_per_output > 0.9
    noise = torch.randn(600, 2, generator=g)
    res = transformation_r2((f1[:400], f2[:400], noise[:400]), (f1[400:], f2[400:], noise[400:]), epochs=5)
    assert res.r2_per_output < 0.1


def test_retrieval_ranks_within_the_target_group():
    cand = torch.eye(4)  # group 0: candidates 0, 1; group 1: candidates 2, 3
    groups = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([[1.0, 0.1, 0, 0], [1.0, 0.2, 0, 0], [0, 0, 1.0, 0]])
    res = retrieval(pred, torch.tensor([0, 1, 3]), cand, groups, ks=(1, 2))
    # ranks: query 0 -> target 0 ranked 1; query 1 -> target 1 behind candidate 0: 2; query 2 -> target 3
    # behind candidate 2 (candidates 0, 1 of the other group do not count): 2
    assert res.mrr == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert res.hits == {1: pytest.approx(1 / 3), 2: 1.0} and res.mean_candidates == 2


def test_cli_sie_without_transformations_exits_2(tmp_path):
    from typer.testing import CliRunner

    from selfsup.cli import app

    res = CliRunner().invoke(app, ["train", "method.name=sie", f"train.out_dir={tmp_path}", "train.epochs=1"])
    assert res.exit_code == 2
    assert res.output.startswith("error:") and "data.views=pairs" in res.output
    assert "Traceback" not in res.output
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_retrieval_leaves_the_source_out():
    """The identity prediction (the source itself) would always rank first; without it, the nearest other
    view decides."""
    cand = torch.tensor([[1.0, 0], [0.9, 0.1], [0.5, 0.5]])
    groups = torch.zeros(3, dtype=torch.long)
    with_source = retrieval(cand[:1], torch.tensor([1]), cand, groups)
    without = retrieval(cand[:1], torch.tensor([1]), cand, groups, source_index=torch.tensor([0]))
    assert (with_source.mrr, without.mrr, without.mean_candidates) == (0.5, 1.0, 2)


@pytest.mark.slow
def test_sie_end_to_end_on_objects3d(tmp_path, monkeypatch):
    """A tiny SIE run on generated objects, then `selfsup equivariance`: every part of the evaluation is
    there, in the terminal, in equivariance.json and in the run report; a run on other data is refused."""
    import json

    from typer.testing import CliRunner

    from selfsup.cli import app

    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    load = "data.load_args={classes: 3, instances: 4, views: 5, test_fraction: 0.25}"
    args = ["train", "--config", "configs/sie-objects3d.yaml", load, "train.epochs=1", "train.batch_size=16"]
    args += ["data.monitor_size=40", "train.lidar_samples=20", f"train.out_dir={tmp_path}", "train.name=sie"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = tmp_path / "sie"
    assert "backbone/lidar" in (run / "metrics.jsonl").read_text()  # LiDAR of the pairs
    res = CliRunner().invoke(app, ["equivariance", str(run), "--pairs", "100", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "equivariant" in res.output and "retrieval (predictor)" in res.output
    out = json.loads((run / "equivariance.json").read_text())
    assert set(out["classification"]) == {"whole", "invariant", "equivariant"}
    assert out["dims"] == {"whole": 64, "invariant": 32, "equivariant": 32}
    assert set(out["retrieval"]) == {"identity", "predictor"}
    assert 0 < out["retrieval"]["predictor"]["mrr"] <= 1
    assert out["retrieval"]["predictor"]["mean_candidates"] == 4  # the other views of the object
    assert "Equivariance (selfsup equivariance)" in (run / "report.html").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text((run / "config.yaml").read_text().replace("objects3d", "mnist1d"))
    res = CliRunner().invoke(app, ["equivariance", str(other)])
    assert res.exit_code == 2 and res.output.startswith("error:")
