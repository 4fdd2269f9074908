"""Synthetic fashion videos (appearance × benign motion) and the generator's training sets.

UBC-Fashion gives the paper 500 training and 100 test videos of models turning on a
catwalk. For the tiny and small profiles we render the same kind of data: every
appearance performs every benign motion, with its pose video drawn the way
Moore-AnimateAnyone's DWPose drawing does. Held-out people test appearance
generalisation, held-out motions test pose generalisation. Rendering is fast, so splits
live in memory only (cached per settings and seed); nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from poseguard_lib.config import DataSettings
from poseguard_lib.data.appearance import Appearance, sample_appearances
from poseguard_lib.data.motions import HELD_OUT_MOTIONS, benign_motions
from poseguard_lib.data.render import render_person, render_studio
from poseguard_lib.pose.draw import condition_image
from poseguard_lib.pose.skeleton import PoseSequence
from poseguard_lib.pose.transforms import CropBox, random_crop, scale, translate

SPLITS = ("train", "test_appearance", "test_motion")
# Moore-AnimateAnyone crops with RandomResizedCrop(scale=(0.9, 1.0), ratio=(0.9, 1.0)): at
# least 90 % of the area, i.e. a side of at least sqrt(0.9), resized back to the frame size.
# ``random_crop`` keeps the frame's aspect ratio, so the 10 % ratio jitter is left out.
MOORE_CROP_MIN_SCALE = 0.9**0.5
# Each video places its person slightly differently, as camera set-ups differ between videos.
_PLACEMENT_SCALE = (0.92, 1.05)
_PLACEMENT_SHIFT = 0.04


@dataclass(frozen=True, eq=False)  # arrays inside: compare videos by identity
class SyntheticVideo:
    """One rendered video: who, which motion, the poses, the RGB frames and the pose images."""

    appearance: Appearance
    motion: str
    poses: PoseSequence
    frames: np.ndarray  # (T, H, W, 3) uint8
    pose_images: np.ndarray  # (T, H, W, 3) uint8

    def __post_init__(self) -> None:
        t = len(self.poses)
        if self.frames.shape[0] != t or self.pose_images.shape != self.frames.shape:
            raise ValueError(
                f"video {self.motion!r}: {t} poses, frames {self.frames.shape}, pose images {self.pose_images.shape}"
            )
        self.frames.setflags(write=False)
        self.pose_images.setflags(write=False)

    def __len__(self) -> int:
        return len(self.poses)


def render_video(
    appearance: Appearance, motion: str, poses: PoseSequence, height: int, width: int, detect_resolution: int | None = None,
    fingers: bool = False,
) -> SyntheticVideo:
    """Render every pose of ``poses`` as ``appearance`` and draw its condition image."""
    frames = np.stack([render_person(pose, appearance, height, width, fingers) for pose in poses.frames])
    pose_images = np.stack([condition_image(pose, height, width, detect_resolution) for pose in poses.frames])
    return SyntheticVideo(appearance, motion, poses, frames, pose_images)


def _placed(poses: PoseSequence, rng: np.random.Generator) -> PoseSequence:
    """The motion as filmed in one video: a slightly different size and horizontal position."""
    factor = float(rng.uniform(*_PLACEMENT_SCALE))
    shift = float(rng.uniform(-_PLACEMENT_SHIFT, _PLACEMENT_SHIFT))
    feet = np.max([pose.body.xy[pose.body.visible, 1].max() for pose in poses.frames if pose.body.visible.any()])
    return PoseSequence(tuple(translate(scale(p, factor, center=(0.5, feet)), shift, 0.0) for p in poses.frames))


@lru_cache(maxsize=4)
def _build_split(data: DataSettings, seed: int) -> dict[str, tuple[SyntheticVideo, ...]]:
    n_profile_people = data.n_train_appearances + data.n_test_appearances
    appearances = sample_appearances(n_profile_people + data.extra_train_appearances, seed, data.wall_saturation)
    train_people, test_people = appearances[: data.n_train_appearances], appearances[data.n_train_appearances : n_profile_people]
    extra_people = appearances[n_profile_people:]
    motions = benign_motions(data.frames_per_video, aspect=data.width / data.height)
    unknown = sorted(set(HELD_OUT_MOTIONS) - set(motions))
    if unknown:
        raise ValueError(f"held-out motions {unknown} are not among the benign motions {sorted(motions)}")
    training_motions = [name for name in motions if name not in HELD_OUT_MOTIONS]
    placement = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    def videos(people: list[Appearance], names: Sequence[str]) -> tuple[SyntheticVideo, ...]:
        return tuple(
            render_video(person, name, _placed(motions[name], placement), data.height, data.width,
                         data.pose_detect_resolution, data.render_fingers)
            for person in people
            for name in names
        )

    split = {
        "train": videos(train_people, training_motions),
        "test_appearance": videos(test_people, training_motions),
        "test_motion": videos(test_people, HELD_OUT_MOTIONS),
    }
    # rendered last, so the placements drawn for the other videos stay those of the profile
    split["train"] += videos(extra_people, training_motions)
    return split


def build_split(data: DataSettings, seed: int) -> dict[str, tuple[SyntheticVideo, ...]]:
    """The three splits of the synthetic data set for ``data`` and ``seed``.

    ``train``: training people (``extra_train_appearances`` included) × training motions;
    ``test_appearance``: held-out people × training motions; ``test_motion``: held-out people ×
    held-out motions.
    """
    if not isinstance(data, DataSettings):
        raise TypeError(f"data must be DataSettings, got {type(data).__name__}")
    if data.source != "synthetic":
        raise ValueError(f"build_split renders synthetic data only; data.source is {data.source!r}")
    return dict(_build_split(data, int(seed)))


def clear_split_cache() -> None:
    """Forget the rendered splits kept in memory (they are rebuilt on the next call)."""
    _build_split.cache_clear()


# --- torch datasets for the generator's two training stages ------------------------------
def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → float (..., 3, H, W) in [0, 1]."""
    return torch.tensor(images, dtype=torch.float32).movedim(-1, -3) / 255.0


