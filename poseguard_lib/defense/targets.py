"""Unsafe (trigger → safe) training pairs of PoseGuard: reference × unsafe pose → a safe image.

The paper links each unsafe pose to a *safe* output, a black frame by default or a blurred
reference image "for higher fidelity". The same dataset serves the two defense targets:

- a set of poses (the paper's main setting): many references × the unsafe poses, so the
  defense refuses the poses whoever the reference shows;
- one identity (paper Sec. 5, "Defense against Reference Image Guidance"): that person's frames
  × any poses (e.g. the benign training poses), so the model refuses to animate that person.

Each item is a pure function of (seed, index), with the paper's only augmentation, a random
crop: one box crops the reference and moves the pose, and the pose is drawn afresh on the
cropped frame with the same drawing the generator is conditioned on everywhere else.
"""

from __future__ import annotations

import hashlib
from typing import Literal, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from poseguard_lib.config import DataSettings, DefenseSettings
from poseguard_lib.io import sha256_json
from poseguard_lib.data.synthetic import to_tensor
from poseguard_lib.pose.draw import condition_image
from poseguard_lib.pose.io import pose_to_data
from poseguard_lib.pose.skeleton import Pose
from poseguard_lib.pose.transforms import random_crop

SafeTarget = Literal["black", "blur"]


class DefenseInputError(ValueError):
    """Input that a defense cannot use (empty pose set, bad reference frames, bad settings)."""


