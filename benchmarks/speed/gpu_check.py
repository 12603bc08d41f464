"""The CUDA path, checked and timed on one GPU in one command (about 5 minutes on one H100).

Stages, in order; each writes its part of the JSON as it finishes, so a stop loses only the running one:

- ``preflight`` (seconds): imports, the CUDA device, bfloat16 support, NCCL, a bfloat16 matrix product and
  a fused AdamW step on the GPU.
- ``main``: the main job, ``selfsup train train.device=cuda`` (bfloat16 steps): time, accuracy, memory.
- ``vit``: the ViT preset (configs/vicreg-vit-objects3d.yaml, timm backbone) on CUDA: time, accuracy, memory.
- ``stream``: SimCLR view pairs from a 96 px JPEG folder, images/s: selfsup's streaming loader (workers
  decode to uint8, pinned memory, views drawn on the GPU) against the peer pipeline decoding and
  augmenting on the CPU (``benchmarks.speed.bench_data``'s measurement).
- ``nccl``: a 1-process ``torchrun`` job on the NCCL backend: the main job's model in DistributedDataParallel
  with the criterion gathering over processes (``gather_distributed``), a few bfloat16 training steps.
- ``pde``: the KdV preset at 10x its CPU budget (100 epochs, solver 10,000 steps), then ``pde evaluate``.

Nothing falls back to the CPU: every stage names ``cuda`` and fails when it is missing. ``--dry-run`` checks
every stage's set-up without a GPU (configs resolve, modules import, and the nccl stage's torchrun job
runs 2 steps on the CPU with gloo); the test suite runs it.

    python -m benchmarks.speed.gpu_check [--only preflight main vit stream nccl pde] [--dry-run] [--out FILE]

Writes benchmarks/results/gpu_check.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, machine_info, write_result

OUT = Path("benchmarks/results/gpu_check.json")
STAGES = ("preflight", "main", "vit", "stream", "nccl", "pde")
SELFSUP = [sys.executable, "-m", "selfsup.cli"]
MAIN = ["train.device=cuda"]
VIT = ["--config", "configs/vicreg-vit-objects3d.yaml", "train.device=cuda"]
PDE = ["--config", "configs/vicreg-kdv.yaml", "train.device=cuda", "train.epochs=100"]
PDE_SOLVER_STEPS = 10_000


def preflight(dry: bool) -> dict:
    import torch

    import selfsup.cli  # noqa: F401  (the package and its command line import)

    out = {"torch": torch.__version__, "cuda_build": torch.version.cuda}
    if dry:
        return out
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU is visible to torch (CUDA_VISIBLE_DEVICES? driver?)")
    import torch.distributed as dist

    dev = torch.device("cuda")
    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    bf16_tflops = 10 * 2 * 4096**3 / (time.perf_counter() - t0) / 1e12
    p = torch.nn.Parameter(torch.randn(1000, device=dev))
    opt = torch.optim.AdamW([p], fused=True)
    p.sum().backward()
    opt.step()
    out |= {"device": torch.cuda.get_device_name(), "bf16_supported": torch.cuda.is_bf16_supported()}
    out |= {"nccl": dist.is_nccl_available(), "bf16_matmul_tflops": round(bf16_tflops, 1)}
    if not (out["bf16_supported"] and out["nccl"]):
        raise SystemExit(f"error: this GPU setup lacks bfloat16 or NCCL: {out}")
    return out


def main_job(dry: bool, runs: Path) -> dict:
    return _job(MAIN, dry, runs, "gpu-main")


def vit(dry: bool, runs: Path) -> dict:
    return _job(VIT, dry, runs, "gpu-vit")


def _job(args: list[str], dry: bool, runs: Path, name: str) -> dict:
    """One preset on CUDA in bfloat16: time, accuracy, memory (``dry``: its config resolves, timm imports)."""
    from selfsup import config as C
    from selfsup.models.registry import build_backbone

    config = str(ROOT / args[1]) if args[0] == "--config" else None
    cfg = C.resolve(config, args[2:] if config else args)
    command = {"command": "selfsup train " + " ".join(args), "epochs": cfg.train.epochs}
    if dry:  # the backbone builds (a timm one needs the optional extra), on the CPU, for the preset's images
        size = cfg.data.load_args.get("image_size")
        shape = (1, 40) if size is None else (3, size, size)  # the main job's MNIST-1D, or RGB renders
        backbone = build_backbone(cfg.model.backbone, shape, **cfg.model.backbone_args)
        return command | {"backbone_parameters": sum(p.numel() for p in backbone.parameters())}
    summary = _train(args, runs, name)
    if summary["train_precision"] != "bfloat16":
        raise SystemExit(f"error: {name} on CUDA ran {summary['train_precision']} steps, not bfloat16")
    keys = ("train_seconds", "linear_acc", "knn_acc", "rankme_backbone", "peak_rss_mb", "peak_device_mb")
    return command | {k: summary.get(k) for k in keys}


def stream(dry: bool, runs: Path) -> dict:
    import torch

    from benchmarks.speed import bench_data

    if dry:
        return {"what": "bench_data.throughput(96 px, 2048 images, 2 rounds, cuda)"}
    result = bench_data.throughput(96, 2048, 2, torch.device("cuda"), runs / "stream-cache")
    return {"what": "SimCLR pairs from a 96 px JPEG folder, batch 256, 2 workers, images/s"} | result


def nccl(dry: bool, runs: Path) -> dict:
    """The worker under torchrun; ``dry``: the same job on the CPU with gloo, 2 steps."""
    out = runs / "nccl.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", __spec__.name]
    cmd += ["--nccl-worker", str(out), *(["--dry-run"] if dry else [])]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def nccl_worker(out: Path, dry: bool) -> None:
    """One torchrun process: the main job's model in DDP over NCCL, the criterion gathering over ranks."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from selfsup import config as C
    from selfsup.train.components import build
    from selfsup.views import draw_views

    backend, device, steps = ("gloo", "cpu", 2) if dry else ("nccl", "cuda", 20)
    dist.init_process_group(backend)
    if not dry:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    c = build(C.resolve(None, [f"train.device={device}"]))
    c.model.gather_distributed = True
    model = DistributedDataParallel(c.model, device_ids=None if dry else [c.device.index or 0])
    opt = torch.optim.AdamW(c.model.parameters(), lr=1e-3, fused=True)
    x, idx = c.data.train.x[:128].to(c.device), torch.arange(128, device=c.device)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=not dry):
            views, transform = draw_views(c.views, x, idx)
            loss, _ = model(views, idx, transform)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))  # a host sync each step: the time includes it
    step_ms = (time.perf_counter() - t0) / steps * 1e3
    total = torch.ones(1, device=c.device)
    dist.all_reduce(total)
    dist.destroy_process_group()
    if not all(map(math.isfinite, losses)) or total.item() != 1:
        raise SystemExit(f"error: the {backend} job went wrong: losses {losses}, all_reduce {total.item()}")
    result = {"backend": backend, "device": device, "steps": steps, "step_ms": round(step_ms, 2)}
    out.write_text(json.dumps(result | {"losses": losses}))


