"""The feature networks behind the distribution and perceptual metrics, as one named bundle.

Two kinds exist (``metrics.extractors`` in a profile):

- ``canonical`` (paper profile): InceptionV3 pool3 (FID), 3D ResNet-50 Kinetics (FID-VID),
  I3D Kinetics-400 (FVD), AlexNet-LPIPS, loaded from local weight files
  (:mod:`poseguard_lib.metrics.canonical`). Numbers are comparable with the literature.
- ``synthetic`` (tiny, small): an image and a clip network that the study trains on its own
  synthetic people (:mod:`poseguard_lib.metrics.synthetic`). Numbers are comparable only
  between runs that use the same extractor, so every result names its extractor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from poseguard_lib.metrics.lpips import PerceptualNetwork

FeatureFunction = Callable[[torch.Tensor], torch.Tensor]
METRICS_WITH_EXTRACTORS = ("fid", "fid_vid", "fvd", "lpips", "psr")


@dataclass(frozen=True)
class MetricExtractors:
    """Feature functions (all take inputs in [0, 1]) and the name of each metric's extractor.

    image_features: frames (N, 3, H, W) -> (N, D), for FID.
    clip_embedding: clips (B, T, 3, H, W) -> (B, D), for FID-VID.
    clip_logits: clips (B, T, 3, H, W) -> (B, D'), for FVD.
    perceptual: the LPIPS network.
    pose_estimator: frames -> (N, 18, 3) OpenPose-18 (x, y, score), for PSR; None where none is loaded.
    names: metric -> human-readable extractor name, e.g. "FID (synthetic-domain extractor ...)".
    provenance: weight files, digests, cache keys: whatever identifies the exact extractor.
    """

    image_features: FeatureFunction
    clip_embedding: FeatureFunction
    clip_logits: FeatureFunction
    perceptual: PerceptualNetwork
    pose_estimator: FeatureFunction | None
    names: dict[str, str]
    provenance: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [metric for metric in METRICS_WITH_EXTRACTORS if metric not in self.names]
        if missing:
            raise ValueError(f"extractor names missing for: {', '.join(missing)}")


def load_extractors(cfg, **kwargs) -> MetricExtractors:
    """The extractors a profile asks for: synthetic ones are trained (or read from cache), canonical ones loaded."""
    if cfg.metrics.extractors == "synthetic":
        from poseguard_lib.metrics.synthetic import load_or_train_extractors

        return load_or_train_extractors(cfg, **kwargs).as_metric_extractors()
    from poseguard_lib.metrics.canonical import load_canonical_extractors

    return load_canonical_extractors(**kwargs)
