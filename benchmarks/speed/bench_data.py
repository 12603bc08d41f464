"""Training views from a JPEG folder: selfsup's streaming path vs the common per-sample peer pipeline.

Both deliver SimCLR view pairs (float32 in [0, 1]) of every image of a generated JPEG folder (10 class
sub-folders; smooth random images, so the files compress like photographs), batch 256, 2 DataLoader workers:

- peer: ``torchvision.datasets.ImageFolder`` (PIL decode) with a per-sample ``transforms.v2`` SimCLR
  pipeline applied twice in ``__getitem__`` (RandomResizedCrop 0.08-1, flip 0.5, ColorJitter(0.8, 0.8, 0.8,
  0.2) p 0.8, grayscale 0.2, and at 96 px Gaussian blur p 0.5), shuffled, persistent workers;
- selfsup: ``load_dataset("folder:...", stream=True)``: workers decode (torchvision) to uint8 at the load
  size, batches travel as uint8, and the two SimCLR views are drawn batched on the device
  (:mod:`selfsup.views`; here the CPU's main process).

Images per second (each one delivered as a pair of views), after one warm-up epoch, rounds alternating
between the pipelines; the medians are reported. ``--device cuda`` times the selfsup side on a GPU.

``--memory`` instead measures the peak memory (PSS of the process and its DataLoader workers, sampled from
``/proc``: RSS would count twice the pages forked workers share; and the main process's own peak RSS) of
``selfsup train`` for one epoch on unlabelled 5,000- and 50,000-image 96 x 96 folders, streamed,
and the in-memory figure that ``data.stream=auto`` would take for the small one.

Writes ``benchmarks/results/bench_data.json`` (or ``bench_data_memory.json``).
Usage: ``python -m benchmarks.speed.bench_data [--images 2048] [--rounds 3]`` /
``python -m benchmarks.speed.bench_data --memory``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from benchmarks._common import machine_info, write_result
from selfsup.data import load_dataset
from selfsup.data.stream import EpochBatches, Feed
from selfsup.views import build_view_set

BATCH = 256
WORKERS = 2
TARGET = 2.0


def make_folder(root: Path, n: int, side: int, classes: int = 10, labelled: bool = True) -> Path:
    """``n`` JPEGs of ``side`` px: low-frequency colour fields plus mild noise (quality 90); kept if there."""
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(side)
    for i in range(n):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        im = Image.fromarray(coarse).resize((side, side), Image.BICUBIC)
        arr = np.clip(np.asarray(im, dtype=np.int16) + rng.integers(-8, 9, (side, side, 3)), 0, 255)
        folder = root / f"class{i % classes}" if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    done.touch()
    return root


def peer_transform(side: int) -> v2.Compose:
    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(side, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if side >= 64:  # SimCLR's blur, off for CIFAR-sized images (as selfsup's recipe)
        steps.append(v2.RandomApply([v2.GaussianBlur(side // 10 | 1, sigma=(0.1, 2.0))], p=0.5))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


class TwoViews:
    def __init__(self, transform):
        self.transform = transform

    def __call__(self, im):
        return self.transform(im), self.transform(im)


def peer_epoch(loader: DataLoader) -> float:
    t0, n = time.perf_counter(), 0
    for views, _ in loader:
        n += len(views[0])
    return n / (time.perf_counter() - t0)


def ours_epoch(feed: Feed, views, epoch: int) -> float:
    feed.batches.set_epoch(epoch)
    t0, n = time.perf_counter(), 0
    for _, x in feed:
        pair = [view(x) for view in views]
        n += len(pair[0])
    if feed.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def throughput(side: int, n: int, rounds: int, device: torch.device, cache: Path) -> dict:
    root = make_folder(cache / f"jpeg{side}-{n}", n, side)
    peer = DataLoader(
        torchvision.datasets.ImageFolder(str(root), transform=TwoViews(peer_transform(side))),
        batch_size=BATCH,
        shuffle=True,
        num_workers=WORKERS,
        persistent_workers=True,
        drop_last=True,
    )
    data = load_dataset(f"folder:{root}", stream=True, workers=WORKERS, image_size=side)
    x = data.train.x  # the 80 % train split; the peer reads every image: images/s is the figure
    feed = Feed(x, EpochBatches(len(x), BATCH, seed=0), device, WORKERS)
    views = build_view_set("simclr", data.sample_shape, 2).to(device)
    peer_epoch(peer)  # warm-up: workers started, files in the page cache
    ours_epoch(feed, views, 0)
    peer_rates, our_rates = [], []
    for r in range(rounds):
        peer_rates.append(peer_epoch(peer))
        our_rates.append(ours_epoch(feed, views, r + 1))
        print(f"{side} px round {r}: peer {peer_rates[-1]:7.0f} img/s | selfsup {our_rates[-1]:7.0f} img/s")
    med = statistics.median
    return {
        "images": n,
        "peer_images_per_s": {"median": med(peer_rates), "rounds": peer_rates},
        "selfsup_images_per_s": {"median": med(our_rates), "rounds": our_rates},
        "ratio": med(our_rates) / med(peer_rates),
    }


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its descendants (shared pages split among them), MiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        stack.extend(int(c) for c in children)
    return total / 1024


def peak_memory(args: list[str], cwd: Path) -> tuple[float, float]:
    """Peak PSS (MiB) of ``selfsup train args`` with its workers, sampled every 0.1 s; and wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "selfsup", "train", "--quiet", *args], cwd=cwd)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_pss_mb(proc.pid))
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"selfsup train failed ({proc.returncode}): {args}")
    return peak, time.perf_counter() - t0