def _crop_resize(images: np.ndarray, box: CropBox | None) -> np.ndarray:
    """Crop every (H, W, 3) image with ``box`` and resize it back to H × W (bilinear)."""
    if box is None:
        return images
    size = (box.image_width, box.image_height)
    return np.stack([cv2.resize(box.crop(image), size, interpolation=cv2.INTER_LINEAR) for image in images])


def rotate_hue(images: np.ndarray, angle: float) -> np.ndarray:
    """Rotate the colours of uint8 (..., 3) images by ``angle`` radians about the grey axis.

    A rotation about (1, 1, 1) keeps grey levels and brightness and turns every hue by the same
    angle (red → green → blue at 2π/3 steps); values pushed out of range are clipped.
    """
    axis = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(axis, axis)
    rotated = images.astype(np.float32) @ rotation.T.astype(np.float32)
    return np.clip(np.rint(rotated), 0, 255).astype(np.uint8)


def _check_videos(videos: Sequence[SyntheticVideo], crop_min_scale: float | None) -> tuple[SyntheticVideo, ...]:
    videos = tuple(videos)
    if not videos:
        raise ValueError("a training dataset needs at least one video")
    shapes = {v.frames.shape[1:] for v in videos}
    if len(shapes) != 1:
        raise ValueError(f"videos have different frame sizes: {sorted(shapes)}")
    if crop_min_scale is not None and not 0 < crop_min_scale <= 1:
        raise ValueError(f"crop_min_scale must be in (0, 1] or None, got {crop_min_scale}")
    return videos


