"""Paired image metrics: SSIM and PSNR, computed per frame and then averaged.

Both take float frames (N, 3, H, W) in [0, 1] and use an explicit data range of 1, so a black
output cannot shrink the range the way an inferred range would. Identical frames give exactly
SSIM 1 and PSNR :data:`PSNR_CAP_DB`, the paper's convention for its undefended baseline row.

SSIM follows Wang et al. (2004) and scikit-image's ``structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1)``: an 11-tap Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, filtered without padding so that only windows lying inside the frame count,
averaged over pixels and the three colour channels. (torchmetrics pads with reflection and
averages the border too, which differs by about 1e-4 to 1e-3.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio

from poseguard_lib.metrics.checks import check_pair

PSNR_CAP_DB = 100.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # scikit-image's truncate=3.5 gives an 11-tap window
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 1.0


def _reduce(values: torch.Tensor, per_frame: bool) -> torch.Tensor | float:
    return values if per_frame else values.mean().item()


def _gaussian_blur_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding: (B, C, H, W) -> (B, C, H - 10, W - 10)."""
    taps = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def ssim(pred: torch.Tensor, target: torch.Tensor, per_frame: bool = False) -> torch.Tensor | float:
    """Mean SSIM over frames (or the (N,) per-frame values); frames must be at least 11x11."""
    check_pair(pred, target, min_size=2 * SSIM_RADIUS + 1)
    x, y = pred.double(), target.double()
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mu_x, mu_y, xx, yy, xy = _gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y])).split(len(x))
    var_x, var_y, cov_xy = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    index_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return _reduce(index_map.mean(dim=(1, 2, 3)), per_frame)


def psnr(pred: torch.Tensor, target: torch.Tensor, per_frame: bool = False) -> torch.Tensor | float:
    """Mean of per-frame PSNR in dB (not the PSNR of the pooled error), capped at 100 dB."""
    check_pair(pred, target)
    values = peak_signal_noise_ratio(
        pred.double(), target.double(), data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3)
    )
    return _reduce(values.clamp(max=PSNR_CAP_DB), per_frame)
