"""Masked prediction on a timm Vision Transformer: MAE reconstructs the pixels of masked patches from the
visible ones; I-JEPA predicts, from a context block, an EMA target encoder's representations of target
blocks. Both use timm's ViT as the encoder (its patch embedding, position embedding, blocks and final
norm, run on a subset of the patch tokens); their heads are built from timm's transformer ``Block``.

Each view of a batch is masked and predicted on its own (two views: twice the samples). The
representation for probes and RankMe is the backbone's as timm pools it (``pool``): MAE's class token after
the final norm (the authors' linear probe reads the class token), I-JEPA's mean patch token after the final
norm (the authors' linear probe averages the patch tokens; I-JEPA's ViT has no class token). The monitor
reports every block's class and mean patch token beside it.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import criteria
from selfsup.errors import ConfigError
from selfsup.methods.ema import make_teacher
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe
from selfsup.methods.masking import BlockSampler, kept_tokens, random_masking, sincos_2d
from selfsup.options import int_at_least, number_in


def timm_vit(m, method: str) -> nn.Module:
    """The timm ``VisionTransformer`` inside ``m.backbone``, or one error saying what to use."""
    net = getattr(m.backbone, "net", None)
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        VisionTransformer = None  # noqa: N806
    if VisionTransformer is None or not isinstance(net, VisionTransformer):
        raise ConfigError(
            f"method '{method}' masks the patch tokens of a Vision Transformer: use a timm ViT backbone, "
            "e.g. model.backbone=timm:vit_tiny_patch16_224 with backbone_args {img_size: 32, patch_size: 8}"
        )
    if net.no_embed_class or getattr(net, "reg_token", None) is not None or net.dynamic_img_size:
        raise ConfigError(
            f"method '{method}' takes a ViT with a position embedding for every token and no register "
            "tokens (timm's defaults: no_embed_class, reg_tokens and dynamic_img_size unset)"
        )
    return net


def embed_patches(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``B x L x D`` patch tokens with their position embedding (no class token)."""
    return vit.patch_embed(x) + vit.pos_embed[:, vit.num_prefix_tokens :]