def pde(dry: bool, runs: Path) -> dict:
    from selfsup import config as C

    cfg = C.resolve(str(ROOT / PDE[1]), PDE[2:])
    evaluate = ["pde", "evaluate", str(runs / "gpu-kdv"), "--seeds", "1"]
    evaluate += ["--solver-steps", str(PDE_SOLVER_STEPS), "--device", "cuda"]
    if dry:
        return {"train": "selfsup train " + " ".join(PDE), "evaluate": "selfsup " + " ".join(evaluate)}
    t0 = time.perf_counter()
    summary = _train(PDE, runs, "gpu-kdv")
    train_s = time.perf_counter() - t0
    subprocess.run([*SELFSUP, *evaluate], check=True, cwd=ROOT)
    ev = json.loads((runs / "gpu-kdv" / "pde_eval.json").read_text())
    return {
        "epochs": cfg.train.epochs,
        "train_s": round(train_s, 1),
        "rankme": summary["rankme_backbone"],
    } | {
        "evaluate_s": round(time.perf_counter() - t0 - train_s, 1),
        "pde_eval": ev,
    }


def _train(overrides: list[str], runs: Path, name: str) -> dict:
    cmd = [*SELFSUP, "train", "--quiet", *overrides, f"train.out_dir={runs}", f"train.name={name}"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((runs / name / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=STAGES, help="stages to run (default: all, in order)")
    ap.add_argument("--dry-run", action="store_true", help="check every stage's set-up; needs no GPU")
    ap.add_argument("--out", type=Path, default=OUT, help="result file (relative: to the repository root)")
    ap.add_argument("--nccl-worker", type=Path, help=argparse.SUPPRESS)  # the nccl stage's torchrun process
    args = ap.parse_args()
    if args.nccl_worker:
        return nccl_worker(args.nccl_worker, args.dry_run)
    stages = dict(zip(STAGES, (preflight, main_job, vit, stream, nccl, pde), strict=True))
    doc = {"benchmark": "gpu_check", "dry_run": args.dry_run, "stages": {}}
    out, machine = ROOT / args.out, machine_info()
    runs = Path(tempfile.mkdtemp(prefix="selfsup-gpu-check-"))
    for name in args.only or STAGES:
        t0 = time.perf_counter()
        if not args.dry_run:
            print(f"== {name}", flush=True)
        fn = stages[name]
        doc["stages"][name] = (fn(args.dry_run) if name == "preflight" else fn(args.dry_run, runs)) | {
            "wall_s": round(time.perf_counter() - t0, 1)
        }
        write_result(out, doc, machine=machine)  # after every stage
    print(f"-> {out}")


if __name__ == "__main__":
    main()