def memory(cache: Path) -> dict:
    common = [
        "model.backbone=convnet",
        "model.backbone_args={width: 8}",
        "model.projector=64-64",
        "method.name=simclr",
        "train.epochs=1",
        "train.batch_size=256",
        "data.monitor_size=512",
        "train.lidar_samples=0",
        "data.load_args={image_size: 96}",
        f"data.workers={WORKERS}",
    ]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (5000, 50000):
            root = make_folder(cache / f"jpeg96-{n}-unlabelled", n, 96, labelled=False)
            runs = [("streamed", "data.stream=true")] + (
                [("in_memory", "data.stream=false")] if n == 5000 else []
            )
            for mode, flag in runs:
                name = f"{mode}{n}"
                args = [f"data.dataset=folder:{root}", *common, flag, f"train.name={name}"]
                peak, wall = peak_memory(args, Path(tmp))
                rss = json.loads((Path(tmp) / "runs" / name / "summary.json").read_text())["peak_rss_mb"]
                out[f"{mode}_{n}"] = {"peak_pss_mb": peak, "main_process_peak_rss_mb": rss, "seconds": wall}
                print(f"{n} images, {mode}: peak PSS {peak:.0f} MiB, main RSS {rss:.0f} MiB, {wall:.0f} s")
    out["streamed_growth_mb"] = out["streamed_50000"]["peak_pss_mb"] - out["streamed_5000"]["peak_pss_mb"]
    rss = [out[f"streamed_{n}"]["main_process_peak_rss_mb"] for n in (5000, 50000)]
    out["streamed_growth_main_process_rss_mb"] = rss[1] - rss[0]
    out["target_growth_mb"] = 150
    out["meets_target"] = out["streamed_growth_mb"] <= 150
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="measure peak memory of selfsup train instead")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "selfsup-bench-data")
    args = parser.parse_args()
    if args.memory:
        result = {"benchmark": "bench_data --memory", **memory(args.cache)}
        name = "bench_data_memory.json"
    else:
        device = torch.device(args.device)
        sizes = {str(s): throughput(s, args.images, args.rounds, device, args.cache) for s in (32, 96)}
        ratio = min(v["ratio"] for v in sizes.values())
        result = {
            "benchmark": "bench_data",
            "what": "SimCLR view pairs from a JPEG folder, images per second, batch 256, 2 workers",
            "device": str(device),
            "sizes": sizes,
            "ratio": ratio,
            "target_ratio": TARGET,
            "meets_target": ratio >= TARGET,
        }
        name = "bench_data.json" if device.type == "cpu" else f"bench_data_{device.type}.json"
    # the peer pipeline's decoding and transforms are torchvision's: its version belongs to the measurement
    path = write_result(name, result, machine={**machine_info(), "torchvision": torchvision.__version__})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