class _SeededDataset(Dataset):
    """Every item is a pure function of (seed, index): workers and reruns see the same samples.

    Subclasses list their items in ``_index`` as (video number, frame number) pairs.

    ``hue_augment`` turns the colours of an item's reference and target frames (not its pose
    images) by one random angle: with a few dozen people a generator can otherwise memorise
    each person's colours instead of reading them from the reference.
    """

    def __init__(
        self, videos: Sequence[SyntheticVideo], seed: int, crop_min_scale: float | None, hue_augment: bool = False
    ):
        self.videos = _check_videos(videos, crop_min_scale)
        self.seed = int(seed)
        self.crop_min_scale = crop_min_scale
        self.hue_augment = hue_augment
        self._index: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._index)

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        return np.random.default_rng(np.random.SeedSequence([self.seed, index]))

    def _crop_box(self, video: SyntheticVideo, frame: int, rng: np.random.Generator) -> CropBox | None:
        if self.crop_min_scale is None:
            return None
        height, width = video.frames.shape[1:3]
        box, _ = random_crop(video.poses[frame], rng, height, width, min_scale=self.crop_min_scale)
        return box

    def _recolour(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The frames with their hue turned by one random angle (``hue_augment``), else as they are."""
        if not self.hue_augment:
            return frames
        return rotate_hue(frames, float(rng.uniform(0, 2 * np.pi)))


def figure_masks(video: SyntheticVideo, frames: int | slice = slice(None)) -> np.ndarray:
    """(T, H, W) bool, or (H, W) for one frame: where ``frames`` show the person or their shadow rather
    than the bare studio."""
    studio = render_studio(video.appearance, *video.frames.shape[1:3])
    return (video.frames[frames] != studio).any(axis=-1)


class ImagePairDataset(_SeededDataset):
    """Stage 1: a reference frame, the target frame's pose image and the target frame.

    One item per (video, target frame). The reference comes from the same video, at least a
    third of the video away from the target when the video is long enough (Moore-AnimateAnyone
    keeps a margin between the two so the model must move the person, not copy the frame).
    With ``crop_min_scale`` the three images share one random crop, resized back to full size.
    With ``figure_mask`` an item also holds ``figure``, (1, H, W): 1 where the target shows the
    person (:func:`figure_masks`, cropped alike), for a loss that weighs the person apart.
    """

    def __init__(
        self,
        videos: Sequence[SyntheticVideo],
        seed: int = 0,
        crop_min_scale: float | None = None,
        hue_augment: bool = False,
        figure_mask: bool = False,
    ):
        super().__init__(videos, seed, crop_min_scale, hue_augment)
        self.figure_mask = figure_mask
        self._index = [(v, t) for v, video in enumerate(self.videos) for t in range(len(video))]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        video_index, target = self._index[index]
        video = self.videos[video_index]
        n = len(video)
        margin = max(1, n // 3)
        candidates = [i for i in range(n) if abs(i - target) >= margin]
        candidates = candidates or [i for i in range(n) if i != target] or [target]
        reference = int(rng.choice(candidates))
        box = self._crop_box(video, target, rng)
        images = [video.frames[target], video.pose_images[target], video.frames[reference]]
        if self.figure_mask:
            images.append(np.repeat(figure_masks(video, target)[..., None], 3, axis=-1).astype(np.uint8) * 255)
        target_frame, pose, reference_frame, *figure = _crop_resize(np.stack(images), box)
        target_frame, reference_frame = self._recolour(np.stack([target_frame, reference_frame]), rng)
        item = {"reference": to_tensor(reference_frame), "pose": to_tensor(pose), "target": to_tensor(target_frame)}
        if figure:
            item["figure"] = (to_tensor(figure[0])[:1] > 0).float()
        return item


class VideoClipDataset(_SeededDataset):
    """Stage 2: a reference frame plus ``clip_length`` consecutive pose images and frames.

    One item per (video, clip start). The reference is any frame of the same video, as in
    Moore-AnimateAnyone's video dataset; all frames of an item share one random crop.
    """

    def __init__(
        self,
        videos: Sequence[SyntheticVideo],
        clip_length: int,
        seed: int = 0,
        crop_min_scale: float | None = None,
        hue_augment: bool = False,
    ):
        super().__init__(videos, seed, crop_min_scale, hue_augment)
        shortest = min(len(v) for v in self.videos)
        if not 1 <= clip_length <= shortest:
            raise ValueError(f"clip_length must be within 1..{shortest} (the shortest video), got {clip_length}")
        self.clip_length = clip_length
        self._index = [(v, s) for v, video in enumerate(self.videos) for s in range(len(video) - clip_length + 1)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        video_index, start = self._index[index]
        video = self.videos[video_index]
        clip = slice(start, start + self.clip_length)
        reference = int(rng.integers(len(video)))
        box = self._crop_box(video, start, rng)
        stacked = np.concatenate([video.frames[clip], video.pose_images[clip], video.frames[reference : reference + 1]])
        images = _crop_resize(stacked, box)
        t = self.clip_length
        frames = self._recolour(np.concatenate([images[:t], images[-1:]]), rng)
        return {
            "reference": to_tensor(frames[-1]),
            "pose": to_tensor(images[t : 2 * t]),
            "target": to_tensor(frames[:t]),
        }
