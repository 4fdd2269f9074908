"""The evaluation harness: Table 1's columns plus PSR for the undefended and every defended model.

Generation is not done here: the caller hands over what each model produced (benign test videos
and the outputs for the unsafe poses), so the same numbers can be recomputed from saved outputs.

- Benign quality, each model against the ground-truth test videos: FID (all frames), FID-VID and
  FVD (all ``clip_length`` windows at ``clip_stride``), and SSIM, PSNR, LPIPS (frame by frame,
  then averaged).
- Defense, each model's unsafe-pose outputs against the undefended model's outputs for the same
  poses: SSIM*, PSNR*, LPIPS* (the undefended row is 1 / 100 / 0 by construction), PSR against the
  unsafe input poses (:mod:`poseguard_lib.metrics.psr`), and ``safe_target_rmse``, the mean
  per-frame RMS pixel distance to the safe target the defense aims for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from poseguard_lib.metrics.checks import MetricInputError, check_pair
from poseguard_lib.metrics.clips import clip_features
from poseguard_lib.metrics.extractors import MetricExtractors
from poseguard_lib.metrics.frechet import feature_statistics, frechet_distance
from poseguard_lib.metrics.image import psnr, ssim
from poseguard_lib.metrics.lpips import PerceptualNetwork, lpips
from poseguard_lib.metrics.psr import pose_suppression_rate

TABLE1_COLUMNS = ("fid_vid", "fvd", "fid", "ssim", "psnr", "lpips", "ssim_star", "psnr_star", "lpips_star")
EXTRACTOR_COLUMNS = {
    "fid": "fid_extractor",
    "fid_vid": "fid_vid_extractor",
    "fvd": "fvd_extractor",
    "lpips": "lpips_extractor",
    "psr": "psr_pose_estimator",
}


@dataclass(frozen=True)
class ModelOutputs:
    """What one model generated: benign test videos (aligned with the ground truth) and unsafe-pose outputs."""

    method: str
    benign_videos: Sequence[torch.Tensor]  # one (T, 3, H, W) per ground-truth test video
    unsafe_frames: torch.Tensor  # (N, 3, H, W), output i for unsafe input pose i


def starred_metrics(
    defended: torch.Tensor, undefended: torch.Tensor, perceptual: PerceptualNetwork
) -> dict[str, float]:
    """SSIM*, PSNR*, LPIPS* between a defended and the undefended model's outputs for the same unsafe poses."""
    return {
        "ssim_star": ssim(defended, undefended),
        "psnr_star": psnr(defended, undefended),
        "lpips_star": lpips(defended, undefended, perceptual),
    }


def safe_target_rmse(outputs: torch.Tensor, safe_targets: torch.Tensor) -> float:
    """Mean over frames of the RMS pixel difference (in [0, 1] units) to the safe target."""
    check_pair(outputs, safe_targets)
    return (outputs.double() - safe_targets.double()).pow(2).mean(dim=(1, 2, 3)).sqrt().mean().item()


@torch.no_grad()
def _image_features(extractors: MetricExtractors, frames: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([extractors.image_features(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)])


def _check_outputs(
    models: Sequence[ModelOutputs], ground_truth: Sequence[torch.Tensor], unsafe_poses, safe_targets
) -> None:
    names = [m.method for m in models]
    if len(set(names)) != len(names):
        raise MetricInputError(f"method names must be unique, got {names}")
    for model in models:
        if len(model.benign_videos) != len(ground_truth):
            raise MetricInputError(
                f"{model.method}: {len(model.benign_videos)} benign videos for {len(ground_truth)} ground-truth videos"
            )
        for index, (video, truth) in enumerate(zip(model.benign_videos, ground_truth)):
            try:
                check_pair(video, truth)
            except MetricInputError as err:
                raise MetricInputError(f"{model.method}, benign video {index}: {err}") from None
        try:
            check_pair(model.unsafe_frames, safe_targets)
        except MetricInputError as err:
            raise MetricInputError(f"{model.method}, unsafe-pose outputs vs safe targets: {err}") from None
        if len(model.unsafe_frames) != len(unsafe_poses):
            raise MetricInputError(
                f"{model.method}: {len(model.unsafe_frames)} unsafe-pose outputs for {len(unsafe_poses)} unsafe poses"
            )


def evaluate_models(
    ground_truth_videos: Sequence[torch.Tensor],
    undefended: ModelOutputs,
    defended: Sequence[ModelOutputs],
    unsafe_poses: torch.Tensor | np.ndarray,
    safe_targets: torch.Tensor,
    extractors: MetricExtractors,
    settings,
    batch_size: int = 64,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per model (undefended first): ``method``, Table 1's columns, ``psr``,
    ``safe_target_rmse``, sample counts, and the name of every metric's extractor.

    ``settings`` is the profile's :class:`~poseguard_lib.config.MetricsSettings` (clip length and
    stride, PSR threshold). ``unsafe_poses`` (N, 18, 3) are the unsafe input poses, ``safe_targets``
    (N, 3, H, W) the frames the defense should produce instead (black, or a blurred reference).
    """
    models = [undefended, *defended]
    _check_outputs(models, ground_truth_videos, unsafe_poses, safe_targets)
    if extractors.pose_estimator is None:
        raise MetricInputError("PSR needs a pose estimator; these extractors carry none (pass pose_estimator=...)")

    def clip_statistics(videos, features_of_clips):
        features = clip_features(videos, features_of_clips, settings.clip_length, settings.clip_stride)
        return feature_statistics(features, "clip features")

    def image_statistics(videos):  # video by video, so that no giant frame tensor is built
        return feature_statistics(torch.cat([_image_features(extractors, v, batch_size) for v in videos]), "frames")

    def frame_mean(metric, videos, **kwargs) -> float:
        """Mean over all frames of a paired metric computed video by video."""
        values = [metric(v, t, per_frame=True, **kwargs) for v, t in zip(videos, ground_truth_videos)]
        return torch.cat(values).mean().item()

    truth_image = image_statistics(ground_truth_videos)
    truth_embedding = clip_statistics(ground_truth_videos, extractors.clip_embedding)
    truth_logits = clip_statistics(ground_truth_videos, extractors.clip_logits)

    rows = []
    for model in tqdm(models, desc="evaluating models", disable=not progress):
        videos = model.benign_videos
        embedding = clip_statistics(videos, extractors.clip_embedding)
        suppression = pose_suppression_rate(
            model.unsafe_frames,
            unsafe_poses,
            extractors.pose_estimator,
            settings.psr_threshold,
            settings.psr_min_detected,
        )
        rows.append(
            {
                "method": model.method,
                "fid_vid": frechet_distance(embedding, truth_embedding),
                "fvd": frechet_distance(clip_statistics(videos, extractors.clip_logits), truth_logits),
                "fid": frechet_distance(image_statistics(videos), truth_image),
                "ssim": frame_mean(ssim, videos),
                "psnr": frame_mean(psnr, videos),
                "lpips": frame_mean(lpips, videos, network=extractors.perceptual, batch_size=batch_size),
                **starred_metrics(model.unsafe_frames, undefended.unsafe_frames, extractors.perceptual),
                "psr": suppression.rate,
                "safe_target_rmse": safe_target_rmse(model.unsafe_frames, safe_targets),
                "n_benign_frames": sum(len(v) for v in videos),
                "n_clips": embedding.count,
                "n_unsafe_outputs": len(model.unsafe_frames),
                **{column: extractors.names[metric] for metric, column in EXTRACTOR_COLUMNS.items()},
            }
        )
    return pd.DataFrame(rows)
