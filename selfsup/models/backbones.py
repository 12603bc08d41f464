"""Backbones (encoders) with named layers, and their registry.

Every backbone is a :class:`Backbone`: an ordered chain of named stages. ``forward(x)`` returns the final
representation ``B x out_dim``; ``forward_layers(x, layers)`` returns the output of each requested stage as a
``B x D`` matrix, for layer-wise quality metrics and probes. Spatial feature maps (``B x C x L`` or
``B x C x H x W``) are **global-average-pooled** over their spatial dimensions, so an intermediate conv
layer's feature is ``B x channels``; ``layer_dims[name]`` gives each ``D`` without running the model.

Registry (``build_backbone(name, sample_shape, **kwargs)``; ``sample_shape`` is one sample's shape without
the batch dimension):

- ``conv1d``  1-D ResNet for signals ``(C, L)``, e.g. MNIST-1D ``(1, 40)``.
- ``convnet`` small 2-D ResNet for tiny images ``(C, H, W)``, e.g. digits ``(1, 8, 8)`` or ``(3, 32, 32)``.
- ``resnet18`` / ``resnet50`` torchvision ResNets without ``fc``, optional CIFAR stem.
- ``mlp``     flatten then ``Linear-BN-ReLU`` layers, any sample shape.

Other backbones come from the ``selfsup.backbones`` entry points (:mod:`selfsup.plugins`), e.g. ``pde2d``
(:class:`selfsup.pde.encoder.PDE2dResNet`, a :class:`SmallResNet` over PDE fields).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from selfsup.errors import ConfigError, ShapeError, did_you_mean, unknown_name
from selfsup.models.heads import parse_spec


def _as_shape(sample_shape: Sequence[int] | torch.Size, name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in sample_shape)
    except (TypeError, ValueError):
        raise ShapeError(
            f"backbone '{name}': sample_shape must be a tuple of ints (one sample, no batch dimension), "
            f"got {sample_shape!r}."
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise ShapeError(
            f"backbone '{name}': sample_shape must be non-empty with positive sizes, got {shape}."
        )
    return shape


def positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
    return value


def _blocks_per_stage(blocks: int | Sequence[int], n_stages: int, name: str) -> list[int]:
    if isinstance(blocks, int) and not isinstance(blocks, bool):
        blocks = [blocks] * n_stages
    blocks = list(blocks)
    if len(blocks) != n_stages or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks):
        raise ConfigError(
            f"backbone '{name}': blocks must be a positive int or {n_stages} positive ints (one per stage), "
            f"got {blocks!r}."
        )
    return blocks


class Backbone(nn.Module):
    """An encoder made of named stages run in order.

    Attributes:
        out_dim: width of the final representation (``forward`` returns ``B x out_dim``).
        layer_names: stage names in order; the last one is the final representation (e.g. ``"pool"``).
        layer_dims: ``{name: D}`` the width of each layer's flattened feature (see ``forward_layers``).
        sample_shape: the shape of one input sample (no batch dimension) the backbone was built for.
        stages: ``nn.ModuleDict`` of the stages, keyed by layer name.
    """

    out_dim: int
    layer_names: list[str]
    layer_dims: dict[str, int]
    sample_shape: tuple[int, ...]

    def __init__(
        self,
        stages: dict[str, nn.Module],
        layer_dims: dict[str, int],
        sample_shape: tuple[int, ...],
        *,
        exact_shape: bool = False,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleDict(stages)
        self.layer_names = list(stages)
        self.layer_dims = {name: int(layer_dims[name]) for name in self.layer_names}
        self.out_dim = self.layer_dims[self.layer_names[-1]]
        self.sample_shape = tuple(sample_shape)
        # exact_shape: every input must have exactly sample_shape (flattening models). Otherwise only the
        # number of dimensions and the channel count must match (conv nets accept other spatial sizes).
        self._exact_shape = exact_shape

    def extra_repr(self) -> str:
        return f"sample_shape={self.sample_shape}, out_dim={self.out_dim}"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ShapeError` when ``x`` is not a batch of samples of ``sample_shape``."""
        expected = "B x " + " x ".join(str(s) for s in self.sample_shape)
        name = type(self).__name__
        if x.dim() != len(self.sample_shape) + 1:
            raise ShapeError(
                f"{name} expects a batch shaped {expected} ({len(self.sample_shape) + 1} dims), "
                f"got {tuple(x.shape)}. Add or remove the channel/batch dimension to match."
            )
        if self._exact_shape:
            if tuple(x.shape[1:]) != self.sample_shape:
                raise ShapeError(
                    f"{name} was built for samples of shape {self.sample_shape} and needs a batch "
                    f"{expected}, "
                    f"got {tuple(x.shape)}. Rebuild the backbone with sample_shape={tuple(x.shape[1:])}."
                )
        elif len(self.sample_shape) > 1 and x.shape[1] != self.sample_shape[0]:
            raise ShapeError(
                f"{name} was built for {self.sample_shape[0]} input channel(s) (batch {expected}), "
                f"got {x.shape[1]} in a batch of shape {tuple(x.shape)}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final representation, ``B x out_dim``."""
        self.check_input(x)
        for stage in self.stages.values():
            x = stage(x)
        return x

    def resolve_layers(self, layers: str | Sequence[str] | None) -> list[str]:
        """Validate layer names (``None`` = all). Unknown names raise :class:`ConfigError` (did-you-mean)."""
        if layers is None:
            return list(self.layer_names)
        if isinstance(layers, str):
            layers = [layers]
        out: list[str] = []
        for layer in layers:
            if layer not in self.stages:
                raise unknown_name("layer", str(layer), self.layer_names)
            if layer not in out:
                out.append(layer)
        return out

    def forward_layers(
        self, x: torch.Tensor, layers: str | Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Return ``{name: B x layer_dims[name]}`` for each requested layer (``None``: all), in network order.

        Spatial feature maps are global-average-pooled over all spatial dims (``B x C``); 2-D outputs are
        returned as is. Stages after the deepest requested layer are not run. The last layer's output
        equals ``forward(x)``. For evaluation call it under ``model.eval()`` and ``torch.no_grad()`` (in train
        mode BatchNorm uses and updates batch statistics, as in ``forward``).
        """
        wanted = self.resolve_layers(layers)
        if not wanted:
            return {}
        self.check_input(x)
        last = max(self.layer_names.index(name) for name in wanted)
        feats: dict[str, torch.Tensor] = {}
        for i, (name, stage) in enumerate(self.stages.items()):
            if i > last:
                break
            x = stage(x)
            if name in wanted:
                feats[name] = x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x
        return feats


# ----------------------------------------------------------------------------------------------- blocks


#: Longest input (samples) for which :class:`Conv1d` takes its matrix-product backward (see its docstring).
MATMUL_BACKWARD_MAX_LENGTH = 32


class _Conv1dMatmulBackward(torch.autograd.Function):
    """conv1d (no bias, groups 1, dilation 1, zero padding) whose backward is two matrix products:
    grad_input = conv_transpose1d(grad_out, W), grad_weight = grad_out (O x B*L') @ im2col(x) (B*L' x C*k)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return torch.nn.functional.conv1d(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        (b, c, length), (o, _, k), out_len = x.shape, weight.shape, grad.shape[2]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            extra = length - ((out_len - 1) * s - 2 * p + k)  # input positions no output window reached
            grad_x = torch.nn.functional.conv_transpose1d(grad, weight, None, s, p, extra)
        if ctx.needs_input_grad[1]:
            cols = torch.nn.functional.pad(x, (p, p)).unfold(2, k, s)  # B x C x L' x k
            cols = cols.permute(0, 2, 1, 3).reshape(b * out_len, c * k)
            grad_w = (grad.permute(1, 0, 2).reshape(o, b * out_len) @ cols).view(o, c, k)
        return grad_x, grad_w, None, None


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` with a faster backward under CPU bfloat16 autocast (``train.amp`` on AMX CPUs).

    On short signals oneDNN's bfloat16 convolution backward is slower than its forward pass plus two
    bfloat16 matrix products; :class:`_Conv1dMatmulBackward` computes the same gradients that way
    (checked with ``gradcheck`` in float64 and against nn.Conv1d's bfloat16 path). It pays on short
    signals only, hence :data:`MATMUL_BACKWARD_MAX_LENGTH` (speed: the step benchmark's results page).
    Everything else (float32,
    float64, CUDA, bias, groups, dilation, other padding modes, longer signals) is ``nn.Conv1d`` itself; the
    state dict is the same.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        plain = (
            bias is not None
            or self.groups != 1
            or self.dilation != (1,)
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
            or x.shape[-1] > MATMUL_BACKWARD_MAX_LENGTH
            or torch.float64 in (x.dtype, weight.dtype)  # autocast leaves float64 alone
        )
        if plain or x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
            return super()._conv_forward(x, weight, bias)
        dtype = torch.get_autocast_dtype("cpu")
        with torch.autocast("cpu", enabled=False):
            return _Conv1dMatmulBackward.apply(x.to(dtype), weight.to(dtype), self.stride[0], self.padding[0])


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): conv3-BN-ReLU-conv3-BN + shortcut, then ReLU.

    ``dims`` picks 1-D (signals) or 2-D (images) layers; ``conv3(in_ch, out_ch, stride)`` may replace the
    3-wide convolution (the PDE encoder passes a circular-in-x one). The shortcut is a strided 1x1 conv + BN
    when the shape changes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dims: int = 2, conv3=None) -> None:
        super().__init__()
        conv, norm = (Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        if conv3 is None:

            def conv3(i: int, o: int, s: int) -> nn.Module:
                return conv(i, o, 3, stride=s, padding=1, bias=False)

        self.conv1 = conv3(in_ch, out_ch, stride)
        self.bn1 = norm(out_ch)
        self.conv2 = conv3(out_ch, out_ch, 1)
        self.bn2 = norm(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(conv(in_ch, out_ch, 1, stride=stride, bias=False), norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class BasicBlock1d(BasicBlock):
    """:class:`BasicBlock` for 1-D signals ``B x C x L``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, stride, dims=1)


class BasicBlock2d(BasicBlock):
    """:class:`BasicBlock` for images ``B x C x H x W``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, stride, dims=2)


def _stage(block: type[nn.Module], in_ch: int, out_ch: int, n_blocks: int, stride: int) -> nn.Sequential:
    blocks = [block(in_ch, out_ch, stride)]
    blocks += [block(out_ch, out_ch, 1) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


def _check_ndim(shape: tuple[int, ...], ndim: int, name: str, layout: str, example: str) -> None:
    if len(shape) != ndim:
        raise ShapeError(
            f"backbone '{name}' takes samples shaped {layout} ({ndim} dims, no batch dimension), "
            f"got sample_shape={shape}. Example: {example}."
            + (" For images use 'convnet' or 'resnet18'." if name == "conv1d" and len(shape) == 3 else "")
            + (" For 1-D signals use 'conv1d'." if name != "conv1d" and len(shape) == 2 else "")
            + (" For flat vectors use 'mlp'." if len(shape) == 1 else "")
        )


# ------------------------------------------------------------------------------------------- backbones


class SmallResNet(Backbone):
    """The shape shared by the small ResNets (``conv1d``, ``convnet``, ``pde2d``): a ``stem`` of ``width``
    channels, ``layer1`` (``width``), ``layer2`` (``2*width``, stride 2), ``layer3`` (``4*width``, stride 2),
    each of ``blocks`` residual blocks, then a ``head`` ``(name, module, dim)`` (default: ``"pool"``, global
    average pooling to ``4*width``). ``block(in_ch, out_ch, stride)`` builds one residual block.
    He init for convolutions, BatchNorm weight 1 / bias 0 (the torchvision ResNet scheme).
    """

    def __init__(
        self,
        name: str,
        sample_shape: tuple[int, ...],
        stem: nn.Module,
        width: int,
        blocks: int | Sequence[int],
        block: Callable[[int, int, int], nn.Module],
        head: tuple[str, nn.Module, int] | None = None,
    ) -> None:
        n_blocks = _blocks_per_stage(blocks, 3, name)
        w = [width, 2 * width, 4 * width]
        stages: dict[str, nn.Module] = {
            "stem": stem,
            "layer1": _stage(block, width, w[0], n_blocks[0], 1),
            "layer2": _stage(block, w[0], w[1], n_blocks[1], 2),
            "layer3": _stage(block, w[1], w[2], n_blocks[2], 2),
        }
        dims = {"stem": width, "layer1": w[0], "layer2": w[1], "layer3": w[2]}
        if head is None:
            pool = nn.AdaptiveAvgPool1d(1) if len(sample_shape) == 2 else nn.AdaptiveAvgPool2d(1)
            head = ("pool", nn.Sequential(pool, nn.Flatten(1)), w[2])
        stages[head[0]], dims[head[0]] = head[1], head[2]
        super().__init__(stages, dims, sample_shape, exact_shape=head[0] == "flatten")
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class Conv1dResNet(SmallResNet):
    """Small 1-D ResNet for signals ``B x C x L`` (:class:`SmallResNet` with 1-D blocks).

    ``stem``: conv k=``stem_kernel``, stride 1, BN, ReLU. The final layer:

    - ``pool="avg"``: ``"pool"`` global average pooling, ``out_dim = 4*width`` (translation invariant,
      accepts any length).
    - ``pool="flatten"``: ``"flatten"`` the ``4*width x ceil(L/4)`` map, ``out_dim = 4*width*ceil(L/4)``
      (keeps position; needs inputs of exactly ``sample_shape``).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        width: int = 64,
        blocks: int | Sequence[int] = 1,
        stem_kernel: int = 5,
        pool: str = "avg",
    ) -> None:
        _check_ndim(sample_shape, 2, "conv1d", "(channels, length)", "(1, 40) for MNIST-1D")
        width = positive_int(width, "conv1d width")
        stem_kernel = positive_int(stem_kernel, "conv1d stem_kernel")
        if stem_kernel % 2 == 0:
            raise ConfigError(f"conv1d stem_kernel must be odd (keeps the length), got {stem_kernel}.")
        if pool not in ("avg", "flatten"):
            raise ConfigError(
                f"conv1d pool must be 'avg' or 'flatten', got {pool!r}."
                f"{did_you_mean(str(pool), ['avg', 'flatten'])}"
            )
        channels, length = sample_shape
        stem = nn.Sequential(
            Conv1d(channels, width, stem_kernel, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        )
        head = None
        if pool == "flatten":
            final_length = math.ceil(math.ceil(length / 2) / 2)  # two stride-2, k=3, pad=1 convs
            head = ("flatten", nn.Flatten(1), 4 * width * final_length)
        super().__init__("conv1d", sample_shape, stem, width, blocks, BasicBlock1d, head)


class ConvNet(SmallResNet):
    """Small 2-D ResNet for tiny images ``B x C x H x W`` (8x8 digits, 32x32 CIFAR-like).

    :class:`SmallResNet` with a 3x3 stride-1 conv + BN + ReLU ``stem``; ``out_dim = 4*width``.
    Default ``width=32`` (128-dim output) keeps 32x32 inputs affordable on a CPU.
    """

    def __init__(
        self, sample_shape: tuple[int, ...], width: int = 32, blocks: int | Sequence[int] = 1
    ) -> None:
        _check_ndim(sample_shape, 3, "convnet", "(channels, height, width)", "(1, 8, 8) or (3, 32, 32)")
        width = positive_int(width, "convnet width")
        stem = nn.Sequential(
            nn.Conv2d(sample_shape[0], width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        super().__init__("convnet", sample_shape, stem, width, blocks, BasicBlock2d)


class TorchvisionResNet(Backbone):
    """torchvision ResNet-18/50 without its ``fc`` layer, layers ``stem, layer1..layer4, pool``.

    ``small_input=True`` replaces the 7x7 stride-2 conv + max-pool stem by a 3x3 stride-1 conv and no
    max-pool (the CIFAR stem). ``small_input=None`` (default) picks it for images of side <= 64.
    The first conv takes ``sample_shape[0]`` channels. Weights are randomly initialised (torchvision init).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        arch: str = "resnet18",
        small_input: bool | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        from torchvision import models as tvm

        _check_ndim(sample_shape, 3, arch, "(channels, height, width)", "(3, 32, 32)")
        if arch not in ("resnet18", "resnet50"):
            raise unknown_name("torchvision architecture", arch, ["resnet18", "resnet50"])
        if small_input is None:
            small_input = max(sample_shape[1:]) <= 64
        net = getattr(tvm, arch)(weights=None, zero_init_residual=zero_init_residual)
        in_ch = sample_shape[0]
        if small_input:
            conv1 = nn.Conv2d(in_ch, 64, kernel_size=3, stride=1, padding=1, bias=False)
            maxpool: nn.Module = nn.Identity()
        else:
            conv1 = net.conv1
            if in_ch != 3:
                conv1 = nn.Conv2d(in_ch, 64, kernel_size=7, stride=2, padding=3, bias=False)
            maxpool = net.maxpool
        if conv1 is not net.conv1:
            nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        expansion = 4 if arch == "resnet50" else 1
        stages: dict[str, nn.Module] = {
            "stem": nn.Sequential(conv1, net.bn1, net.relu, maxpool),
            "layer1": net.layer1,
            "layer2": net.layer2,
            "layer3": net.layer3,
            "layer4": net.layer4,
            "pool": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)),
        }
        dims = {
            "stem": 64,
            "layer1": 64 * expansion,
            "layer2": 128 * expansion,
            "layer3": 256 * expansion,
            "layer4": 512 * expansion,
            "pool": 512 * expansion,
        }
        super().__init__(stages, dims, sample_shape)
        self.arch = arch
        self.small_input = bool(small_input)


class MLPBackbone(Backbone):
    """Flatten the input, then ``Linear-BN-ReLU`` per width of ``hidden`` (layers ``fc1, fc2, ...``).

    ``out_dim`` is the last width. Inputs must have exactly ``sample_shape``. ``batch_norm=False`` drops the
    BatchNorm (a model whose output for a sample does not depend on the rest of its batch).
    """

    def __init__(
        self, sample_shape: tuple[int, ...], hidden: str | int = "512-512", batch_norm: bool = True
    ) -> None:
        widths = parse_spec(hidden)
        if not widths:
            raise ConfigError("mlp backbone needs at least one hidden layer, e.g. hidden='512-512'.")
        in_dim = math.prod(sample_shape)
        stages: dict[str, nn.Module] = {}
        dims: dict[str, int] = {}
        for i, w in enumerate(widths, start=1):
            layers: list[nn.Module] = [nn.Flatten(1)] if i == 1 else []
            layers += [
                nn.Linear(in_dim, w),
                *([nn.BatchNorm1d(w)] if batch_norm else []),
                nn.ReLU(inplace=True),
            ]
            stages[f"fc{i}"] = nn.Sequential(*layers)
            dims[f"fc{i}"] = w
            in_dim = w
        super().__init__(stages, dims, sample_shape, exact_shape=True)


# -------------------------------------------------------------------------------------------- registry


def _resnet18(
    sample_shape: tuple[int, ...], small_input: bool | None = None, zero_init_residual: bool = False
):
    return TorchvisionResNet(sample_shape, "resnet18", small_input, zero_init_residual)


def _resnet50(
    sample_shape: tuple[int, ...], small_input: bool | None = None, zero_init_residual: bool = False
):
    return TorchvisionResNet(sample_shape, "resnet50", small_input, zero_init_residual)
