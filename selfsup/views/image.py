"""Batched image views: every sample of a batch gets its own random crop, flip, colour jitter, blur...

:class:`ImageViews` is one ``nn.Module`` that takes a float batch ``B x C x H x W`` with values in [0, 1]
and returns a fresh random view of the same shape, dtype and device. All random parameters are drawn
per sample and applied in a handful of vectorised tensor operations (no Python loop over samples):

- crop + flip + translation: one affine sampling grid per sample, applied by a single
  ``torch.nn.functional.grid_sample`` (crop box drawn like torchvision's ``RandomResizedCrop``:
  up to 10 tries of area fraction ``U(scale)`` and log-uniform aspect ratio, whole image as fallback);
- colour jitter (brightness, contrast, saturation, hue) with torchvision's semantics (blend with black,
  with the mean grey level, with the grey image; exact HSV hue rotation; clamp to [0, 1] after each step),
  applied with probability ``jitter_p`` per sample, in one random order per call (as kornia does);
- grayscale, Gaussian blur (per-sample sigma, separable grouped convolution, reflect padding),
  solarisation (``x -> 1 - x`` where ``x >= 0.5``) and additive Gaussian noise, each with its own
  per-sample probability.

``backend="kornia"`` builds the same recipe from ``kornia.augmentation`` instead (same per-sample
randomness, slower on CPU; kept as a reference implementation; speed: the views benchmark's results page).

Colour operations need RGB: for images with a channel count other than 3, saturation, hue and grayscale
are skipped; brightness and contrast, which are intensity operations, are kept.

Randomness comes from torch's global generator of the input's device, so ``torch.manual_seed(s)``
makes the views reproducible; the draws go through :mod:`selfsup.views.randomness`, so that processes
sharing a batch draw it as one process would (the kornia backend draws its own and cannot shard).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.views import randomness as R

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and PIL


def _pair(value, name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be a number or a pair (low, high), got {value!r}.") from err
    if lo > hi:
        raise ConfigError(f"{name} must be (low, high) with low <= high, got {value!r}.")
    return (lo, hi)


def _prob(value, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} is a probability and must lie in [0, 1], got {value}.")
    return value


def _jitter_ranges(jitter: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """torchvision ColorJitter convention: strength b -> factors [max(0, 1 - b), 1 + b], hue h -> [-h, h]"""
    if len(jitter) != 4:
        raise ConfigError(f"jitter must be (brightness, contrast, saturation, hue), got {jitter!r}.")
    b, c, s, h = (float(v) for v in jitter)
    if min(b, c, s, h) < 0 or h > 0.5:
        raise ConfigError(f"jitter strengths must be >= 0 and hue <= 0.5, got {jitter!r}.")
    return ((max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-h, h))


def default_blur_kernel(height: int, width: int) -> int:
    """Odd kernel size of about 10 % of the image side (SimCLR: 23 px on 224 px images), at least 3."""
    k = int(round(0.1 * min(height, width)))
    return max(3, k + 1 - k % 2)


def _uniform(b: int, lo: float, hi: float, device) -> torch.Tensor:
    return R.rand(b, device=device) * (hi - lo) + lo


def _bernoulli(b: int, p: float, device) -> torch.Tensor:
    return R.rand(b, device=device) < p


def sample_crop_boxes(
    b: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device,
    tries: int = 10,
) -> torch.Tensor:
    """Per-sample crop boxes ``(x0, y0, w, h)`` in pixels, drawn like torchvision's RandomResizedCrop.

    Area fraction ``U(scale)``, aspect ratio log-uniform in ``ratio``; the first of ``tries`` draws that fits
    in the image is kept, the whole image otherwise. The box is continuous (no rounding to pixels).
    """
    area = height * width
    target = area * (R.rand(b, tries, device=device) * (scale[1] - scale[0]) + scale[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(R.rand(b, tries, device=device) * (log_hi - log_lo) + log_lo)
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    ok = (w <= width) & (h <= height)
    first = torch.argmax(ok.to(torch.uint8), dim=1, keepdim=True)  # index of the first fitting try
    any_ok = ok.any(dim=1)
    w = torch.where(any_ok, w.gather(1, first).squeeze(1), torch.full_like(any_ok, width, dtype=w.dtype))
    h = torch.where(any_ok, h.gather(1, first).squeeze(1), torch.full_like(any_ok, height, dtype=h.dtype))
    x0 = R.rand(b, device=device) * (width - w)
    y0 = R.rand(b, device=device) * (height - h)
    return torch.stack([x0, y0, w, h], dim=1)


def _interp_matrix(src: torch.Tensor, size: int, padding_mode: str) -> torch.Tensor:
    """Linear-interpolation matrices: ``M[b, i, j]`` = weight of input pixel j in output pixel i, for source
    coordinates ``src`` (B x n, pixel units, pixel j centred at j). Pixels outside the image count as zero
    (``"zeros"``) or as the nearest edge pixel (``"border"``)."""
    if padding_mode == "border":
        src = src.clamp(0.0, size - 1.0)
    j = torch.arange(size, device=src.device, dtype=src.dtype)
    return (1.0 - (src.unsqueeze(-1) - j).abs()).clamp_(min=0.0)


def crop_flip_translate(
    x: torch.Tensor,
    boxes: torch.Tensor | None,
    flip: torch.Tensor | None,
    shift: torch.Tensor | None,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Resample each image from its crop box (resized to the full size), mirrored where ``flip``, moved by
    ``shift`` (B x 2, fractions of the image size; positive moves the content right/down).

    Crop, resize, flip and shift are separable, so each image is ``My @ x @ Mx^T`` with per-sample
    bilinear interpolation matrices: two batched matrix products for the whole batch. This matches
    ``grid_sample(..., mode="bilinear", align_corners=False)`` on the same affine grid, and is several
    times faster on CPU for small images.
    """
    b, _, height, width = x.shape
    dt = x.dtype
    if boxes is None:
        boxes = torch.tensor([0.0, 0.0, width, height], device=x.device, dtype=dt).expand(b, 4)
    x0, y0, w, h = boxes.to(dt).unbind(1)
    u = (torch.arange(width, device=x.device, dtype=dt) + 0.5) / width  # output pixel centres in (0, 1)
    v = (torch.arange(height, device=x.device, dtype=dt) + 0.5) / height
    ux = u.expand(b, width)
    if flip is not None:
        ux = torch.where(flip.view(-1, 1), 1.0 - ux, ux)
    src_x = x0.view(-1, 1) + ux * w.view(-1, 1) - 0.5
    src_y = y0.view(-1, 1) + v * h.view(-1, 1) - 0.5
    if shift is not None:
        shift = shift.to(dt)
        src_x = src_x - shift[:, :1] * width
        src_y = src_y - shift[:, 1:] * height
    mx = _interp_matrix(src_x, width, padding_mode)  # B x W x W
    my = _interp_matrix(src_y, height, padding_mode)  # B x H x H
    channels = x.shape[1]
    y = torch.bmm(x.reshape(b, channels * height, width), mx.transpose(1, 2)).view(b, channels, height, width)
    return torch.stack([torch.bmm(my, y[:, c]) for c in range(channels)], dim=1)  # loop over channels only