def blurred(image: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Gaussian blur of an (H, W, 3) uint8 image with sigma = ``sigma_fraction`` × the short side.

    Relative to the frame so that one setting means the same blur on every profile's frame size.
    """
    if sigma_fraction <= 0:
        raise DefenseInputError(f"blur sigma must be positive, got {sigma_fraction}")
    sigma = sigma_fraction * min(image.shape[:2])
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def safe_target(reference: np.ndarray, kind: SafeTarget, blur_sigma: float) -> np.ndarray:
    """The image an unsafe pair should produce for ``reference`` (uint8 (H, W, 3))."""
    if kind == "black":
        return np.zeros_like(reference)
    if kind == "blur":
        return blurred(reference, blur_sigma)
    raise DefenseInputError(f"safe target must be 'black' or 'blur', got {kind!r}")


def reference_frames(videos: Sequence, per_video: int = 1) -> np.ndarray:
    """``per_video`` evenly spaced frames of each video (objects with ``frames`` (T, H, W, 3) uint8).

    The default references of a pose defense: every appearance of the benign training data.
    """
    if per_video < 1:
        raise DefenseInputError(f"per_video must be >= 1, got {per_video}")
    picked = []
    for video in videos:
        frames = np.asarray(video.frames)
        indices = np.linspace(0, len(frames) - 1, num=min(per_video, len(frames))).round().astype(int)
        picked.extend(frames[i] for i in indices)
    if not picked:
        raise DefenseInputError("no videos to take reference frames from")
    return np.stack(picked)


def _check_references(references: np.ndarray, height: int, width: int) -> np.ndarray:
    references = np.asarray(references)
    if references.dtype != np.uint8 or references.ndim != 4 or references.shape[-1] != 3:
        raise DefenseInputError(
            f"references must be uint8 frames (N, H, W, 3), got {references.dtype} {references.shape}"
        )
    if len(references) == 0:
        raise DefenseInputError("references are empty; give at least one reference frame")
    if references.shape[1:3] != (height, width):
        raise DefenseInputError(
            f"references are {references.shape[1]}×{references.shape[2]} but pairs are {height}×{width}; "
            "resize them first"
        )
    return references


class UnsafePairDataset(Dataset):
    """Every (reference, pose) combination → dict(reference, pose, target), float (3, H, W) in [0, 1].

    Item ``i`` pairs pose ``i // len(references)`` with reference ``i % len(references)``; its crop
    comes from a generator seeded by (seed, i). ``pose_labels`` name the poses (e.g. catalogue ids).
    """

    def __init__(
        self,
        references: np.ndarray,
        poses: Sequence[Pose],
        height: int,
        width: int,
        detect_resolution: int | None = None,
        safe_target: SafeTarget = "black",
        blur_sigma: float = 0.05,
        crop_min_scale: float | None = 0.8,
        seed: int = 0,
        pose_labels: Sequence[str] | None = None,
    ):
        poses = tuple(poses)
        if not poses:
            raise DefenseInputError("the unsafe pose set is empty; give at least one pose to defend against")
        bad = [i for i, pose in enumerate(poses) if not isinstance(pose, Pose)]
        if bad:
            raise DefenseInputError(
                f"poses {bad[:5]} are not Pose objects (read pose files with poseguard_lib.pose.read_pose)"
            )
        if safe_target not in ("black", "blur"):
            raise DefenseInputError(f"safe target must be 'black' or 'blur', got {safe_target!r}")
        if safe_target == "blur" and blur_sigma <= 0:
            raise DefenseInputError(f"blur sigma must be positive, got {blur_sigma}")
        if crop_min_scale is not None and not 0 < crop_min_scale <= 1:
            raise DefenseInputError(f"crop_min_scale must be in (0, 1] or None, got {crop_min_scale}")
        labels = tuple(pose_labels) if pose_labels is not None else tuple(f"pose_{i:02d}" for i in range(len(poses)))
        if len(labels) != len(poses):
            raise DefenseInputError(f"{len(labels)} pose labels for {len(poses)} poses")
        self.references = _check_references(references, height, width)
        self.poses = poses
        self.pose_labels = labels
        self.height, self.width = height, width
        self.detect_resolution = detect_resolution
        self.safe_target = safe_target
        self.blur_sigma = blur_sigma
        self.crop_min_scale = crop_min_scale
        self.seed = int(seed)

    @classmethod
    def from_settings(
        cls,
        references: np.ndarray,
        poses: Sequence[Pose],
        data: DataSettings,
        defense: DefenseSettings,
        seed: int = 0,
        pose_labels: Sequence[str] | None = None,
    ) -> "UnsafePairDataset":
        """Pairs at the profile's frame size and pose drawing, with its defense's target and crops."""
        return cls(
            references, poses, data.height, data.width, data.pose_detect_resolution,
            safe_target=defense.safe_target, blur_sigma=defense.blur_sigma,
            crop_min_scale=defense.crop_min_scale, seed=seed, pose_labels=pose_labels,
        )

    def __len__(self) -> int:
        return len(self.poses) * len(self.references)

    def _with_poses(self, indices: Sequence[int]) -> "UnsafePairDataset":
        """The same pairs, settings and seed, for the poses at ``indices`` only."""
        return type(self)(
            self.references, [self.poses[i] for i in indices], self.height, self.width, self.detect_resolution,
            self.safe_target, self.blur_sigma, self.crop_min_scale, self.seed, [self.pose_labels[i] for i in indices],
        )

    def for_pose(self, pose_index: int) -> "UnsafePairDataset":
        """The pairs of one pose only (one LoRA adapter per pose, Eq. 3)."""
        return self._with_poses([pose_index])

    def subset(self, n_poses: int) -> "UnsafePairDataset":
        """The pairs of the first ``n_poses`` poses (the Table 1 sweep over pose counts)."""
        if not 1 <= n_poses <= len(self.poses):
            raise DefenseInputError(f"n_poses must be within 1..{len(self.poses)}, got {n_poses}")
        return self._with_poses(range(n_poses))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} unsafe pairs")
        pose = self.poses[index // len(self.references)]
        reference = self.references[index % len(self.references)]
        if self.crop_min_scale is not None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
            box, pose = random_crop(pose, rng, self.height, self.width, min_scale=self.crop_min_scale)
            reference = cv2.resize(box.crop(reference), (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        pose_image = condition_image(pose, self.height, self.width, self.detect_resolution)
        target = safe_target(reference, self.safe_target, self.blur_sigma)
        return {"reference": to_tensor(reference), "pose": to_tensor(pose_image), "target": to_tensor(target)}

    def describe(self) -> dict:
        """What defines these pairs, for records and checkpoint fingerprints."""
        return {
            "pose_labels": list(self.pose_labels),
            "poses_sha256": sha256_json([pose_to_data(p) for p in self.poses]),
            "references": len(self.references),
            "references_sha256": hashlib.sha256(np.ascontiguousarray(self.references).tobytes()).hexdigest(),
            "size": [self.height, self.width],
            "detect_resolution": self.detect_resolution,
            "safe_target": self.safe_target,
            "blur_sigma": self.blur_sigma if self.safe_target == "blur" else None,
            "crop_min_scale": self.crop_min_scale,
            "seed": self.seed,
        }
