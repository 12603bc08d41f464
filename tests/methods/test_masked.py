"""MAE and I-JEPA on a timm ViT: their losses equal an independent float64 transcription of the authors'
forward passes (facebookresearch/mae ``models_mae.py``: ``random_masking``, ``forward_encoder``,
``forward_decoder``, ``forward_loss``; facebookresearch/ijepa ``src/train.py`` with ``src/masks/utils.py``'s
``apply_masks`` and ``src/models/vision_transformer.py``'s predictor), I-JEPA's block sampler has the
statistics of the authors' ``src/masks/multiblock.py`` (transcribed here with numpy) on 10,000 draws, and
every mistake is one error line with nothing written."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.errors import ConfigError
from selfsup.methods import SSLModel, get_method
from selfsup.methods.masking import BlockSampler, sincos_2d
from selfsup.models import build_backbone

VIT = {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 24, "num_heads": 2}
PATCH_TOKENS = {**VIT, "class_token": False, "global_pool": "avg", "fc_norm": False}


def _model(method: str, vit: dict, **params) -> SSLModel:
    torch.manual_seed(0)
    backbone = build_backbone("timm:vit_tiny_patch16_224", (3, 16, 16), **vit)
    return SSLModel(get_method(method), backbone, params=params).double()


def _sincos_authors(dim: int, size: int) -> np.ndarray:
    """get_2d_sincos_pos_embed of the authors' util/pos_embed.py (no class token), in numpy."""

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))  # w first
    return np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)


def test_the_position_embedding_is_the_authors():
    assert np.allclose(sincos_2d(16, 5, 5).double().numpy(), _sincos_authors(16, 5), atol=1e-7)