def _gray(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W -> B x 1 x H x W luma (one batched matrix product, much faster than three slices)."""
    b, _, height, width = x.shape
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 1, 3)
    return torch.matmul(w, x.reshape(b, 3, height * width)).view(b, 1, height, width)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * x + (1 - factor) * other`` clamped to [0, 1], factor per sample (torchvision's _blend)."""
    f = factor.view(-1, 1, 1, 1)
    return (x * f + other * (1 - f)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    lum = _gray(x) if x.shape[1] == 3 else x
    mean = lum.mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each RGB image by ``shift`` (in turns, per sample), keeping S and V exactly.

    Uses the closed form of HSV -> RGB: channel n in (r, g, b) = V - C * clamp(min(k, 4 - k), 0, 1) with
    k = (n' + 6 H) mod 6, n' = (5, 3, 1), C = max - min (chroma). Equal to torchvision's adjust_hue.
    """
    r, g, b = x.unbind(1)
    minc, maxc = torch.aminmax(x, dim=1)
    chroma = maxc - minc
    # hue in sextants (0..6): numerator chosen by the max channel, one division
    num = torch.where(
        maxc == r,
        g - b,
        torch.where(maxc == g, (b - r).add_(chroma, alpha=2.0), (r - g).add_(chroma, alpha=4.0)),
    )
    h6 = num.div_(torch.where(chroma > 0, chroma, torch.ones_like(chroma)))
    h6.add_(6.0 * shift.view(-1, 1, 1))
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(h6.unsqueeze(1) + n, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return ramp.mul_(chroma.unsqueeze(1)).neg_().add_(maxc.unsqueeze(1))


def gaussian_blur(
    x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor, kernel_size: int
) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample (identity where ``apply`` is False), reflect padding."""
    b, c, height, width = x.shape
    half = kernel_size // 2
    pos = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    sig = sigma.to(x.dtype).clamp_min(1e-3).view(-1, 1)
    kern = torch.exp(-(pos**2) / (2 * sig**2))
    kern = kern / kern.sum(dim=1, keepdim=True)
    delta = (pos == 0).to(x.dtype).expand_as(kern)
    kern = torch.where(apply.view(-1, 1), kern, delta)  # B x k
    kern = kern.repeat_interleave(c, dim=0)  # (B*C) x k, one kernel per channel of each image
    pad_h = min(half, height - 1)
    pad_w = min(half, width - 1)
    y = x.reshape(1, b * c, height, width)
    y = F.pad(y, (pad_w, pad_w, pad_h, pad_h), mode="reflect") if (pad_h or pad_w) else y
    kh = kern[:, half - pad_h : half + pad_h + 1]
    kw = kern[:, half - pad_w : half + pad_w + 1]
    kh = kh / kh.sum(dim=1, keepdim=True)
    kw = kw / kw.sum(dim=1, keepdim=True)
    y = F.conv2d(y, kh.view(b * c, 1, -1, 1), groups=b * c)
    y = F.conv2d(y, kw.view(b * c, 1, 1, -1), groups=b * c)
    return y.view(b, c, height, width)


#: Rows per chunk of the per-sample colour and blur operations on the CPU (32 images of 96 x 96 RGB in
#: float32 are 3.5 MB: the dozen elementwise passes of a hue rotation then run from the cache).
CPU_CHUNK = 32


def _on_rows(x: torch.Tensor, apply: torch.Tensor, fn) -> torch.Tensor:
    """``fn(rows, keep)`` on the samples where ``apply`` is True, the others unchanged. On the CPU only
    those rows are computed, :data:`CPU_CHUNK` at a time (every operation is per sample, so the values are
    the same), written into ``x`` in place (an intermediate of the recipe, never the caller's batch); on a
    GPU all rows are, then selected by ``torch.where`` (indexing by a mask would wait for the device)."""
    if x.device.type != "cpu":
        return torch.where(apply.view(-1, 1, 1, 1), fn(x, slice(None)), x)
    out = None
    for part in apply.nonzero().squeeze(1).split(CPU_CHUNK):  # a chunk's passes stay in the cache
        if len(part):
            rows = fn(x[part], part)
            if out is None:  # the dtype torch.where would give (autocast makes some results bfloat16)
                out = x.to(torch.promote_types(x.dtype, rows.dtype))  # x itself when it has that dtype
            out[part] = rows.to(out.dtype)
    return x if out is None else out


class ImageViews(nn.Module):
    """Random image views, per-sample random and batched. Values are expected in [0, 1].

    Args:
        sample_shape: ``(C, H, W)`` of one image; the input batch must be ``B x C x H x W``.
        crop_scale: area fraction range of the random resized crop; ``None`` disables cropping.
        crop_ratio: aspect-ratio range of the crop (log-uniform).
        flip_p: probability of a horizontal flip.
        translate: maximum shift, as a fraction of the image size, in x and y (uniform per sample).
        jitter: colour-jitter strengths ``(brightness, contrast, saturation, hue)`` (torchvision convention).
        jitter_p: probability of applying the colour jitter to a sample.
        grayscale_p: probability of converting a sample to grey (RGB only).
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's standard deviation, in pixels.
        blur_kernel: blur kernel size (odd); default about 10 % of the image side.
        solarize_p: probability of solarisation (``x -> 1 - x`` where ``x >= 0.5``).
        noise_std: standard deviation of additive Gaussian noise (0 disables it).
        padding_mode: value of pixels sampled outside the image: ``"border"`` (nearest edge) or ``"zeros"``.
        backend: ``"torch"`` (vectorised implementation, default) or ``"kornia"`` (kornia.augmentation).
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        crop_scale: tuple[float, float] | None = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        translate: float = 0.0,
        jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        jitter_p: float = 0.0,
        grayscale_p: float = 0.0,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel: int | None = None,
        solarize_p: float = 0.0,
        noise_std: float = 0.0,
        padding_mode: str = "border",
        backend: str = "torch",
    ) -> None:
        super().__init__()
        sample_shape = tuple(int(s) for s in sample_shape)
        if len(sample_shape) != 3 or min(sample_shape) < 1:
            raise ShapeError(
                f"image views need a sample shape (C, H, W), got {sample_shape}; "
                "use the 'signal' recipe for 1-D signals (C, L)."
            )
        self.sample_shape = sample_shape
        channels, height, width = sample_shape
        self.crop_scale = None if crop_scale is None else _pair(crop_scale, "crop_scale")
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale!r}.")
        self.crop_ratio = _pair(crop_ratio, "crop_ratio")
        if self.crop_ratio[0] <= 0:
            raise ConfigError(f"crop_ratio must be positive, got {crop_ratio!r}.")
        self.flip_p = _prob(flip_p, "flip_p")
        self.translate = float(translate)
        if not 0 <= self.translate < 1:
            raise ConfigError(f"translate is a fraction of the image size in [0, 1), got {translate}.")
        ranges = _jitter_ranges(jitter)
        rgb = channels == 3
        if not rgb:  # saturation and hue need colour
            ranges = (ranges[0], ranges[1], (1.0, 1.0), (0.0, 0.0))
        self.jitter = tuple(float(v) for v in jitter)
        self.jitter_ranges = ranges
        self.jitter_p = _prob(jitter_p, "jitter_p")
        self.grayscale_p = _prob(grayscale_p, "grayscale_p") if rgb else 0.0
        self.blur_p = _prob(blur_p, "blur_p")
        self.blur_sigma = _pair(blur_sigma, "blur_sigma")
        self.blur_kernel = int(blur_kernel) if blur_kernel is not None else default_blur_kernel(height, width)
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ConfigError(f"blur_kernel must be a positive odd integer, got {blur_kernel}.")
        self.solarize_p = _prob(solarize_p, "solarize_p")
        self.noise_std = float(noise_std)
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {noise_std}.")
        if padding_mode not in ("border", "zeros"):
            raise ConfigError(f"padding_mode must be 'border' or 'zeros', got {padding_mode!r}.")
        self.padding_mode = padding_mode
        if backend not in ("torch", "kornia"):
            raise ConfigError(f"backend must be 'torch' or 'kornia', got {backend!r}.")
        self.backend = backend
        self._kornia = self._build_kornia() if backend == "kornia" else None

    # ------------------------------------------------------------------ kornia reference backend
    def _build_kornia(self) -> nn.Module:
        import kornia.augmentation as K

        _, height, width = self.sample_shape
        ops: list[nn.Module] = []
        if self.crop_scale is not None:
            ops.append(K.RandomResizedCrop((height, width), scale=self.crop_scale, ratio=self.crop_ratio))
        if self.translate > 0:
            ops.append(K.RandomAffine(degrees=0.0, translate=(self.translate, self.translate), p=1.0))
        if self.flip_p > 0:
            ops.append(K.RandomHorizontalFlip(p=self.flip_p))
        if self.jitter_p > 0 and any(self.jitter):
            b, c, s, h = self.jitter
            if self.sample_shape[0] != 3:
                s, h = 0.0, 0.0
            ops.append(K.ColorJitter(b, c, s, h, p=self.jitter_p))
        if self.grayscale_p > 0:
            ops.append(K.RandomGrayscale(p=self.grayscale_p))
        if self.blur_p > 0:
            ops.append(K.RandomGaussianBlur(self.blur_kernel, self.blur_sigma, p=self.blur_p))
        if self.solarize_p > 0:
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=self.solarize_p))
        if self.noise_std > 0:
            ops.append(K.RandomGaussianNoise(std=self.noise_std, p=1.0))
        return K.AugmentationSequential(*ops) if ops else nn.Identity()

    # ------------------------------------------------------------------ forward
    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.sample_shape:
            raise ShapeError(
                f"image views built for samples of shape {self.sample_shape} got a batch of shape "
                f"{tuple(x.shape)}; expected (B, {', '.join(map(str, self.sample_shape))})."
            )
        if not x.is_floating_point():
            raise SelfsupError(
                f"image views need a floating-point batch with values in [0, 1], got {x.dtype}; "
                "convert uint8 images with x.float() / 255."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if x.shape[0] == 0:
            return x.clone()
        if self._kornia is not None:
            if R.sharded():
                raise ConfigError(
                    "the kornia backend draws its own random numbers and cannot share a batch between "
                    "processes exactly; use backend='torch' with several processes"
                )
            return self._kornia(x).to(x.dtype)
        with torch.no_grad():
            return self._forward_torch(x).to(x.dtype)

    def _forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        b, channels, height, width = x.shape
        dev = x.device
        boxes = (
            sample_crop_boxes(b, height, width, self.crop_scale, self.crop_ratio, dev)
            if self.crop_scale is not None
            else None
        )
        flip = _bernoulli(b, self.flip_p, dev) if self.flip_p > 0 else None
        shift = (R.rand(b, 2, device=dev) * 2 - 1) * self.translate if self.translate > 0 else None
        if boxes is not None or flip is not None or shift is not None:
            x = crop_flip_translate(x, boxes, flip, shift, self.padding_mode)
        else:
            x = x.clone()

        if self.jitter_p > 0:
            x = self._jitter(x)
        if self.grayscale_p > 0:
            gray = _bernoulli(b, self.grayscale_p, dev)
            x = _on_rows(x, gray, lambda rows, keep: _gray(rows).expand_as(rows))
        if self.blur_p > 0:
            sigma = _uniform(b, *self.blur_sigma, dev)
            blur = _bernoulli(b, self.blur_p, dev)
            x = _on_rows(
                x, blur, lambda rows, keep: gaussian_blur(rows, sigma[keep], blur[keep], self.blur_kernel)
            )
        if self.solarize_p > 0:
            sol = _bernoulli(b, self.solarize_p, dev).view(-1, 1, 1, 1)
            x = torch.where(sol & (x >= 0.5), 1.0 - x, x)
        if self.noise_std > 0:
            x = x + self.noise_std * R.randn_like(x)
        return x

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        dev = x.device
        apply = _bernoulli(b, self.jitter_p, dev)
        neutral = (1.0, 1.0, 1.0, 0.0)
        factors = []
        for (lo, hi), one in zip(self.jitter_ranges, neutral, strict=True):
            f = _uniform(b, lo, hi, dev)
            factors.append(torch.where(apply, f, torch.full_like(f, one)) if lo != hi else None)
        order = torch.randperm(4).tolist()  # one random order per call, from the CPU generator
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)

        def jitter(rows: torch.Tensor, keep) -> torch.Tensor:
            for i in order:
                if factors[i] is not None:
                    rows = ops[i](rows, factors[i][keep])
            return rows

        # Samples drawn not to be jittered keep their exact values (the hue round trip is not bit-exact).
        return _on_rows(x, apply, jitter)

    def extra_repr(self) -> str:
        return (
            f"sample_shape={self.sample_shape}, crop_scale={self.crop_scale}, flip_p={self.flip_p}, "
            f"translate={self.translate}, jitter={self.jitter}, jitter_p={self.jitter_p}, "
            f"grayscale_p={self.grayscale_p}, blur_p={self.blur_p}, blur_kernel={self.blur_kernel}, "
            f"solarize_p={self.solarize_p}, noise_std={self.noise_std}, backend={self.backend!r}"
        )
