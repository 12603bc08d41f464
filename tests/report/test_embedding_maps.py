"""Pictures of the embeddings: the 2-D PCA map equals scikit-learn's PCA, the UMAP map (umap-learn, in the
dev extra) is seeded and keeps the digits apart, a trained run writes its map and the report shows it,
``selfsup embed --plot`` draws any layer, and a missing umap-learn is one error line with nothing written."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.embeddings import map_2d
from selfsup.errors import SelfsupError

runner = CliRunner()


def test_the_pca_map_is_scikit_learns():
    x = np.random.default_rng(0).normal(size=(300, 12)) * np.arange(1, 13)
    assert np.allclose(map_2d(x), PCA(2, svd_solver="full").fit_transform(x), atol=1e-9)
    assert map_2d(x[:, :1]).shape == (300, 2) and not map_2d(x[:, :1])[:, 1].any()  # one feature: a line
    with pytest.raises(SelfsupError, match="N >= 3"):
        map_2d(x[:2])
    with pytest.raises(SelfsupError, match="unknown map 'tsne'"):
        map_2d(x, "tsne")


@pytest.mark.slow  # numba compiles umap-learn's kernels on the first call (about 15 s on 2 cores)
def test_the_umap_map_is_seeded_and_keeps_the_digits_apart():
    x, y = load_digits(return_X_y=True)
    x, y = x[:300], y[:300]
    xy = map_2d(x, "umap", seed=0)
    assert xy.shape == (300, 2) and np.isfinite(xy).all()
    assert np.array_equal(map_2d(x, "umap", seed=0), xy)  # the same seed, the same map
    assert not np.allclose(map_2d(x, "umap", seed=1), xy)  # the seed reaches umap-learn
    knn = KNeighborsClassifier(5)
    umap_acc = cross_val_score(knn, xy, y, cv=5).mean()  # 0.97 with umap-learn 0.5.12; chance is 0.1
    pca_acc = cross_val_score(knn, map_2d(x), y, cv=5).mean()  # 0.70: two linear axes mix some digits
    assert umap_acc > 0.85 and umap_acc > pca_acc + 0.1, (umap_acc, pca_acc)


@pytest.mark.slow
def test_a_run_reports_its_map_and_embed_plots_any_layer(digits_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = digits_run  # trained by tests/report/conftest.py
    with np.load(run / "embedding_map.npz") as z:
        assert z["backbone_pca"].shape == z["projector_pca"].shape == (360, 2)  # digits' test split
        assert len(z["labels"]) == 360 and list(z["layers"]) == ["fc1", "proj2"]
    report = (run / "report.html").read_text()
    assert "<h2>Embeddings</h2>" in report and "2-D PCA of 360 test samples" in report
    res = runner.invoke(
        app, ["embed", str(run), "--split", "test", "--layer", "proj1", "-o", "e.npz", "--plot", "e.png"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap now fails
    res = runner.invoke(app, ["embed", str(run), "-o", "u.npz", "--plot", "u.png", "--map", "umap"])
    assert res.exit_code == 2 and "pip install 'selfsup[umap]'" in res.output
    assert not (tmp_path / "u.npz").exists() and not (tmp_path / "u.png").exists()
    res = runner.invoke(app, ["embed", str(run), "-o", "v.npz", "--plot", "v.jpg"])
    assert res.exit_code == 2 and "must end in .png" in res.output and not (tmp_path / "v.npz").exists()
