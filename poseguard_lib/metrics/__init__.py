"""Metrics of the study: SSIM, PSNR, LPIPS, FID, FID-VID, FVD, the starred defense metrics and PSR.

Plain functions take float frames (N, 3, H, W) in [0, 1]; bad input raises
:class:`MetricInputError`. The extractors behind FID, FID-VID, FVD, LPIPS and PSR are canonical
(paper profile, :mod:`~poseguard_lib.metrics.canonical`) or trained by the study on synthetic data
(tiny/small, :mod:`~poseguard_lib.metrics.synthetic`); :func:`load_extractors` picks per profile.
"""

from poseguard_lib.metrics.checks import MetricInputError
from poseguard_lib.metrics.clips import clip_features, sliding_clips
from poseguard_lib.metrics.evaluate import (
    TABLE1_COLUMNS,
    ModelOutputs,
    evaluate_models,
    safe_target_rmse,
    starred_metrics,
)
from poseguard_lib.metrics.extractors import MetricExtractors, load_extractors
from poseguard_lib.metrics.frechet import (
    FeatureStatistics,
    feature_statistics,
    frechet_distance,
    frechet_distance_of_features,
)
from poseguard_lib.metrics.image import PSNR_CAP_DB, psnr, ssim
from poseguard_lib.metrics.lpips import lpips, lpips_from_features
from poseguard_lib.metrics.psr import PoseSuppression, pose_suppression, pose_suppression_rate
