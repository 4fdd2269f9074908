"""Skeleton graphs and pose containers shared by bodies, hands, faces and other skeletons.

A :class:`Skeleton` is just named nodes, edges and colours plus a drawing style, so the
same types describe an OpenPose-18 body, a 21-point hand, a 68-point face or the graph of
a non-human subject. Coordinates are normalised: x right and y down, in [0, 1] of the
image width and height. A keypoint whose score is not above :data:`SCORE_THRESHOLD` is missing (as in DWPose).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

SCORE_THRESHOLD = 0.3  # DWPose marks points below this score as missing.

RGB = tuple[int, int, int]


class PoseError(ValueError):
    """A pose that the study cannot use; the message names what is wrong."""


@dataclass(frozen=True)
class Skeleton:
    name: str
    keypoints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]  # 0-based keypoint indices
    edge_colors: tuple[RGB, ...]
    keypoint_colors: tuple[RGB, ...]
    style: Literal["body", "hand", "face", "graph"] = "graph"

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if len(self.edge_colors) != len(self.edges):
            raise PoseError(f"skeleton {self.name!r}: {len(self.edges)} edges but {len(self.edge_colors)} edge colours")
        if len(self.keypoint_colors) != n:
            raise PoseError(f"skeleton {self.name!r}: {n} keypoints but {len(self.keypoint_colors)} keypoint colours")
        for a, b in self.edges:
            if not (0 <= a < n and 0 <= b < n):
                raise PoseError(f"skeleton {self.name!r}: edge ({a}, {b}) names a keypoint outside 0..{n - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise PoseError(f"skeleton {self.name!r} has no keypoint {name!r}") from None


# --- OpenPose-18 body, as DWPose hands it to Moore-AnimateAnyone -------------------------
_OPENPOSE_COLORS: tuple[RGB, ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
# The 17 drawn limbs, 1-based as published, converted to 0-based below.
_OPENPOSE_LIMBS_1BASED = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
)

OPENPOSE_BODY_18 = Skeleton(
    name="openpose_body_18",
    keypoints=(
        "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
        "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
    ),
    edges=tuple((a - 1, b - 1) for a, b in _OPENPOSE_LIMBS_1BASED),
    edge_colors=_OPENPOSE_COLORS[:17],
    keypoint_colors=_OPENPOSE_COLORS,
    style="body",
)

_HAND_EDGES = tuple(
    edge
    for finger in range(5)
    for edge in zip((0, *range(4 * finger + 1, 4 * finger + 4)), range(4 * finger + 1, 4 * finger + 5))
)


def _hsv_rgb(hue: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue, 1.0, 1.0)
    return (round(r * 255), round(g * 255), round(b * 255))


HAND_21 = Skeleton(
    name="hand_21",
    keypoints=("wrist", *(f"{f}_{j}" for f in ("thumb", "index", "middle", "ring", "pinky") for j in range(1, 5))),
    edges=_HAND_EDGES,
    edge_colors=tuple(_hsv_rgb(i / len(_HAND_EDGES)) for i in range(len(_HAND_EDGES))),
    keypoint_colors=((0, 0, 255),) * 21,
    style="hand",
)

# iBUG 68-point layout: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
_FACE_CONTOURS = (
    (range(0, 17), False), (range(17, 22), False), (range(22, 27), False), (range(27, 31), False),
    (range(31, 36), False), (range(36, 42), True), (range(42, 48), True), (range(48, 60), True),
    (range(60, 68), True),
)
_FACE_EDGES = tuple(
    edge
    for contour, closed in _FACE_CONTOURS
    for edge in list(zip(contour[:-1], contour[1:])) + ([(contour[-1], contour[0])] if closed else [])
)
FACE_68 = Skeleton(
    name="face_68",
    keypoints=tuple(f"face_{i}" for i in range(68)),
    edges=_FACE_EDGES,
    edge_colors=((255, 255, 255),) * len(_FACE_EDGES),
    keypoint_colors=((255, 255, 255),) * 68,
    style="face",
)


@dataclass(frozen=True)
class Keypoints:
    """One instance of a skeleton: normalised ``xy`` (K, 2) and ``scores`` (K,) in [0, 1]."""

    skeleton: Skeleton
    xy: np.ndarray
    scores: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float64)
        scores = np.ones(len(xy)) if self.scores is None else np.asarray(self.scores, dtype=np.float64)
        name, k = self.skeleton.name, self.skeleton.num_keypoints
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise PoseError(f"{name}: keypoints must have shape (K, 2), got {xy.shape}")
        if xy.shape[0] != k:
            raise PoseError(f"{name}: expected {k} keypoints, got {xy.shape[0]}")
        if scores.shape != (k,):
            raise PoseError(f"{name}: expected {k} scores, got shape {scores.shape}")
        if not np.isfinite(xy).all():
            raise PoseError(f"{name}: keypoint coordinates contain NaN or inf")
        if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
            raise PoseError(f"{name}: scores must be finite and within [0, 1]")
        xy.setflags(write=False)
        scores.setflags(write=False)
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "scores", scores)

    @property
    def visible(self) -> np.ndarray:
        return self.scores > SCORE_THRESHOLD  # DWPose keeps points scoring above 0.3

    def with_xy(self, xy: np.ndarray) -> "Keypoints":
        return Keypoints(self.skeleton, xy, self.scores)


@dataclass(frozen=True)
class Pose:
    """A person (or any subject): a main skeleton plus optional hands (left, right) and face."""

    body: Keypoints
    hands: tuple[Keypoints, ...] = ()
    face: Keypoints | None = None

    @property
    def parts(self) -> tuple[Keypoints, ...]:
        return (self.body, *self.hands, *(() if self.face is None else (self.face,)))

    def map_xy(self, fn) -> "Pose":
        """Apply ``fn`` (an (N, 2) → (N, 2) map) to every part's coordinates."""
        return Pose(
            body=self.body.with_xy(fn(self.body.xy)),
            hands=tuple(h.with_xy(fn(h.xy)) for h in self.hands),
            face=None if self.face is None else self.face.with_xy(fn(self.face.xy)),
        )

    @classmethod
    def from_body(cls, xy: Sequence, scores: Sequence | None = None, skeleton: Skeleton = OPENPOSE_BODY_18) -> "Pose":
        return cls(Keypoints(skeleton, np.asarray(xy), None if scores is None else np.asarray(scores)))


@dataclass(frozen=True)
class PoseSequence:
    """Frames of one subject; every frame uses the same skeletons."""

    frames: tuple[Pose, ...]

    def __post_init__(self) -> None:
        if len(self.frames) == 0:
            raise PoseError("pose sequence is empty")
        layout = _layout(self.frames[0])
        for i, frame in enumerate(self.frames[1:], start=1):
            if _layout(frame) != layout:
                raise PoseError(f"pose sequence frame {i} uses skeletons {_layout(frame)}, frame 0 uses {layout}")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Pose:
        return self.frames[i]

    def body_array(self) -> np.ndarray:
        """(T, K, 3) array of body x, y, score."""
        return np.stack([np.concatenate([f.body.xy, f.body.scores[:, None]], axis=1) for f in self.frames])


def _layout(pose: Pose) -> tuple[str, ...]:
    return tuple(p.skeleton.name for p in pose.parts)
