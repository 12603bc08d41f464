"""Streaming: the same batches as in memory, exact resume, counted skips, the file-list cache, auto rule."""

import gc
import json
import os
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.data import load_dataset
from selfsup.data import sources as S
from selfsup.data.stream import EpochBatches, Feed, as_float, take
from selfsup.errors import SelfsupError

runner = CliRunner()


def _folder(root, n_per_class=12, seed=0):
    """Two classes of noise images of mixed sizes and modes (grey, RGB, RGBA, palette), PNG and JPEG."""
    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            h, w = rng.integers(12, 40, size=2)
            im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            im = im.convert(["RGB", "L", "RGBA", "P"][i % 4])
            ext = "jpg" if i % 3 == 0 and im.mode in ("RGB", "L") else "png"
            im.save(root / c / f"{i}.{ext}")
    return root


@pytest.mark.slow
def test_streamed_and_in_memory_give_the_same_batches(tmp_path):
    root = _folder(tmp_path / "imgs")
    mem = load_dataset(f"folder:{root}", stream=False, image_size=16)
    streamed = load_dataset(f"folder:{root}", stream=True, workers=2, image_size=16)
    assert not mem.info["streamed"] and streamed.info["streamed"]
    assert isinstance(mem.train.x, torch.Tensor) and isinstance(streamed.train.x, S.Source)
    assert mem.train.x.dtype == torch.uint8 and mem.sample_shape == streamed.sample_shape == (3, 16, 16)
    assert torch.equal(mem.train.y, streamed.train.y)
    cpu = torch.device("cpu")
    batches = EpochBatches(len(mem.train), 8, seed=5)
    a, b = Feed(mem.train.x, batches, cpu, 0), Feed(streamed.train.x, batches, cpu, 2)
    for epoch in range(2):
        batches.set_epoch(epoch)
        pairs = list(zip(a, b, strict=True))
        assert len(pairs) == len(mem.train) // 8
        for (ia, xa), (ib, xb) in pairs:
            assert torch.equal(ia, ib) and xa.dtype == torch.float32 and torch.equal(xa, xb)
    assert b.skipped == 0
    # each process of two takes its half of every global batch, in the same order
    half = [EpochBatches(len(mem.train), 8, seed=5, rank=r, world_size=2) for r in (0, 1)]
    batches.set_epoch(0)
    for whole, r0, r1 in zip(batches, *half, strict=True):
        assert torch.equal(torch.cat([r0, r1]), whole)


def test_grey_and_colour_images_are_converted(tmp_path):
    Image.new("L", (20, 10), 77).save(tmp_path / "grey.png")
    Image.new("RGB", (9, 30), (10, 200, 30)).save(tmp_path / "colour.png")
    Image.new("RGBA", (16, 16), (1, 2, 3, 4)).save(tmp_path / "alpha.png")
    s = load_dataset(f"folder:{tmp_path}", stream=True, image_size=(6, 8))
    x = take(s.train.x, torch.arange(3))  # files sorted: alpha, colour, grey
    assert x.shape == (3, 3, 6, 8) and x.dtype == torch.uint8
    assert x[0, :, 0, 0].tolist() == [1, 2, 3] and x[1, :, 3, 4].tolist() == [10, 200, 30]
    assert (x[2] == 77).all()
    grey = load_dataset(f"folder:{tmp_path}", stream=True, image_size=4, mode="L")
    assert grey.sample_shape == (1, 4, 4) and (take(grey.train.x, torch.tensor([2])) == 77).all()


def test_zero_byte_and_garbage_files_are_skipped_and_counted(tmp_path):
    _folder(tmp_path, n_per_class=3)
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "b" / "junk.jpg").write_bytes(b"not a jpeg at all")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\).*empty\.png"):
        s = load_dataset(f"folder:{tmp_path}", stream=True)
    assert s.info["skipped"] == 2 and len(s.train) + len(s.test) == 6


