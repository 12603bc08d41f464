"""Tests for selfsup.probes: agreement with scikit-learn on a fixed split of the digits data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from selfsup.errors import NonFiniteError, SelfsupError, ShapeError
from selfsup.probes import ProbeResult, RegressionResult, knn_probe, linear_probe, ridge_probe


@pytest.fixture(scope="module")
def digits():
    """UCI digits (1797 x 64, 10 classes), stratified 70/30 split with a fixed seed."""
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def sklearn_logreg(digits):
    x_tr, x_te, y_tr, y_te = digits
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-8).fit(scaler.transform(x_tr), y_tr)
    return clf.score(scaler.transform(x_tr), y_tr), clf.score(scaler.transform(x_te), y_te)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_probe_matches_sklearn_logistic_regression(digits, sklearn_logreg, dtype):
    # Reference: sklearn LogisticRegression(C=1.0) on StandardScaler'd features, within 1 accuracy point.
    x_tr, x_te, y_tr, y_te = digits
    res = linear_probe(torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr), x_te, y_te, dtype=dtype)
    assert isinstance(res, ProbeResult) and res.method == "linear"
    sk_train, sk_test = sklearn_logreg
    assert res.accuracy == pytest.approx(sk_test, abs=0.01)
    assert res.train_accuracy == pytest.approx(sk_train, abs=0.01)
    assert res.details["converged"]
    assert (res.n_train, res.n_test, res.n_classes) == (len(y_tr), len(y_te), 10)


def test_linear_probe_weight_decay_and_relabelled_classes(digits):
    # Reference: weight_decay = 1 / (C N) is the same objective as C (same accuracy); relabelling the
    # classes (arbitrary integers) does not change the result.
    x_tr, x_te, y_tr, y_te = digits
    base = linear_probe(x_tr, y_tr, x_te, y_te, C=0.5)
    wd = linear_probe(x_tr, y_tr, x_te, y_te, weight_decay=1.0 / (0.5 * len(y_tr)))
    assert wd.accuracy == pytest.approx(base.accuracy, abs=1e-9)
    relabelled = linear_probe(x_tr, 7 * y_tr - 20, x_te, 7 * y_te - 20, C=0.5)
    assert relabelled.accuracy == pytest.approx(base.accuracy, abs=1e-9)


def test_knn_probe_matches_sklearn(digits):
    # Reference: KNeighborsClassifier(20, metric="cosine", weights=exp((1 - d) / T)): the same weighted
    # vote; within 1 accuracy point (ties between equidistant neighbours may be broken differently).
    x_tr, x_te, y_tr, y_te = digits
    t = 0.07
    knn = KNeighborsClassifier(20, metric="cosine", weights=lambda d: np.exp((1 - d) / t)).fit(x_tr, y_tr)
    expected = knn.score(x_te, y_te)
    res = knn_probe(x_tr, y_tr, x_te, y_te, k=20, temperature=t)
    assert res.method == "knn" and res.train_accuracy is None
    assert res.accuracy == pytest.approx(expected, abs=0.01)
    # chunking over test rows does not change the result
    assert knn_probe(x_tr, y_tr, x_te, y_te, chunk_size=7).accuracy == res.accuracy
    knn5 = KNeighborsClassifier(5, metric="cosine", weights=lambda d: np.exp((1 - d) / 0.5)).fit(x_tr, y_tr)
    assert knn_probe(x_tr, y_tr, x_te, y_te, k=5, temperature=0.5).accuracy == pytest.approx(
        knn5.score(x_te, y_te), abs=0.01
    )


def test_ridge_probe_matches_sklearn_multi_output(digits):
    # Reference: sklearn Ridge(alpha=1.0) on StandardScaler'd features and r2_score (uniform average).
    x_tr, x_te, y_tr, y_te = digits
    targets_tr = np.stack([x_tr[:, :32].mean(axis=1), y_tr.astype(float)], axis=1)
    targets_te = np.stack([x_te[:, :32].mean(axis=1), y_te.astype(float)], axis=1)
    scaler = StandardScaler().fit(x_tr)
    pred = Ridge(alpha=1.0).fit(scaler.transform(x_tr), targets_tr).predict(scaler.transform(x_te))
    res = ridge_probe(x_tr, targets_tr, x_te, targets_te, alpha=1.0)
    assert isinstance(res, RegressionResult) and res.n_outputs == 2
    assert res.r2 == pytest.approx(r2_score(targets_te, pred), abs=1e-3)
    np.testing.assert_allclose(
        res.r2_per_output, r2_score(targets_te, pred, multioutput="raw_values"), atol=1e-3
    )
    expected_rel = np.linalg.norm(pred - targets_te) / np.linalg.norm(targets_te)
    assert res.rel_error == pytest.approx(expected_rel, rel=1e-6)


def test_ridge_probe_single_output_and_more_features_than_samples(digits):
    # Reference: sklearn Ridge on 40 training samples x 64 features (dual form) and 1-D targets.
    x_tr, x_te, y_tr, y_te = digits
    target_tr, target_te = x_tr[:, 10] + 0.5 * x_tr[:, 50], x_te[:, 10] + 0.5 * x_te[:, 50]
    x_small, t_small = x_tr[:40], target_tr[:40]
    scaler = StandardScaler().fit(x_small)
    pred = Ridge(alpha=3.0).fit(scaler.transform(x_small), t_small).predict(scaler.transform(x_te))
    res = ridge_probe(torch.tensor(x_small, dtype=torch.float32), t_small, x_te, target_te, alpha=3.0)
    ref = ridge_probe(x_small, t_small, x_te, target_te, alpha=3.0)
    assert ref.r2 == pytest.approx(r2_score(target_te, pred), abs=1e-6)
    assert res.r2 == pytest.approx(ref.r2, abs=1e-3)  # float32 features, same model
    assert res.n_outputs == 1


def test_ridge_probe_predictions_match_sklearn_and_stay_out_of_the_json(digits):
    # Reference: sklearn Ridge(alpha=10.0).predict on StandardScaler'd features, prediction by prediction
    # (primal and dual forms, 1-D and 2-D targets); to_dict() and the repr leave the tensor out.
    x_tr, x_te, y_tr, y_te = digits
    targets_tr = np.stack([x_tr[:, :32].mean(axis=1), y_tr.astype(float)], axis=1)
    for n in (len(x_tr), 40):  # k <= n (primal) and k > n (dual)
        scaler = StandardScaler().fit(x_tr[:n])
        ridge = Ridge(alpha=10.0).fit(scaler.transform(x_tr[:n]), targets_tr[:n])
        expected = ridge.predict(scaler.transform(x_te))
        res = ridge_probe(x_tr[:n], targets_tr[:n], x_te, np.zeros((len(x_te), 2)), alpha=10.0)
        assert res.predictions.shape == (len(x_te), 2) and res.predictions.dtype == torch.float64
        np.testing.assert_allclose(res.predictions.numpy(), expected, rtol=1e-6, atol=1e-8)
    one = ridge_probe(x_tr, targets_tr[:, 1], x_te, y_te, alpha=10.0)
    assert one.predictions.shape == (len(x_te), 1)
    d = one.to_dict()
    assert "predictions" not in d and d["details"] == {"alpha": 10.0}
    json.dumps(d)
    assert "predictions" not in repr(one)


def test_probe_bad_inputs_raise_clear_errors(digits):
    # Reference: the validation contract (lengths, integer labels, >= 2 classes, finite, matching K, k).
    x_tr, x_te, y_tr, y_te = digits
    with pytest.raises(ShapeError, match="y_tr has 10 entries but x_tr has"):
        linear_probe(x_tr, y_tr[:10], x_te, y_te)
    with pytest.raises(SelfsupError, match="must be integers"):
        knn_probe(x_tr, y_tr.astype(np.float32), x_te, y_te)
    with pytest.raises(SelfsupError, match="at least 2"):
        linear_probe(x_tr, np.zeros_like(y_tr), x_te, y_te)
    bad = x_tr.copy()
    bad[5, 3] = np.nan
    with pytest.raises(NonFiniteError, match="x_tr contains 1 NaN"):
        knn_probe(bad, y_tr, x_te, y_te)
    with pytest.raises(ShapeError, match="64 features but x_te has 63"):
        ridge_probe(x_tr, y_tr, x_te[:, :63], y_te)
    with pytest.raises(SelfsupError, match="exceeds the 30 training samples"):
        knn_probe(x_tr[:30], y_tr[:30], x_te, y_te, k=31)
    with pytest.raises(NonFiniteError, match="y_te"):
        ridge_probe(x_tr, y_tr, x_te, np.full(len(y_te), np.inf))
    with pytest.raises(SelfsupError, match="either C or weight_decay"):
        linear_probe(x_tr, y_tr, x_te, y_te, C=2.0, weight_decay=1e-3)
