"""Geometric pose transforms: the perturbations of the robustness study and training crops.

Every transform maps all parts of a :class:`Pose` (body, hands, face) and leaves scores
alone. Coordinates are normalised to the image, so rotations take ``aspect`` (width /
height) to turn in pixel-proportional space: a 30-degree rotation of a pose for a
512 x 768 frame is then a true 30-degree rotation of the drawn skeleton. Angles are in
degrees, counter-clockwise as seen on the image (OpenCV's ``getRotationMatrix2D`` sense).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from poseguard_lib.pose.skeleton import OPENPOSE_BODY_18, Keypoints, Pose, PoseError, PoseSequence

# Limb chains of OpenPose-18 as (joint, child): perturbing one turns the child and
# everything distal to it about the joint. Proximal chains come first.
LIMB_CHAINS: tuple[tuple[str, str], ...] = (
    ("neck", "nose"),
    ("r_shoulder", "r_elbow"),
    ("r_elbow", "r_wrist"),
    ("l_shoulder", "l_elbow"),
    ("l_elbow", "l_wrist"),
    ("r_hip", "r_knee"),
    ("r_knee", "r_ankle"),
    ("l_hip", "l_knee"),
    ("l_knee", "l_ankle"),
)
# Which body keypoint carries the hands (left, right) and the face, for OpenPose-18.
_HAND_ANCHORS = ("l_wrist", "r_wrist")
_FACE_ANCHOR = "nose"


def translate(pose: Pose, dx: float, dy: float) -> Pose:
    """Shift by (dx, dy) in normalised image units."""
    offset = np.array([dx, dy], dtype=np.float64)
    return pose.map_xy(lambda xy: xy + offset)


def scale(pose: Pose, factor: float, center: Sequence[float] = (0.5, 0.5)) -> Pose:
    """Scale by ``factor`` about ``center`` (normalised); the centre stays where it is."""
    if not math.isfinite(factor) or factor <= 0:
        raise PoseError(f"scale factor must be a positive finite number, got {factor}")
    c = np.asarray(center, dtype=np.float64)
    return pose.map_xy(lambda xy: c + (xy - c) * factor)


def _rotation_map(degrees: float, center: np.ndarray, aspect: float):
    """(N, 2) -> (N, 2) rotation about ``center`` in pixel-proportional coordinates."""
    if aspect <= 0:
        raise PoseError(f"aspect (width / height) must be positive, got {aspect}")
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    stretch = np.array([aspect, 1.0])

    def rotate_points(xy: np.ndarray) -> np.ndarray:
        u = (xy - center) * stretch
        # y points down, so counter-clockwise on screen is (x, y) -> (x cos + y sin, -x sin + y cos).
        turned = np.stack([u[:, 0] * cos + u[:, 1] * sin, -u[:, 0] * sin + u[:, 1] * cos], axis=1)
        return turned / stretch + center

    return rotate_points


def rotate(pose: Pose, degrees: float, center: Sequence[float] = (0.5, 0.5), aspect: float = 1.0) -> Pose:
    """Rotate every point by ``degrees`` (counter-clockwise on screen) about ``center``."""
    return pose.map_xy(_rotation_map(degrees, np.asarray(center, dtype=np.float64), aspect))


def _distal_keypoints(part: Keypoints, joint: int, child: int) -> np.ndarray:
    """Keypoints reachable from ``child`` without passing through ``joint`` (the limb chain)."""
    neighbours: dict[int, set[int]] = {i: set() for i in range(part.skeleton.num_keypoints)}
    for a, b in part.skeleton.edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    if child not in neighbours[joint]:
        raise PoseError(
            f"{part.skeleton.name}: {part.skeleton.keypoints[child]!r} is not connected to "
            f"{part.skeleton.keypoints[joint]!r}, so it is not a limb of that joint"
        )
    seen, frontier = {child}, [child]
    while frontier:
        node = frontier.pop()
        for nxt in neighbours[node] - seen - {joint}:
            seen.add(nxt)
            frontier.append(nxt)
    if joint in seen:
        raise PoseError(f"{part.skeleton.name}: the limb from {part.skeleton.keypoints[joint]!r} closes a loop")
    return np.array(sorted(seen))


def perturb_limb(pose: Pose, joint: str, child: str, degrees: float, aspect: float = 1.0) -> Pose:
    """Turn the limb chain that starts at ``child`` about ``joint`` by ``degrees``.

    The chain is everything distal to the joint: for ``("r_elbow", "r_wrist")`` the wrist
    and, for an OpenPose-18 body, the right hand; for ``("neck", "nose")`` the head and face.
    """
    skeleton = pose.body.skeleton
    j, c = skeleton.index(joint), skeleton.index(child)
    moved = _distal_keypoints(pose.body, j, c)
    turn = _rotation_map(degrees, pose.body.xy[j], aspect)
    body_xy = pose.body.xy.copy()
    body_xy[moved] = turn(body_xy[moved])
    moved_names = {skeleton.keypoints[i] for i in moved}
    carried = skeleton is OPENPOSE_BODY_18
    hands = tuple(
        hand.with_xy(turn(hand.xy)) if carried and anchor in moved_names else hand
        for hand, anchor in zip(pose.hands, _HAND_ANCHORS)
    )
    face = pose.face
    if face is not None and carried and _FACE_ANCHOR in moved_names:
        face = face.with_xy(turn(face.xy))
    return Pose(body=pose.body.with_xy(body_xy), hands=hands, face=face)


def random_limb_perturbation(
    pose: Pose,
    rng: np.random.Generator,
    max_degrees: float,
    chains: Sequence[tuple[str, str]] = LIMB_CHAINS,
    aspect: float = 1.0,
) -> Pose:
    """Turn each chain by an angle drawn uniformly from [-max_degrees, max_degrees]."""
    for joint, child in chains:
        pose = perturb_limb(pose, joint, child, float(rng.uniform(-max_degrees, max_degrees)), aspect)
    return pose


@dataclass(frozen=True)
class CropBox:
    """A pixel-aligned crop of an ``image_height`` x ``image_width`` frame.

    The same box crops the frame (:meth:`crop`) and maps its pose (:meth:`map_pose`), so
    image and pose stay aligned; resizing the crop back to any size keeps them aligned
    because pose coordinates are normalised.
    """

    top: int
    left: int
    height: int
    width: int
    image_height: int
    image_width: int

    def __post_init__(self) -> None:
        if not (
            0 <= self.top
            and 0 <= self.left
            and self.height > 0
            and self.width > 0
            and self.top + self.height <= self.image_height
            and self.left + self.width <= self.image_width
        ):
            raise PoseError(f"crop box {self} does not lie inside a {self.image_height}x{self.image_width} image")

    def crop(self, image: np.ndarray, channels_last: bool = True) -> np.ndarray:
        """Crop an (H, W, C) array, or with ``channels_last=False`` any (..., H, W) array or tensor."""
        size = tuple(image.shape[:2] if channels_last else image.shape[-2:])
        if size != (self.image_height, self.image_width):
            raise PoseError(f"crop box is for {self.image_height}x{self.image_width} images, got {size[0]}x{size[1]}")
        rows = slice(self.top, self.top + self.height)
        cols = slice(self.left, self.left + self.width)
        return image[rows, cols] if channels_last else image[..., rows, cols]

    def map_pose(self, pose: Pose) -> Pose:
        """Express ``pose`` (normalised to the full frame) in the cropped frame."""
        size = np.array([self.image_width, self.image_height], dtype=np.float64)
        origin = np.array([self.left, self.top], dtype=np.float64)
        crop_size = np.array([self.width, self.height], dtype=np.float64)
        return pose.map_xy(lambda xy: (xy * size - origin) / crop_size)


def random_crop(
    pose: Pose, rng: np.random.Generator, height: int, width: int, min_scale: float = 0.8
) -> tuple[CropBox, Pose]:
    """Training crop: a box of ``s`` x the frame (s ~ U[min_scale, 1], aspect kept), placed uniformly."""
    if not 0 < min_scale <= 1:
        raise PoseError(f"min_scale must be in (0, 1], got {min_scale}")
    s = float(rng.uniform(min_scale, 1.0))
    crop_h, crop_w = max(1, round(s * height)), max(1, round(s * width))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    box = CropBox(top, left, crop_h, crop_w, height, width)
    return box, box.map_pose(pose)


def _check_same_layout(a: Pose, b: Pose) -> None:
    names_a = [p.skeleton.name for p in a.parts]
    names_b = [p.skeleton.name for p in b.parts]
    if names_a != names_b:
        raise PoseError(f"cannot interpolate poses with different parts: {names_a} vs {names_b}")


def _interpolate_part(a: Keypoints, b: Keypoints, t: float) -> Keypoints:
    # A point missing at one end stays where it is seen and fades in or out with its score.
    xa = np.where(a.visible[:, None] | ~b.visible[:, None], a.xy, b.xy)
    xb = np.where(b.visible[:, None] | ~a.visible[:, None], b.xy, a.xy)
    return Keypoints(a.skeleton, (1 - t) * xa + t * xb, (1 - t) * a.scores + t * b.scores)


def interpolate(a: Pose, b: Pose, t: float) -> Pose:
    """Linear blend: ``t=0`` gives ``a``, ``t=1`` gives ``b``."""
    if not 0.0 <= t <= 1.0:
        raise PoseError(f"interpolation weight must be in [0, 1], got {t}")
    _check_same_layout(a, b)
    return Pose(
        body=_interpolate_part(a.body, b.body, t),
        hands=tuple(_interpolate_part(ha, hb, t) for ha, hb in zip(a.hands, b.hands)),
        face=None if a.face is None else _interpolate_part(a.face, b.face, t),
    )


def interpolate_sequence(
    keyframes: Sequence[Pose], n_frames: int, easing: Literal["linear", "cosine"] = "linear"
) -> PoseSequence:
    """``n_frames`` poses passing through ``keyframes`` (evenly spaced, first and last included)."""
    if len(keyframes) == 0:
        raise PoseError("need at least one keyframe to interpolate a sequence")
    if n_frames < 1:
        raise PoseError(f"n_frames must be at least 1, got {n_frames}")
    if easing not in ("linear", "cosine"):
        raise PoseError(f"unknown easing {easing!r}; use 'linear' or 'cosine'")
    if len(keyframes) == 1:
        return PoseSequence(tuple(keyframes) * n_frames)
    frames = []
    for i in range(n_frames):
        position = i / (n_frames - 1) * (len(keyframes) - 1) if n_frames > 1 else 0.0
        k = min(int(position), len(keyframes) - 2)
        t = position - k
        if easing == "cosine":
            t = (1 - math.cos(math.pi * t)) / 2
        frames.append(interpolate(keyframes[k], keyframes[k + 1], t))
    return PoseSequence(tuple(frames))