def test_file_list_is_cached_until_a_class_folder_changes(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs", n_per_class=3)
    first = S.scan_folder(root)
    assert len(first["files"]) == 6

    def no_rescan(*args):
        raise AssertionError("rescanned")

    monkeypatch.setattr(S, "_build_listing", no_rescan)
    assert S.scan_folder(root)["files"] == first["files"]  # from the cache
    monkeypatch.undo()
    Image.new("RGB", (8, 8)).save(root / "b" / "new.png")  # the class folder's time changes
    assert len(S.scan_folder(root)["files"]) == 7


@pytest.mark.slow
def test_a_file_corrupted_mid_run_is_replaced_and_counted(tmp_path):
    root = _folder(tmp_path / "imgs", n_per_class=8)
    s = load_dataset(f"folder:{root}", stream=True, image_size=8)  # the file list is built and cached
    first = s.train.x.parent.file(s.train.x.index[0])
    victim = root / first
    victim.write_bytes(victim.read_bytes()[:40])  # truncated after the scan: in the list, undecodable
    again = load_dataset(f"folder:{root}", stream=True, image_size=8)
    n = len(again.train)
    feed = Feed(again.train.x, EpochBatches(n, n, seed=0), torch.device("cpu"), 2)  # one batch: all
    [(idx, x)] = list(feed)
    assert feed.skipped == 1 and x.shape == (n, 3, 8, 8)
    row = int((idx == 0).nonzero())  # the victim's row holds its neighbour, sample 1
    assert torch.equal(x[row], as_float(again.train.x[1][0]))


def test_auto_rule_streams_above_the_memory_limit_and_npy_is_memory_mapped(tmp_path):
    root = _folder(tmp_path / "imgs", n_per_class=4)
    small = load_dataset(f"folder:{root}", image_size=8)  # 8 x 3 x 8 x 8 bytes: in memory
    big = load_dataset(f"folder:{root}", image_size=8, max_memory_mb=1e-4)
    assert not small.info["streamed"] and big.info["streamed"]
    x = np.random.default_rng(0).integers(0, 256, (10, 5, 5, 3), dtype=np.uint8)  # channels last
    np.save(tmp_path / "x.npy", x)
    s = load_dataset(f"arrays:{tmp_path / 'x.npy'}", stream=True)
    assert isinstance(s.train.x.array, np.memmap) or isinstance(s.train.x.array.base, np.memmap)
    got = take(s.train.x, torch.arange(10))
    assert torch.equal(got, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert torch.equal(as_float(got), got.float() / 255)


FOLDER_RUN = [
    "model.backbone=convnet",
    "model.backbone_args={width: 8}",
    "model.projector=32-32",
    "train.batch_size=8",
    "train.epochs=2",
    "train.deterministic=true",
    "data.monitor_size=16",
    "train.lidar_samples=8",
    "data.load_args={image_size: 16}",
]


@pytest.mark.slow
def test_streamed_training_equals_in_memory_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = _folder(tmp_path / "imgs")
    base = ["train", "--quiet", f"data.dataset=folder:{root}", *FOLDER_RUN]
    for name, stream in (("mem", "false"), ("streamed", "true")):
        res = runner.invoke(app, [*base, f"data.stream={stream}", "data.workers=2", f"train.name={name}"])
        assert res.exit_code == 0, res.output
    metrics = {
        r: [json.loads(line) for line in (tmp_path / "runs" / r / "metrics.jsonl").open()]
        for r in ("mem", "streamed")
    }
    assert [m["loss"] for m in metrics["mem"]] == [m["loss"] for m in metrics["streamed"]]
    summary = json.loads((tmp_path / "runs/streamed/summary.json").read_text())
    mem_summary = json.loads((tmp_path / "runs/mem/summary.json").read_text())
    assert summary["rankme_backbone"] == mem_summary["rankme_backbone"]
    assert summary["linear_acc"] == mem_summary["linear_acc"]
    # resume the streamed run from its first epoch's checkpoint: the same second epoch
    run = tmp_path / "runs" / "streamed"
    (run / "checkpoints" / "epoch-00001.ckpt").unlink()
    (run / "summary.json").unlink()
    res = runner.invoke(app, ["train", "--quiet", "--resume", str(run)])
    assert res.exit_code == 0, res.output
    resumed = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [m["loss"] for m in resumed] == [m["loss"] for m in metrics["streamed"]]
    # downstream commands read the streamed data chunk by chunk: the probe repeats the summary's
    res = runner.invoke(app, ["probe", str(run), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["linear_acc"] == pytest.approx(summary["linear_acc"], abs=1e-6)
    out = tmp_path / "e.npy"
    args = ["embed", str(run), "--data", f"folder:{root}", "--split", "test", "-o", str(out)]
    res = runner.invoke(app, args)  # the folder's default load size, 32: not the run's 16
    assert res.exit_code == 2 and "--data-args, e.g. '{image_size: 16}'" in res.output
    res = runner.invoke(app, [*args, "--data-args", "{image_size: 16}"])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape[0] == 5  # the 20 % test split of 24 images
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    found = {}
    for name in ("streamed", "mem"):  # the folder streamed, or read into memory: file names stay with rows
        out = tmp_path / f"e-{name}.npz"
        more = ["--split", "test", "--data-args", "{image_size: 16}", "-o", str(out)]
        res = runner.invoke(app, ["embed", str(tmp_path / "runs" / name), "--data", f"folder:{root}", *more])
        assert res.exit_code == 0, res.output
        with np.load(out) as z:
            found[name] = z["ids"].tolist()
        assert len(found[name]) == len(set(found[name])) == 5 and set(found[name]) <= files
    assert found["streamed"] == found["mem"]


class _Slow(S.Source):
    """Grey 4 x 4 images, each read taking 50 ms (time to kill a worker mid-epoch)."""

    sample_shape = (1, 4, 4)

    def __len__(self):
        return 64

    def read(self, i):
        time.sleep(0.05)
        return torch.full((1, 4, 4), i, dtype=torch.uint8)


@pytest.mark.slow
def test_a_killed_worker_is_a_clear_error_not_a_hang():
    feed = Feed(_Slow(), EpochBatches(64, 4, seed=0), torch.device("cpu"), 1)
    batches = iter(feed)
    next(batches)
    os.kill(feed.loader._iterator._workers[0].pid, signal.SIGKILL)
    t0 = time.perf_counter()
    with pytest.raises(SelfsupError, match=r"data-loading worker process stopped.*data\.workers"):
        for _ in batches:
            pass
    assert time.perf_counter() - t0 < 30


class _Gone(_Slow):
    def read(self, i):
        raise S.DecodeError(f"sample {i}: file vanished")


@pytest.mark.slow
def test_a_source_that_cannot_be_read_is_one_clean_error():
    feed = Feed(_Gone(), EpochBatches(64, 4, seed=0), torch.device("cpu"), 1)
    with pytest.raises(SelfsupError, match="could not be read; is the data still there") as err:
        list(feed)
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)
    del err
    feed.close()  # torch stops the failed loader's workers here (it waits up to 5 s), not in a later test
    gc.collect()


def test_file_list_cache_sees_nested_folders_and_survives_a_bad_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "imgs", n_per_class=2)
    assert len(S.scan_folder(root)["files"]) == 4
    (root / "a" / "deeper").mkdir()
    Image.new("RGB", (8, 8)).save(root / "a" / "deeper" / "new.png")  # below a class folder
    assert len(S.scan_folder(root)["files"]) == 5
    for cached in (tmp_path / "cache" / "folders").glob("*.json"):
        cached.write_text("[1]")  # valid JSON, not a listing: rebuilt
    assert len(S.scan_folder(root)["files"]) == 5
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "a-file"))  # a file: the cache cannot be written
    with pytest.warns(UserWarning, match="could not cache the file list"):
        assert len(S.scan_folder(root)["files"]) == 5


def test_load_args_cannot_shadow_run_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "data.dataset=digits", "data.load_args={seed: 3}"])
    assert res.exit_code == 2 and "data.load_args.seed is not a loader option; set train.seed" in res.output
