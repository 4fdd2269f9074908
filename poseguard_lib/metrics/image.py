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
SSIM_CHUNK = 64  # frames filtered at once: bounds memory for large frames (5 float64 maps per frame)


def _reduce(values: torch.Tensor, per_frame: bool) -> torch.Tensor | float:
    return values if per_frame else values.mean().item()


def _gaussian_band(size: int, dtype: torch.dtype) -> torch.Tensor:
    """(size - 10, size) matrix whose rows are the Gaussian window at every valid position."""
    taps = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    window = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    width = 2 * SSIM_RADIUS + 1
    band = torch.zeros(size - width + 1, size, dtype=torch.float64)
    for row in range(len(band)):
        band[row, row : row + width] = window / window.sum()
    return band.to(dtype)


def _gaussian_blur_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding, (..., H, W) -> (..., H - 10, W - 10), as two
    matrix products (several times faster on a CPU than a 1x11 convolution)."""
    height, width = x.shape[-2:]
    return _gaussian_band(height, x.dtype) @ x @ _gaussian_band(width, x.dtype).T


def _ssim_windows(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SSIM of every window, and the local variances of ``x`` and ``y`` there."""
    x, y = x.double(), y.double()
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mu_x, mu_y, xx, yy, xy = _gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y])).split(len(x))
    var_x, var_y, cov_xy = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return luminance * (2 * cov_xy + c2) / (var_x + var_y + c2), var_x, var_y


def _ssim_per_frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _ssim_windows(x, y)[0].mean(dim=(1, 2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor, per_frame: bool = False) -> torch.Tensor | float:
    """Mean SSIM over frames (or the (N,) per-frame values); frames must be at least 11x11."""
    check_pair(pred, target, min_size=2 * SSIM_RADIUS + 1)
    chunks = range(0, len(pred), SSIM_CHUNK)
    values = torch.cat([_ssim_per_frame(pred[i : i + SSIM_CHUNK], target[i : i + SSIM_CHUNK]) for i in chunks])
    return _reduce(values, per_frame)


def psnr(pred: torch.Tensor, target: torch.Tensor, per_frame: bool = False) -> torch.Tensor | float:
    """Mean of per-frame PSNR in dB (not the PSNR of the pooled error), capped at 100 dB."""
    check_pair(pred, target)
    values = peak_signal_noise_ratio(
        pred.double(), target.double(), data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3)
    )
    return _reduce(values.clamp(max=PSNR_CAP_DB), per_frame)


def ssim_by_texture(pred: torch.Tensor, target: torch.Tensor, flat_variance: float = 1e-4) -> dict[str, float]:
    """SSIM split between the target's flat windows (local variance below ``flat_variance``) and the rest.

    Why: on a flat studio wall SSIM is C2 / (var_pred + C2) times the luminance term, so a faint
    speckle (std 0.03) already halves it there, while PSNR barely notices. The overall SSIM is
    ``flat_share * flat + (1 - flat_share) * textured``; ``flat_pred_std`` is the prediction's mean
    local standard deviation on the flat windows (the speckle's size).
    """
    check_pair(pred, target, min_size=2 * SSIM_RADIUS + 1)
    windows, pred_variance, target_variance = map(torch.cat, zip(*(
        _ssim_windows(pred[i : i + SSIM_CHUNK], target[i : i + SSIM_CHUNK]) for i in range(0, len(pred), SSIM_CHUNK)
    )))
    flat = target_variance < flat_variance
    return {
        "flat_share": flat.double().mean().item(),
        "flat": windows[flat].mean().item() if flat.any() else float("nan"),
        "textured": windows[~flat].mean().item() if (~flat).any() else float("nan"),
        "flat_pred_std": pred_variance[flat].clamp(min=0).sqrt().mean().item() if flat.any() else float("nan"),
    }


def subpixel_pattern(pred: torch.Tensor, target: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, 3, patch²): per frame and colour, the mean error ``pred - target`` at each position of a
    ``patch``×``patch`` pixel patch, less its mean over the positions.

    Why: a pixel-space generator that sees images as patches stacked into channels can paint one
    offset per patch position over the whole frame, a fine grid pattern that SSIM reads as texture
    on a flat wall; this is the part of the error that repeats in every patch.
    """
    check_pair(pred, target)
    if pred.shape[-1] % patch or pred.shape[-2] % patch:
        raise ValueError(f"frames of {tuple(pred.shape[-2:])} do not split into {patch}×{patch} patches")
    error = pred.double() - target.double()
    by_position = F.pixel_unshuffle(error, patch).unflatten(1, (error.shape[1], patch**2)).mean((-2, -1))
    return by_position - by_position.mean(2, keepdim=True)
