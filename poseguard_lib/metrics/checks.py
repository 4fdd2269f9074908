"""Input checks shared by every metric: a bad input stops with a message, never a silent NaN."""

from __future__ import annotations

import torch


class MetricInputError(ValueError):
    """Frames, clips or features that a metric cannot use; the message names what is wrong."""


def check_frames(name: str, frames: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """Frames must be a float tensor (N, 3, H, W) in [0, 1] with N >= 1 and H, W >= ``min_size``."""
    if not isinstance(frames, torch.Tensor):
        raise MetricInputError(f"{name}: expected a torch.Tensor, got {type(frames).__name__}")
    if not frames.is_floating_point():
        raise MetricInputError(f"{name}: expected a float tensor in [0, 1], got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise MetricInputError(f"{name}: expected shape (N, 3, H, W), got {tuple(frames.shape)}")
    n, _, h, w = frames.shape
    if n == 0:
        raise MetricInputError(f"{name}: no frames")
    if h < min_size or w < min_size:
        raise MetricInputError(
            f"{name}: frames of {h}x{w} are smaller than the {min_size}x{min_size} this metric needs"
        )
    if not torch.isfinite(frames).all():
        raise MetricInputError(f"{name}: frames contain NaN or inf")
    low, high = frames.min().item(), frames.max().item()
    if low < 0.0 or high > 1.0:
        raise MetricInputError(f"{name}: values must lie in [0, 1], found [{low:.4g}, {high:.4g}]")
    return frames


def check_pair(pred: torch.Tensor, target: torch.Tensor, min_size: int = 1) -> None:
    """Paired metrics compare frame i of ``pred`` with frame i of ``target``: shapes must agree."""
    check_frames("pred", pred, min_size)
    check_frames("target", target, min_size)
    if pred.shape != target.shape:
        raise MetricInputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def check_features(name: str, features: torch.Tensor) -> torch.Tensor:
    """Feature sets for a Fréchet distance: finite (N, D) with N >= 2, so a covariance exists."""
    if features.ndim != 2:
        raise MetricInputError(f"{name}: expected features of shape (N, D), got {tuple(features.shape)}")
    if features.shape[0] < 2:
        raise MetricInputError(
            f"{name}: {features.shape[0]} sample(s) cannot give a covariance; a Fréchet distance needs at least 2"
        )
    if not torch.isfinite(features).all():
        raise MetricInputError(f"{name}: features contain NaN or inf")
    return features