def encode(vit: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The ViT's blocks and final norm on ``tokens`` (a subset of :func:`embed_patches`), the class token
    (with its position) prepended when the ViT has one: ``B x (prefix + K) x D``."""
    if vit.cls_token is not None:
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
    return vit.norm(vit.blocks(vit.norm_pre(vit.pos_drop(tokens))))


def _blocks(dim: int, depth: int, heads: int) -> nn.Sequential:
    from timm.models.vision_transformer import Block

    if dim % heads:
        raise ConfigError(f"a head of width {dim} cannot have {heads} attention heads (divide it)")
    norm = functools.partial(nn.LayerNorm, eps=1e-6)
    return nn.Sequential(
        *[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)]
    )


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``N x C x H x W`` images as ``N x L x (p p C)`` patches, pixels ordered (row, column, channel) as
    the authors' ``patchify``."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


class MaskedPrediction(MethodKind):
    """What MAE and I-JEPA share: no projector (their heads predict patches), no MLP predictor."""

    def build_projector(self, m, spec: str, opts: HeadOptions) -> nn.Module:
        timm_vit(m, m.recipe.name)  # the backbone first: the error that matters most
        if spec or opts.predictor:
            what = "model.projector" if spec else "model.predictor"
            raise ConfigError(
                f"method '{m.recipe.name}' has no MLP {what.split('.')[1]} (its heads are sized by "
                f"method.params): set {what}=null (the default projector is the main job's)"
            )
        return nn.Identity()


class MAEDecoder(nn.Module):
    """MAE's light decoder: the encoded visible tokens embedded to ``dim``, a shared mask token at every
    removed position, fixed sine-cosine positions, ``depth`` transformer blocks, a norm, and a linear map
    to each patch's pixels (He et al. 2022, sec. 3; the authors' ``forward_decoder``)."""

    def __init__(
        self, enc_dim: int, grid: tuple[int, int], prefix: int, pixels: int, dim: int, depth: int, heads: int
    ):
        super().__init__()
        self.prefix = prefix
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = torch.cat([torch.zeros(prefix, dim), sincos_2d(dim, *grid)])
        self.register_buffer("pos", pos[None], persistent=False)
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, pixels)
        for module in self.modules():  # the authors' initialisation
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_shuffle: torch.Tensor) -> torch.Tensor:
        """``N x L x pixels`` for every patch, from ``latent`` (prefix + kept tokens, in ``ids_shuffle``'s
        order)."""
        x = self.embed(latent)
        n, n_tokens = ids_shuffle.shape
        visible = x[:, self.prefix :]
        masked = self.mask_token.expand(n, n_tokens - visible.shape[1], -1)
        restore = ids_shuffle.argsort(dim=1)[..., None].expand(-1, -1, x.shape[2])
        x = torch.cat([x[:, : self.prefix], torch.cat([visible, masked], 1).gather(1, restore)], 1) + self.pos
        return self.pred(self.norm(self.blocks(x)))[:, self.prefix :]


class MaskedAutoencoder(MaskedPrediction):
    """MAE: ``mask_ratio`` of each view's patches removed at random, the ViT on the rest, the decoder
    (``decoder_dim`` wide, ``decoder_depth`` blocks) reconstructs every patch; the loss counts the removed
    ones (:func:`selfsup.criteria.mae_loss`)."""

    @staticmethod
    def options(
        mask_ratio: float = 0.75, decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16
    ) -> dict:
        if not 0 < number_in("mask_ratio", mask_ratio, 0.0, 1.0) < 1:
            raise ConfigError(f"mask_ratio must be strictly between 0 and 1; got {mask_ratio}")
        return {
            "mask_ratio": float(mask_ratio),
            "decoder_dim": int_at_least("decoder_dim", decoder_dim, 1),
            "decoder_depth": int_at_least("decoder_depth", decoder_depth, 1),
            "decoder_heads": int_at_least("decoder_heads", decoder_heads, 1),
        }

    def build_heads(self, m, opts: HeadOptions) -> None:
        vit = timm_vit(m, "mae")
        n_tokens = vit.patch_embed.num_patches
        if kept_tokens(n_tokens, m.options["mask_ratio"]) < 1:
            raise ConfigError(f"mae: mask_ratio={m.options['mask_ratio']} keeps no patch of {n_tokens}")
        p, o = vit.patch_embed.patch_size[0], m.options
        pixels = p * p * m.backbone.sample_shape[0]
        m.decoder = MAEDecoder(
            vit.embed_dim,
            vit.patch_embed.grid_size,
            vit.num_prefix_tokens,
            pixels,
            o["decoder_dim"],
            o["decoder_depth"],
            o["decoder_heads"],
        )

    def features(self, m, views: list[torch.Tensor]) -> list[tuple]:
        """Per view: the encoded visible tokens, their order and the mask."""
        vit, out = m.backbone.net, []
        for v in views:
            tokens = embed_patches(vit, v)
            ids_shuffle, mask = random_masking(len(v), tokens.shape[1], m.options["mask_ratio"], v.device)
            keep = kept_tokens(tokens.shape[1], m.options["mask_ratio"])
            ids = ids_shuffle[:, :keep, None].expand(-1, -1, tokens.shape[2])
            out.append((encode(vit, tokens.gather(1, ids)), ids_shuffle, mask))
        return out

    def probe_features(self, m, feats) -> torch.Tensor:
        """The first view's pooled features of its visible patches (the online probe's input)."""
        return m.backbone.net.forward_head(feats[0][0], pre_logits=True)

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        p = m.backbone.net.patch_embed.patch_size[0]
        losses = [
            m.recipe.criterion(m.decoder(latent, ids), patchify(v, p), mask, **m.criterion_options)
            for (latent, ids, mask), v in zip(feats, views, strict=True)
        ]
        return sum(losses) / len(losses)

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g), torch.ones(2, 4)


class JEPAPredictor(nn.Module):
    """I-JEPA's narrow predictor: the context tokens embedded to ``dim`` with fixed sine-cosine positions,
    for each target block a mask token at every target position, ``depth`` transformer blocks over both,
    then the target tokens mapped back to the encoder's width (the authors'
    ``VisionTransformerPredictor``)."""

    def __init__(self, enc_dim: int, grid: tuple[int, int], dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos", sincos_2d(dim, *grid), persistent=False)
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, enc_dim)
        for module in self.modules():  # the authors' initialisation
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, ctx: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> torch.Tensor:
        """``b x n x K x enc_dim`` predictions of the ``n`` target blocks ``tgt_idx`` (b x n x K) from the
        encoded context ``ctx`` (b x K_ctx x enc_dim) at positions ``ctx_idx``."""
        b, n, k = tgt_idx.shape
        x = (self.embed(ctx) + self.pos[ctx_idx]).repeat_interleave(n, dim=0)  # one copy per target block
        targets = self.mask_token + self.pos[tgt_idx.flatten(0, 1)]
        x = self.norm(self.blocks(torch.cat([x, targets], dim=1)))
        return self.proj(x[:, ctx.shape[1] :]).view(b, n, k, -1)


def _range(name: str, value, low: float, high: float) -> tuple[float, float]:
    """A ``[a, b]`` pair with ``low <= a <= b <= high``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"ijepa: {name} must be a pair [min, max]; got {value!r}")
    a, b = (number_in(name, v, low, high) for v in value)
    if a > b:
        raise ConfigError(f"ijepa: {name} must be [min, max] with min <= max; got {list(value)}")
    return float(a), float(b)


