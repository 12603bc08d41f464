"""One process of a test job that trains several runs in one launch (tests/train/test_distributed.py):

    [torchrun ...] tests/train/ddp_multi_worker.py RECORD_DIR NAME ARGS... :: NAME ARGS... :: ...

joins the torchrun job once, then trains each ``selfsup train`` configuration (dotted overrides) in turn
with :func:`selfsup.train.fit`, and writes the loss of every training step of this process to
``RECORD_DIR/NAME/losses-rank<R>-attempt0.json``.
"""

import json
import os
import sys
from pathlib import Path

import torch

import selfsup.methods
from selfsup import config as C
from selfsup.train import distributed, fit

RANK = int(os.environ.get("RANK", "0"))
LOSSES: list[float] = []
_forward = selfsup.methods.SSLModel.forward


def forward(self, views, index, transform=None):
    loss, feats = _forward(self, views, index, transform)
    LOSSES.append(float(loss.detach()))
    return loss, feats


def main() -> None:
    selfsup.methods.SSLModel.forward = forward
    record, groups = Path(sys.argv[1]), [[]]
    for arg in sys.argv[2:]:
        groups.append([]) if arg == "::" else groups[-1].append(arg)
    with distributed.joined(torch.device("cpu")):
        for name, *overrides in groups:
            LOSSES.clear()
            cfg = C.resolve(None, overrides)
            # an explicit run directory: the job's store notes the first run's, for a restart to resume
            fit(cfg, run_dir=Path(cfg.train.out_dir) / cfg.train.name, progress=False)
            (record / name).mkdir(parents=True, exist_ok=True)
            (record / name / f"losses-rank{RANK}-attempt0.json").write_text(json.dumps(LOSSES))


if __name__ == "__main__":
    main()