def _mae_authors(m: SSLModel, imgs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """MAE's forward (models_mae.py) on the model's own modules, in float64."""
    vit, dec, ratio = m.backbone.net, m.decoder, m.options["mask_ratio"]
    x = vit.patch_embed(imgs) + vit.pos_embed[:, 1:, :]
    n, length, d = x.shape
    len_keep = int(length * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :len_keep].unsqueeze(-1).repeat(1, 1, d))
    mask = torch.ones(n, length, dtype=x.dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    x = torch.cat([(vit.cls_token + vit.pos_embed[:, :1, :]).expand(n, -1, -1), x], dim=1)
    for blk in vit.blocks:
        x = blk(x)
    x = vit.norm(x)
    x = dec.embed(x)  # forward_decoder
    mask_tokens = dec.mask_token.repeat(n, ids_restore.shape[1] + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
    x = torch.cat([x[:, :1, :], x_], dim=1)
    pos = torch.cat([torch.zeros(1, x.shape[2]), torch.from_numpy(_sincos_authors(x.shape[2], 4))])
    x = x + pos[None]
    for blk in dec.blocks:
        x = blk(x)
    pred = dec.pred(dec.norm(x))[:, 1:, :]
    p = 4  # forward_loss, with patchify
    target = imgs.reshape(n, 3, 4, p, 4, p)
    target = torch.einsum("nchpwq->nhwpqc", target).reshape(n, 16, p * p * 3)
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def test_mae_loss_equals_the_authors_forward_in_float64():
    m = _model("mae", VIT, decoder_dim=16, decoder_depth=2, decoder_heads=2)
    views = [torch.rand(6, 3, 16, 16, dtype=torch.float64) for _ in range(2)]
    torch.manual_seed(1)
    loss, feats = m.loss(views, torch.arange(6))
    torch.manual_seed(1)  # the same noise, drawn per view in the same order
    noise = [torch.rand(6, 16) for _ in range(2)]
    with torch.no_grad():
        ref = sum(_mae_authors(m, v, z) for v, z in zip(views, noise, strict=True)) / 2
    assert loss.dtype == torch.float32 and feats.shape == (6, 24)
    assert abs(loss.item() - ref.item()) < 1e-6, (loss.item(), ref.item())


def _ijepa_authors(m: SSLModel, imgs, masks_enc: list, masks_pred: list) -> torch.Tensor:
    """I-JEPA's train step (src/train.py: forward_target, forward_context, loss_fn) on the model's modules:
    masks as lists of B x K index tensors, outputs ordered mask-major (apply_masks,
    repeat_interleave_batch)."""

    def apply_masks(x, masks):
        return torch.cat([torch.gather(x, 1, mk.unsqueeze(-1).repeat(1, 1, x.size(-1))) for mk in masks], 0)

    def repeat_interleave_batch(x, b, repeat):
        n = len(x) // b
        return torch.cat([torch.cat([x[i * b : (i + 1) * b] for _ in range(repeat)], 0) for i in range(n)], 0)

    teacher, vit, pr = m.target["backbone"].net, m.backbone.net, m.predictor
    b = len(imgs)

    def encoder(net, x, masks=None):
        x = net.patch_embed(x) + net.pos_embed
        if masks is not None:
            x = apply_masks(x, masks)
        for blk in net.blocks:
            x = blk(x)
        return net.norm(x)

    h = encoder(teacher, imgs)
    h = F.layer_norm(h, (h.size(-1),))
    h = repeat_interleave_batch(apply_masks(h, masks_pred), b, repeat=len(masks_enc))
    z = encoder(vit, imgs, masks_enc)  # the predictor
    pos = torch.from_numpy(_sincos_authors(pr.embed.out_features, 4))[None].repeat(b, 1, 1)
    x = pr.embed(z) + apply_masks(pos, masks_enc)
    n_ctxt = x.shape[1]
    x = x.repeat(len(masks_pred), 1, 1)
    pred_tokens = pr.mask_token.repeat(len(masks_pred) * b, apply_masks(pos, masks_pred).size(1), 1)
    pred_tokens = pred_tokens + apply_masks(pos, masks_pred)
    x = torch.cat([x, pred_tokens], dim=1)
    for blk in pr.blocks:
        x = blk(x)
    x = pr.proj(pr.norm(x)[:, n_ctxt:])
    return F.smooth_l1_loss(x, h)


def test_ijepa_loss_equals_the_authors_train_step_in_float64():
    m = _model("ijepa", PATCH_TOKENS, predictor_dim=16, predictor_depth=2, predictor_heads=2, min_keep=0)
    with torch.no_grad():  # a target encoder apart from the online one, as after some EMA steps
        for p in m.target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    views = [torch.rand(5, 3, 16, 16, dtype=torch.float64) for _ in range(2)]
    state = torch.get_rng_state()
    loss, feats = m.loss(views, torch.arange(5))
    torch.set_rng_state(state)  # the same masks, drawn per view in the same order
    masks = [m.sampler(5) for _ in range(2)]
    with torch.no_grad():
        ref = (
            sum(
                _ijepa_authors(m, v, [ctx], list(tgt.unbind(1)))
                for v, (ctx, tgt) in zip(views, masks, strict=True)
            )
            / 2
        )
    assert feats.shape == (5, 24)
    assert abs(loss.item() - ref.item()) < 1e-6, (loss.item(), ref.item())


def _authors_sampler(rng: np.random.Generator, s: BlockSampler, batch: int):
    """src/masks/multiblock.py's __call__, transcribed with numpy: one batch's masks."""
    H, W = s.height, s.width

    def block_size(scale, aspect):
        u = rng.random()  # one draw for both, as the authors
        keep = int(H * W * (scale[0] + u * (scale[1] - scale[0])))
        a = aspect[0] + u * (aspect[1] - aspect[0])
        h, w = int(round(math.sqrt(keep * a))), int(round(math.sqrt(keep / a)))
        while h >= H:
            h -= 1
        while w >= W:
            w -= 1
        return h, w

    def block_mask(size, acceptable=None):
        h, w = size
        tries, timeout = 0, 20
        while True:
            top, left = rng.integers(0, H - h), rng.integers(0, W - w)
            mask = np.zeros((H, W), dtype=np.int32)
            mask[top : top + h, left : left + w] = 1
            if acceptable is not None:
                for k in range(max(len(acceptable) - tries, 0)):
                    mask *= acceptable[k]
            idx = np.flatnonzero(mask)
            if len(idx) > s.min_keep:
                comp = np.ones((H, W), dtype=np.int32)
                comp[top : top + h, left : left + w] = 0
                return idx, comp
            timeout -= 1
            if timeout == 0:
                tries, timeout = tries + 1, 20

    p_size = block_size(s.pred_scale, s.aspect_ratio)
    e_size = block_size(s.enc_scale, (1.0, 1.0))
    preds, encs = [], []
    for _ in range(batch):
        pairs = [block_mask(p_size) for _ in range(s.n_pred)]
        preds.append([p for p, _ in pairs])
        encs.append(block_mask(e_size, None if s.allow_overlap else [c for _, c in pairs])[0])
    keep = min(len(e) for e in encs)
    return [e[:keep] for e in encs], preds, p_size


def _stats(encs, preds, sizes):
    overlap = [
        bool(set(e) & set(np.concatenate([np.asarray(p) for p in pr]).tolist()))
        for e, pr in zip(encs, preds, strict=True)
    ]
    return {
        "ctx": np.mean([len(e) for e in encs]),
        "tgt": np.mean([len(p) for pr in preds for p in pr]),
        "overlap": np.mean(overlap),
        "sizes": sizes,
        "n_blocks": {len(pr) for pr in preds},
    }


@pytest.mark.slow  # 10,000 samples through the authors' rejection loop in Python
def test_the_block_sampler_matches_the_authors_on_10000_draws():
    s = BlockSampler(14, 14)  # the authors' ImageNet defaults on a 14 x 14 grid
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    ours, theirs = ([], [], []), ([], [], [])
    for _ in range(2500):  # 2,500 batches of 4: 10,000 sampled images, 2,500 block sizes
        e, p, size = _authors_sampler(rng, s, 4)
        theirs[0].extend(e), theirs[1].extend(p), theirs[2].append(size)
        ctx, tgt = s(4)
        ours[0].extend(ctx.numpy()), ours[1].extend(list(t.numpy()) for t in tgt)
        rows, cols = tgt[0, 0] // 14, tgt[0, 0] % 14  # the batch's block size, from its first block
        ours[2].append((int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)))
    a, b = _stats(*ours), _stats(*theirs)
    assert a["n_blocks"] == b["n_blocks"] == {4}
    assert a["ctx"] == pytest.approx(b["ctx"], rel=0.03) and a["tgt"] == pytest.approx(b["tgt"], rel=0.03)
    assert a["overlap"] == pytest.approx(b["overlap"], abs=0.02)
    for size in set(ours[2]) | set(theirs[2]):  # the law of the block size (scale and aspect ranges)
        assert ours[2].count(size) / 2500 == pytest.approx(theirs[2].count(size) / 2500, abs=0.04), size
    # every target block is a full h x w rectangle inside the grid, and no context patch is a target's
    ctx, tgt = s(64)
    rows, cols = tgt // 14, tgt % 14
    spans = (rows.amax(-1) - rows.amin(-1) + 1) * (cols.amax(-1) - cols.amin(-1) + 1)
    assert (spans == tgt.shape[-1]).all()
    assert not (ctx[:, :, None, None] == tgt[:, None]).any()  # 64 rows: no relaxation at these scales


def test_a_resume_and_two_processes_mask_as_one(monkeypatch):
    from selfsup.views import batch_shard

    s = BlockSampler(8, 8, min_keep=2)
    torch.manual_seed(3)
    whole = s(6)
    parts = []
    for offset in (0, 3):  # two processes, each with the same generator state, holding 3 rows each
        torch.manual_seed(3)
        with batch_shard(offset, 6):
            parts.append(s(3))
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])