class JointEmbeddingPredictive(MaskedPrediction):
    """I-JEPA: per view, one context block and ``n_pred`` target blocks (:class:`BlockSampler`); the ViT
    encodes the context tokens, the predictor predicts the target tokens, and the loss regresses the EMA
    target encoder's layer-normalised tokens of the whole image at the target positions
    (:func:`selfsup.criteria.ijepa_loss`). The target's momentum rises linearly from ``ema_base`` to 1 over
    ``ipe_scale`` x the training (the authors' schedule: 0.996 -> 1 over 1.25 x the epochs)."""

    @staticmethod
    def options(
        n_pred: int = 4,
        pred_scale: tuple = (0.15, 0.2),
        enc_scale: tuple = (0.85, 1.0),
        aspect_ratio: tuple = (0.75, 1.5),
        min_keep: int = 10,
        allow_overlap: bool = False,
        predictor_dim: int = 384,
        predictor_depth: int = 12,
        predictor_heads: int = 12,
        ipe_scale: float = 1.25,
    ) -> dict:
        return {
            "n_pred": int_at_least("n_pred", n_pred, 1),
            "pred_scale": _range("pred_scale", pred_scale, 0.0, 1.0),
            "enc_scale": _range("enc_scale", enc_scale, 0.0, 1.0),
            "aspect_ratio": _range("aspect_ratio", aspect_ratio, 1e-3, 1e3),
            "min_keep": int_at_least("min_keep", min_keep, 0),
            "allow_overlap": bool(allow_overlap),
            "predictor_dim": int_at_least("predictor_dim", predictor_dim, 1),
            "predictor_depth": int_at_least("predictor_depth", predictor_depth, 1),
            "predictor_heads": int_at_least("predictor_heads", predictor_heads, 1),
            "ipe_scale": number_in("ipe_scale", ipe_scale, 1.0),
        }

    def build_heads(self, m, opts: HeadOptions) -> None:
        vit = timm_vit(m, "ijepa")
        if vit.num_prefix_tokens or not isinstance(vit.fc_norm, nn.Identity):
            raise ConfigError(
                "ijepa trains patch tokens only (its representation is their mean after the final norm): "
                "build the ViT with backbone_args {class_token: false, global_pool: avg, fc_norm: false}"
            )
        o, grid = m.options, vit.patch_embed.grid_size
        names = ("n_pred", "pred_scale", "enc_scale", "aspect_ratio", "min_keep", "allow_overlap")
        m.sampler = BlockSampler(*grid, **{k: o[k] for k in names})
        m.sampler.check()
        m.predictor = JEPAPredictor(
            vit.embed_dim, grid, o["predictor_dim"], o["predictor_depth"], o["predictor_heads"]
        )
        make_teacher(m, ("backbone",))

    def momentum(self, m, step: int, total_steps: int) -> float:
        return m.ema_base + (1.0 - m.ema_base) * min(step / (total_steps * m.options["ipe_scale"]), 1.0)

    def features(self, m, views: list[torch.Tensor]) -> list[tuple]:
        """Per view: the encoded context, the target encoder's tokens (no gradient), both blocks' indices."""
        vit, teacher, out = m.backbone.net, m.target["backbone"].net, []
        for v in views:
            ctx_idx, tgt_idx = m.sampler(len(v), v.device)
            tokens = embed_patches(vit, v)
            ctx = encode(vit, tokens.gather(1, ctx_idx[..., None].expand(-1, -1, tokens.shape[2])))
            with torch.no_grad():
                h = teacher.forward_features(v)
            out.append((ctx, h, ctx_idx, tgt_idx))
        return out

    def probe_features(self, m, feats) -> torch.Tensor:
        """The target encoder's pooled features of the first (whole) view: the online probe's input."""
        return m.target["backbone"].net.forward_head(feats[0][1], pre_logits=True)

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        losses = []
        for ctx, h, ctx_idx, tgt_idx in feats:
            h = F.layer_norm(h, (h.shape[-1],))  # normalised over the features, as the authors
            b, n, k = tgt_idx.shape
            target = h.gather(1, tgt_idx.view(b, n * k, 1).expand(-1, -1, h.shape[2])).view(b * n, k, -1)
            pred = m.predictor(ctx, ctx_idx, tgt_idx).flatten(0, 1)
            losses.append(m.recipe.criterion(pred, target, **m.criterion_options))
        return sum(losses) / len(losses)

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)


RECIPES = [
    MethodRecipe(
        name="mae",
        kind=MaskedAutoencoder(),
        criterion=criteria.mae_loss,
        projector="",
        paper="He et al. 2022, arXiv 2111.06377 (mask ratio 0.75, decoder 512 wide x 8 blocks, "
        "normalised pixels); the authors' models_mae.py",
    ),
    MethodRecipe(
        name="ijepa",
        kind=JointEmbeddingPredictive(),
        criterion=criteria.ijepa_loss,
        projector="",
        paper="Assran et al. 2023, arXiv 2301.08243 (4 target blocks of scale 0.15-0.2, aspect 0.75-1.5; "
        "context scale 0.85-1; EMA 0.996 -> 1); the authors' src/masks/multiblock.py and src/train.py",
        ema_base=0.996,
    ),
]
