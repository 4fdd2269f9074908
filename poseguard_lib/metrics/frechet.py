"""Fréchet distance between Gaussian fits of two feature sets: the core of FID, FID-VID and FVD.

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)

The matrix square root is SciPy's ``sqrtm``, in float64. When it is not finite (singular
covariances, e.g. fewer samples than feature dimensions) a small diagonal ``eps`` is added to both
covariances, as pytorch-fid does; a square root with a large imaginary part stops with an error
instead of returning a meaningless number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from poseguard_lib.metrics.checks import MetricInputError, check_features

SQRTM_EPS = 1e-6
IMAGINARY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean (D,) and unbiased covariance (D, D) of N feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_statistics(features: torch.Tensor | np.ndarray, name: str = "features") -> FeatureStatistics:
    features = check_features(name, torch.as_tensor(features)).double().cpu().numpy()
    return FeatureStatistics(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def _sqrtm_product(cov_a: np.ndarray, cov_b: np.ndarray) -> np.ndarray:
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = SQRTM_EPS * np.eye(len(cov_a))
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=IMAGINARY_TOLERANCE):
            worst = np.abs(np.diagonal(root).imag).max()
            raise MetricInputError(f"Fréchet distance: matrix square root has imaginary part {worst:.3g}")
        root = root.real
    return root


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    if a.mean.shape != b.mean.shape:
        raise MetricInputError(f"Fréchet distance: feature sizes differ ({a.mean.shape[0]} vs {b.mean.shape[0]})")
    a_cov, b_cov = np.atleast_2d(a.cov), np.atleast_2d(b.cov)
    diff = a.mean - b.mean
    distance = diff @ diff + np.trace(a_cov) + np.trace(b_cov) - 2 * np.trace(_sqrtm_product(a_cov, b_cov))
    # The exact value is >= 0; round-off may dip just below, anything larger is a real failure.
    scale = np.trace(a_cov) + np.trace(b_cov) + diff @ diff + 1.0
    if distance < -1e-6 * scale:
        raise MetricInputError(f"Fréchet distance came out negative ({distance:.3g}): covariances ill-conditioned")
    return float(max(distance, 0.0))


def frechet_distance_of_features(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between two (N, D) feature sets (N may differ between them)."""
    return frechet_distance(feature_statistics(a, "first feature set"), feature_statistics(b, "second feature set"))
