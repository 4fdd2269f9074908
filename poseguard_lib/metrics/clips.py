"""Clips for the video metrics: every window of ``length`` consecutive frames, ``stride`` apart.

DisCo's convention (and the paper profile's) is 16-frame windows at stride 1; the tiny and small
profiles use shorter clips (``metrics.clip_length``) because their videos are shorter.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from poseguard_lib.metrics.checks import MetricInputError, check_frames


def sliding_clips(video: torch.Tensor, length: int, stride: int = 1, name: str = "video") -> torch.Tensor:
    """Windows of a video (T, 3, H, W) as a view (n_clips, length, 3, H, W)."""
    check_frames(name, video)
    if length < 1 or stride < 1:
        raise MetricInputError(f"clip length ({length}) and stride ({stride}) must be positive")
    if len(video) < length:
        raise MetricInputError(f"{name} has {len(video)} frames, fewer than the clip length {length}")
    return video.unfold(0, length, stride).permute(0, 4, 1, 2, 3)


def iter_clip_batches(
    videos: Sequence[torch.Tensor], length: int, stride: int = 1, batch_size: int = 16
) -> Iterator[torch.Tensor]:
    """Batches (B, length, 3, H, W) of all windows of all videos, without stacking them all at once."""
    if len(videos) == 0:
        raise MetricInputError("no videos to cut into clips")
    for index, video in enumerate(videos):
        clips = sliding_clips(video, length, stride, name=f"video {index}")
        for start in range(0, len(clips), batch_size):
            yield clips[start : start + batch_size]


@torch.no_grad()
def clip_features(
    videos: Sequence[torch.Tensor],
    features_of_clips: Callable[[torch.Tensor], torch.Tensor],
    length: int,
    stride: int = 1,
    batch_size: int = 16,
) -> torch.Tensor:
    """Features (n_clips, D) of every window of every video."""
    return torch.cat([features_of_clips(batch) for batch in iter_clip_batches(videos, length, stride, batch_size)])
