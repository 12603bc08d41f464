"""MoCo v2/v3, NNCLR, DINO and SwAV criteria against float64 transcriptions of the authors' public code
(facebookresearch/moco ``moco/builder.py``, facebookresearch/moco-v3 ``moco/builder.py``, the NNCLR paper's
eq. 2, facebookresearch/dino ``main_dino.py`` ``DINOLoss``, facebookresearch/swav ``main_swav.py``
``distributed_sinkhorn`` and ``train``) and against lightly's values on the same inputs
(``tests/fixtures/lightly_losses.json``, made by ``tests/fixtures/make_lightly_losses.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.criteria import (
    dino_loss,
    global_batch_mean,
    moco_v2_loss,
    moco_v3_loss,
    nearest_neighbour,
    nnclr_loss,
    sinkhorn,
    swav_loss,
)
from selfsup.errors import SelfsupError

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "lightly_losses.json").read_text())
IN = {k: np.array(v) for k, v in FIXTURE["inputs"].items()}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _ce(logits, labels):
    return float(np.mean(-_log_softmax(logits)[np.arange(len(labels)), labels]))


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


def _moco_v2_ref(q, k, queue, t):  # MoCo.forward: logits [l_pos, l_neg] / T, label 0
    q, k = _unit(q), _unit(k)
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue.T], axis=1) / t
    return _ce(logits, np.zeros(len(q), dtype=int))


def _moco_v3_ref(q, k, t):  # contrastive_loss: logits q k^T / T, labels arange, CE * 2T
    logits = _unit(q) @ _unit(k).T / t
    return _ce(logits, np.arange(len(q))) * 2 * t


def test_moco_v2_equals_the_public_code_and_lightly():
    q, k, queue = IN["q"], IN["k"], IN["queue"]
    got = float(moco_v2_loss(_t(q), _t(k), _t(queue), temperature=0.2))
    assert got == pytest.approx(_moco_v2_ref(q, k, queue, 0.2), rel=1e-6)
    assert got == pytest.approx(FIXTURE["moco_v2"], rel=1e-6)


def test_moco_v3_equals_the_public_code():
    q, k = IN["q"], IN["k"]
    assert float(moco_v3_loss(_t(q), _t(k), temperature=0.2)) == pytest.approx(
        _moco_v3_ref(q, k, 0.2), rel=1e-6
    )


def test_nnclr_takes_the_nearest_neighbour_and_the_paper_loss():
    q, k, support = IN["q"], IN["k"], IN["queue"]
    nn = nearest_neighbour(_t(q), _t(support))
    idx = (_unit(q) @ support.T).argmax(1)
    assert torch.allclose(nn, _t(support[idx]), atol=1e-6)
    ref = _ce(support[idx] @ _unit(k).T / 0.1, np.arange(len(q)))  # eq. 2: NN(z_i) . p_j / tau
    assert float(nnclr_loss(nn, _t(k), temperature=0.1)) == pytest.approx(ref, rel=1e-6)


def _dino_ref(student, teacher, center, ts, tt):  # DINOLoss.forward, views chunked
    p_t = np.exp(_log_softmax((teacher - center) / tt))
    log_p_s = _log_softmax(student / ts)
    terms = [
        (-p_t[g] * log_p_s[v]).sum(-1).mean()
        for g in range(len(teacher))
        for v in range(len(student))
        if v != g
    ]
    return float(np.mean(terms))


def test_dino_equals_the_public_code_and_lightly():
    s, t = IN["student"], IN["teacher"]
    center = np.linspace(-0.2, 0.3, s.shape[-1])
    got = float(dino_loss(_t(s), _t(t), _t(center), student_temp=0.1, teacher_temp=0.04))
    assert got == pytest.approx(_dino_ref(s, t, center, 0.1, 0.04), rel=1e-6)
    zero = float(dino_loss(_t(s), _t(t), torch.zeros(s.shape[-1]), 0.1, 0.04))
    assert zero == pytest.approx(FIXTURE["dino"], rel=1e-5)  # lightly computed in float32


def test_the_dino_centre_is_the_mean_of_the_teacher_scores():
    t = torch.randn(2, 8, 6, dtype=torch.float64)
    assert torch.allclose(global_batch_mean(t), t.reshape(-1, 6).mean(0).float(), atol=1e-6)


def _sinkhorn_ref(out, eps, iters):  # distributed_sinkhorn on one process
    q = np.exp(out / eps).T
    b, k = q.shape[1], q.shape[0]
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(1, keepdims=True) / k
        q = q / q.sum(0, keepdims=True) / b
    return (q * b).T


def test_sinkhorn_equals_the_public_code_and_balances_the_prototypes():
    scores = IN["scores"][0]
    q = sinkhorn(_t(scores), epsilon=0.05, iterations=3)
    assert np.allclose(q.double().numpy(), _sinkhorn_ref(scores, 0.05, 3), rtol=1e-5, atol=1e-7)
    assert torch.allclose(q.sum(1), torch.ones(len(scores)), atol=1e-5)  # each sample: one assignment
    many = sinkhorn(torch.randn(64, 4) * 0.1, epsilon=0.05, iterations=50)
    assert torch.allclose(many.sum(0), torch.full((4,), 16.0), atol=1e-3)  # equipartition, B / K each


def _swav_ref(scores, t, eps, iters, n_assign):  # main_swav.py train(): swapped prediction
    log_p = _log_softmax(scores / t)
    total = 0.0
    for a in range(n_assign):
        q = _sinkhorn_ref(scores[a], eps, iters)
        others = [(-q * log_p[v]).sum(-1).mean() for v in range(len(scores)) if v != a]
        total += np.sum(others) / (len(scores) - 1)
    return total / n_assign


def test_swav_equals_the_public_code_and_lightly():
    scores = IN["scores"]
    got = float(swav_loss(_t(scores), 2, None, temperature=0.1, epsilon=0.05, sinkhorn_iterations=3))
    assert got == pytest.approx(_swav_ref(scores, 0.1, 0.05, 3, 2), rel=1e-6)
    assert got == pytest.approx(FIXTURE["swav"], rel=1e-5)


def test_a_queue_enters_sinkhorn_only():
    s = torch.randn(2, 8, 6)
    queue = torch.randn(2, 16, 6)
    with_queue = swav_loss(s, 2, queue)
    q0 = sinkhorn(torch.cat([queue[0], s[0]]))[-8:]
    ref = (-q0 * torch.log_softmax(s[1] / 0.1, -1)).sum(-1).mean()
    q1 = sinkhorn(torch.cat([queue[1], s[1]]))[-8:]
    ref = (ref + (-q1 * torch.log_softmax(s[0] / 0.1, -1)).sum(-1).mean()) / 2
    assert float(with_queue) == pytest.approx(float(ref), rel=1e-6)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sinkhorn(torch.randn(4, 3), iterations=0), "iterations must be an integer >= 1"),
        (lambda: sinkhorn(torch.randn(4, 3), epsilon=0.0), "epsilon must be a finite number > 0"),
        (lambda: dino_loss(torch.randn(3, 4, 5), torch.randn(2, 4, 5), torch.zeros(5), 0.0), "student_temp"),
        (
            lambda: dino_loss(torch.randn(3, 4, 5), torch.randn(2, 4, 5), torch.zeros(5), 0.1, -1),
            "teacher_temp",
        ),
        (lambda: moco_v2_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(8, 2)), "queue must have"),
    ],
)
def test_bad_hyper_parameters_are_refused(call, match):
    with pytest.raises(SelfsupError, match=match):
        call()
