"""Batched views of 1-D signals (``B x C x L``), every sample with its own random parameters.

One forward pass, fully vectorised over the batch (no Python loop over samples):

1. **resampling** — a single linear interpolation per sample combines
   a circular shift (up to ``max_shift`` of the length, both directions),
   a crop-and-resize (a window of ``U(crop_scale)`` of the length, stretched back to ``L``) and
   a smooth random monotone time warp (``warp_knots`` log-normal speeds of spread ``warp_strength``,
   interpolated, integrated and normalised, so the warp maps [0, 1] onto [0, 1] and never folds);
2. **amplitude** scaling by ``U(amplitude)``;
3. a random linear **trend** ``c * (t - 1/2)``, ``c ~ U(-max_trend, max_trend)`` (MNIST-1D's "shear");
4. additive white Gaussian **noise** (``noise_std``) and **correlated noise**: white noise low-pass
   filtered by a Gaussian of ``corr_noise_sigma`` samples (circular), scaled to ``corr_noise_std``;
5. **masking** of one random segment (length up to ``max_mask`` of ``L``) with probability ``mask_p``,
   set to ``mask_value``.

The same resampling is applied to every channel of a sample; noise is drawn per channel. Set a
magnitude to 0 (or ``mask_p`` to 0) to switch a step off. Defaults suit MNIST-1D (``L = 40``, values
roughly in [-3, 3]); MNIST-1D itself is generated with circular translations, a random scale of
``1 +- 0.2``, correlated noise (Gaussian filter of sigma 2) and a linear shear, which these views mimic.

Randomness comes from torch's global generator of the input's device (``torch.manual_seed`` makes the
views reproducible), drawn through :mod:`selfsup.views.randomness` (exact across processes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.views import randomness as R


def _range(value, name: str, low: float = -math.inf) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be a pair (low, high), got {value!r}.") from err
    if not low <= lo <= hi:
        raise ConfigError(f"{name} must be (low, high) with {low} <= low <= high, got {value!r}.")
    return (lo, hi)


def _nonneg(value, name: str) -> float:
    value = float(value)
    if not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value}.")
    return value


def random_time_warp(b: int, length: int, strength: float, knots: int, device, dtype) -> torch.Tensor:
    """Per-sample monotone maps of [0, 1] onto itself, sampled at ``length`` points (B x L).

    Speeds ``exp(strength * N(0, 1))`` at ``knots`` points, linearly interpolated to the ``length - 1``
    intervals, integrated (cumulative sum) and normalised: strictly increasing, 0 at the start, 1 at the end.
    """
    grid = torch.linspace(0.0, 1.0, length, device=device, dtype=dtype).expand(b, length)
    if strength <= 0 or length < 3:
        return grid
    speeds = torch.exp(strength * R.randn(b, 1, max(2, knots), device=device, dtype=dtype))
    speeds = F.interpolate(speeds, size=length - 1, mode="linear", align_corners=True).squeeze(1)
    cum = torch.cumsum(speeds, dim=1)
    cum = torch.cat([torch.zeros(b, 1, device=device, dtype=dtype), cum], dim=1)
    return cum / cum[:, -1:]


def resample_linear(x: torch.Tensor, src: torch.Tensor, circular: bool = True) -> torch.Tensor:
    """Sample ``x`` (B x C x L) at fractional positions ``src`` (B x L', in samples) by linear interpolation.

    ``circular``: positions wrap around (periodic signal); otherwise they are clamped to [0, L - 1].
    """
    length = x.shape[-1]
    if not circular:
        src = src.clamp(0.0, length - 1.0)
    lo = torch.floor(src)
    frac = (src - lo).unsqueeze(1)
    lo = lo.long()
    hi = lo + 1
    if circular:
        lo = torch.remainder(lo, length)
        hi = torch.remainder(hi, length)
    else:
        hi = hi.clamp_max(length - 1)
    c = x.shape[1]
    x_lo = x.gather(2, lo.unsqueeze(1).expand(-1, c, -1))
    x_hi = x.gather(2, hi.unsqueeze(1).expand(-1, c, -1))
    return x_lo + frac * (x_hi - x_lo)


def gaussian_kernel1d(sigma: float, device, dtype) -> torch.Tensor:
    """Gaussian filter taps (radius 3 sigma) of unit energy, so that filtered white noise keeps its std."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / torch.sqrt((k**2).sum())


class SignalViews(nn.Module):
    """Random views of 1-D signals ``B x C x L`` (see the module docstring for the steps).

    Defaults follow MNIST-1D's own generator (Greydanus 2020, ``get_dataset_args``): its digits are rolled
    circularly (``max_shift=0.5`` covers every roll), stretched by up to 40 % (``crop_scale=(0.6, 1)``),
    sheared (``max_trend=0.75``) and given correlated noise (``corr_noise_std=0.25``); in the main job's
    tuning these strengths gave a better kNN accuracy than milder ones.

    Args:
        max_shift: maximum circular shift, as a fraction of the length (uniform in ``+-max_shift``).
        crop_scale: range of the crop-and-resize window, as a fraction of the length (``(1, 1)``: no crop).
        warp_strength: log-normal spread of the local speed of the time warp (0: no warp).
        warp_knots: number of random speeds along the signal (smoothness of the warp).
        amplitude: range of the random amplitude factor.
        max_trend: maximum slope of the added linear trend, in signal units over the whole length.
        noise_std: standard deviation of the additive white Gaussian noise.
        corr_noise_std: standard deviation of the additive low-pass (correlated) Gaussian noise.
        corr_noise_sigma: width, in samples, of the Gaussian filter that correlates that noise.
        mask_p: probability of masking one segment of a sample.
        max_mask: maximum length of the masked segment, as a fraction of the length (at least one sample).
        mask_value: value written into the masked segment.
        circular: treat signals as periodic when shifting (otherwise shifts clamp at the edges).
    """

    def __init__(
        self,
        *,
        max_shift: float = 0.5,
        crop_scale: Sequence[float] = (0.6, 1.0),
        warp_strength: float = 0.2,
        warp_knots: int = 4,
        amplitude: Sequence[float] = (0.8, 1.2),
        max_trend: float = 0.75,
        noise_std: float = 0.05,
        corr_noise_std: float = 0.25,
        corr_noise_sigma: float = 2.0,
        mask_p: float = 0.5,
        max_mask: float = 0.1,
        mask_value: float = 0.0,
        circular: bool = True,
    ) -> None:
        super().__init__()
        self.max_shift = _nonneg(max_shift, "max_shift")
        if self.max_shift > 0.5:
            raise ConfigError(f"max_shift is a fraction of the length and must be <= 0.5, got {max_shift}.")
        self.crop_scale = _range(crop_scale, "crop_scale", low=1e-3)
        if self.crop_scale[1] > 1:
            raise ConfigError(f"crop_scale must lie in (0, 1], got {crop_scale!r}.")
        self.warp_strength = _nonneg(warp_strength, "warp_strength")
        self.warp_knots = int(warp_knots)
        if self.warp_knots < 2:
            raise ConfigError(f"warp_knots must be >= 2, got {warp_knots}.")
        self.amplitude = _range(amplitude, "amplitude")
        self.max_trend = _nonneg(max_trend, "max_trend")
        self.noise_std = _nonneg(noise_std, "noise_std")
        self.corr_noise_std = _nonneg(corr_noise_std, "corr_noise_std")
        self.corr_noise_sigma = float(corr_noise_sigma)
        if not self.corr_noise_sigma > 0:
            raise ConfigError(f"corr_noise_sigma must be > 0, got {corr_noise_sigma}.")
        self.mask_p = float(mask_p)
        if not 0 <= self.mask_p <= 1:
            raise ConfigError(f"mask_p is a probability and must lie in [0, 1], got {mask_p}.")
        self.max_mask = _nonneg(max_mask, "max_mask")
        if self.max_mask > 1:
            raise ConfigError(f"max_mask is a fraction of the length and must be <= 1, got {max_mask}.")
        self.mask_value = float(mask_value)
        self.circular = bool(circular)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ShapeError(
                f"signal views need a batch of shape (B, C, L), got {tuple(x.shape)}; "
                "add a channel axis with x.unsqueeze(1) for single-channel signals."
            )
        if not x.is_floating_point():
            raise SelfsupError(f"signal views need a floating-point batch, got {x.dtype}.")
        b, c, length = x.shape
        if b == 0 or length == 0:
            return x.clone()
        with torch.no_grad():
            return self._forward(x, b, c, length).to(x.dtype)

    def _forward(self, x: torch.Tensor, b: int, c: int, length: int) -> torch.Tensor:
        dev, dt = x.device, x.dtype
        # 1. resampling: warp -> crop window -> circular shift, all folded into one set of source positions
        resample = self.warp_strength > 0 or self.crop_scale != (1.0, 1.0) or self.max_shift > 0
        if resample:
            pos = random_time_warp(b, length, self.warp_strength, self.warp_knots, dev, dt)  # B x L in [0, 1]
            lo, hi = self.crop_scale
            scale = R.rand(b, 1, device=dev, dtype=dt) * (hi - lo) + lo
            start = R.rand(b, 1, device=dev, dtype=dt) * (1 - scale)
            src = (start + scale * pos) * (length - 1)
            if self.max_shift > 0:
                src = src + (R.rand(b, 1, device=dev, dtype=dt) * 2 - 1) * (self.max_shift * length)
            out = resample_linear(x, src, circular=self.circular)
        else:
            out = x.clone()
        # 2. amplitude
        lo, hi = self.amplitude
        if (lo, hi) != (1.0, 1.0):
            out = out * (R.rand(b, 1, 1, device=dev, dtype=dt) * (hi - lo) + lo)
        # 3. linear trend
        if self.max_trend > 0:
            t = torch.linspace(-0.5, 0.5, length, device=dev, dtype=dt)
            slope = (R.rand(b, 1, 1, device=dev, dtype=dt) * 2 - 1) * self.max_trend
            out = out + slope * t
        # 4. noise
        if self.noise_std > 0:
            out = out + self.noise_std * R.randn_like(out)
        if self.corr_noise_std > 0:
            kern = gaussian_kernel1d(self.corr_noise_sigma, dev, dt)
            radius = kern.numel() // 2
            white = R.randn(b, c, 1, length, device=dev, dtype=dt).view(b * c, 1, length)
            if radius < length:  # periodic filtering, like the circular shift
                padded = F.pad(white, (radius, radius), mode="circular")
            else:  # very short signals: zero padding
                padded = F.pad(white, (radius, radius))
            out = out + self.corr_noise_std * F.conv1d(padded, kern.view(1, 1, -1)).view(b, c, length)
        # 5. masking of one segment
        if self.mask_p > 0 and self.max_mask > 0:
            max_len = max(1, int(round(self.max_mask * length)))
            seg = R.randint(1, max_len + 1, b, 1, device=dev)
            start = (R.rand(b, 1, device=dev) * (length - seg + 1)).long()
            idx = torch.arange(length, device=dev).view(1, -1)
            apply = (R.rand(b, 1, device=dev) < self.mask_p) & (idx >= start) & (idx < start + seg)
            out = out.masked_fill(apply.unsqueeze(1), self.mask_value)
        return out

    def extra_repr(self) -> str:
        return (
            f"max_shift={self.max_shift}, crop_scale={self.crop_scale}, warp_strength={self.warp_strength}, "
            f"amplitude={self.amplitude}, max_trend={self.max_trend}, noise_std={self.noise_std}, "
            f"corr_noise_std={self.corr_noise_std}, mask_p={self.mask_p}, max_mask={self.max_mask}"
        )
