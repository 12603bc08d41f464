"""Checkpoints: atomic, verified, and loaded with weights_only=True (a crafted pickle is refused)."""

import io
import os
import pickle

import pytest
import torch

from selfsup.errors import CheckpointError
from selfsup.train import checkpoint as ck


def _state(v=1.0):
    return {"epoch": 3, "w": torch.full((4, 4), v), "rng": torch.get_rng_state(), "cfg": {"a": [1, 2]}}


def test_round_trip(tmp_path):
    p = ck.save_checkpoint(_state(2.0), ck.checkpoint_path(tmp_path, 3))
    s = ck.load_checkpoint(p)
    assert s["epoch"] == 3 and torch.equal(s["w"], torch.full((4, 4), 2.0)) and s["cfg"] == {"a": [1, 2]}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp file left


def test_truncated_falls_back_to_previous(tmp_path):
    ck.save_checkpoint(_state(1.0), ck.checkpoint_path(tmp_path, 0))
    newest = ck.save_checkpoint(_state(2.0), ck.checkpoint_path(tmp_path, 1))
    newest.write_bytes(newest.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        ck.load_checkpoint(newest)
    with pytest.warns(UserWarning, match="falling back"):
        state, path = ck.load_latest(tmp_path)
    assert path.name == "epoch-00000.ckpt" and state["w"][0, 0] == 1.0


def test_flipped_byte_detected(tmp_path):
    p = ck.save_checkpoint(_state(), ck.checkpoint_path(tmp_path, 0))
    raw = bytearray(p.read_bytes())
    raw[-50] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        ck.load_checkpoint(p)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_crafted_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A payload with a valid digest, so only the safe loader stands between it and execution.
    buf = io.BytesIO()
    torch.save({"model": _Exploit()}, buf, pickle_module=pickle)
    import hashlib

    payload = buf.getvalue()
    p = tmp_path / "epoch-00000.ckpt"
    p.write_bytes(ck.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        ck.load_checkpoint(p)
    assert not (tmp_path / "PWNED").exists()


def test_prune_keeps_newest(tmp_path):
    for e in range(5):
        ck.save_checkpoint(_state(), ck.checkpoint_path(tmp_path, e))
    ck.prune(tmp_path, 2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["epoch-00004.ckpt", "epoch-00003.ckpt"]


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "epoch-00000.ckpt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a selfsup checkpoint"):
        ck.load_checkpoint(tmp_path / "epoch-00000.ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ck.load_latest(tmp_path / "nothing")


def test_mid_epoch_checkpoints_order_and_prune(tmp_path):
    """A stop mid-epoch (epoch-E-batch-B) is newer than the end of epoch E-1 and older than the end of epoch
    E; the end of an epoch replaces it; the epoch table and the evaluation see ends of epochs only."""
    for e in (0, 1):
        ck.save_checkpoint(_state(float(e)), ck.checkpoint_path(tmp_path, e))
    mid = ck.save_checkpoint(_state(9.0), ck.checkpoint_path(tmp_path, 2, batches=4))
    assert mid.name == "epoch-00002-batch-000004.ckpt"
    assert [p.name for p in ck.list_checkpoints(tmp_path)][:2] == [mid.name, "epoch-00001.ckpt"]
    assert ck.load_latest(tmp_path, partial=True)[1] == mid  # a resume starts from it
    assert ck.load_latest(tmp_path)[1].name == "epoch-00001.ckpt"  # an evaluation does not
    assert ck.epoch_checkpoints(tmp_path) == {
        1: tmp_path / "epoch-00000.ckpt",
        2: tmp_path / "epoch-00001.ckpt",
    }
    ck.prune(tmp_path, keep=2)
    assert mid.exists()  # still the newest: kept
    ck.save_checkpoint(_state(3.0), ck.checkpoint_path(tmp_path, 2))
    ck.prune(tmp_path, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["epoch-00002.ckpt", "epoch-00001.ckpt"]