@pytest.mark.parametrize(
    "args,message",
    [
        (["method.name=mae", "model.backbone=convnet", "model.backbone_args={}"], "use a timm ViT backbone"),
        (["method.name=ijepa", "model.backbone=mlp", "model.backbone_args={}"], "use a timm ViT backbone"),
        (["method.name=mae", "method.params={mask_ratio: 1.0}"], "strictly between 0 and 1"),
        (["method.name=mae", "method.params={mask_ratio: 0}"], "strictly between 0 and 1"),
        (["method.name=mae", "model.projector=64-64"], "set model.projector=null"),
        (["method.name=ijepa", "method.params={min_keep: 10}"], "cannot fit the 4 x 4 patch grid"),
        (
            [
                "method.name=ijepa",
                "model.backbone_args={img_size: 16, patch_size: 4, depth: 1, embed_dim: 8, num_heads: 2}",
            ],
            "class_token: false",
        ),
    ],
)
def test_mistakes_are_one_error_line_and_nothing_is_written(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "rgb.npz", x=np.zeros((16, 3, 16, 16), dtype=np.uint8))
    vit = (
        "model.backbone_args={img_size: 16, patch_size: 4, depth: 1, embed_dim: 8, num_heads: 2, "
        "class_token: false, global_pool: avg, fc_norm: false}"
    )
    base = [
        "data.dataset=arrays:rgb.npz",
        "train.batch_size=8",
        "model.projector=null",
        "model.backbone=timm:vit_tiny_patch16_224",
        vit,
    ]
    res = CliRunner().invoke(app, ["train", "--quiet", *base, *args, "train.name=bad"])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert res.output.startswith("error:") and not (tmp_path / "runs").exists()


def test_the_sampler_refuses_a_grid_its_blocks_cannot_fit():
    with pytest.raises(ConfigError, match="min_keep=10"):
        BlockSampler(4, 4).check()
    BlockSampler(4, 4, min_keep=0).check()
