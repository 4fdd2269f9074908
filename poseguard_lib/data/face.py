"""Synthetic talking faces: 68 iBUG landmarks from expression parameters, and their images.

The facial-landmark experiment (AniPortrait-style guidance) needs faces whose landmarks
are known exactly. :func:`face_landmarks` places a rigid 3D template of the 68 points,
deforms it with a few expression controls (mouth open, smile, brows, eyes), turns it
(yaw, roll) and projects it orthographically into the image. :func:`render_face` paints
a shaded face that follows those landmarks; :func:`draw_face_contours` draws them the way
AniPortrait draws its condition image: contours only, 2 px lines on black, one fixed
colour per feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from poseguard_lib.data.appearance import RGB, Appearance
from poseguard_lib.data.render import SUPERSAMPLE, check_image_size
from poseguard_lib.pose.skeleton import FACE_68, Keypoints, PoseError

_SHIFT = 4

# iBUG-68 features. Right/left are the subject's: the right eye (36-41) is on the image's
# left for a face looking at the camera. Eyes and lips are closed loops.
JAW = tuple(range(0, 17))
RIGHT_BROW, LEFT_BROW = tuple(range(17, 22)), tuple(range(22, 27))
NOSE_BRIDGE, NOSE_BASE = tuple(range(27, 31)), tuple(range(31, 36))
RIGHT_EYE, LEFT_EYE = tuple(range(36, 42)), tuple(range(42, 48))
OUTER_LIPS, INNER_LIPS = tuple(range(48, 60)), tuple(range(60, 68))

# Contour polylines and their colours (RGB). Oval, eyes, brows and lip quarters use
# AniPortrait's values (src/utils/draw_util.py); AniPortrait draws no nose, its colour is ours.
_NOSE_COLOUR: RGB = (200, 10, 200)
_CONTOURS: tuple[tuple[tuple[int, ...], RGB], ...] = (
    (JAW, (10, 200, 10)),
    (RIGHT_BROW, (10, 220, 180)),
    (LEFT_BROW, (180, 220, 10)),
    (RIGHT_EYE + RIGHT_EYE[:1], (10, 200, 180)),
    (LEFT_EYE + LEFT_EYE[:1], (180, 200, 10)),
    (NOSE_BRIDGE, _NOSE_COLOUR),
    (NOSE_BASE, _NOSE_COLOUR),
    ((48, 49, 50, 51), (20, 80, 100)),  # outer lip, top, image-left half
    ((51, 52, 53, 54), (80, 100, 20)),  # outer lip, top, image-right half
    ((48, 59, 58, 57), (10, 180, 20)),  # outer lip, bottom, image-left half
    ((57, 56, 55, 54), (20, 10, 180)),  # outer lip, bottom, image-right half
    ((60, 61, 62), (120, 100, 200)),  # inner lip, top left
    ((62, 63, 64), (150, 120, 100)),  # inner lip, top right
    ((60, 67, 66), (100, 100, 30)),  # inner lip, bottom left
    ((66, 65, 64), (100, 150, 50)),  # inner lip, bottom right
)
CONTOUR_THICKNESS = 2


@dataclass(frozen=True)
class FaceParams:
    """Expression and placement of one synthetic face.

    ``center`` and ``scale`` are normalised image units: ``scale`` is the half-width of a
    face seen from the front as a fraction of the image width. ``aspect`` (width / height)
    keeps the face round on non-square images. Positive ``yaw`` turns the face toward the
    image's right; ``roll`` is counter-clockwise on screen; both in degrees.
    """

    mouth_open: float = 0.0  # 0 closed .. 1 wide open
    smile: float = 0.0  # -1 frown .. 1 smile
    brow_raise: float = 0.0  # -1 frown .. 1 surprised
    eye_openness: float = 1.0  # 0 shut .. 1 open
    yaw: float = 0.0
    roll: float = 0.0
    center: tuple[float, float] = (0.5, 0.45)
    scale: float = 0.25
    aspect: float = 1.0

    def __post_init__(self) -> None:
        ranges = {
            "mouth_open": (0.0, 1.0), "smile": (-1.0, 1.0), "brow_raise": (-1.0, 1.0), "eye_openness": (0.0, 1.0),
            "yaw": (-45.0, 45.0), "roll": (-45.0, 45.0),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise PoseError(f"face {name} must be within [{low}, {high}], got {value!r}")
        if not (len(self.center) == 2 and all(math.isfinite(c) for c in self.center)):
            raise PoseError(f"face center must be two finite numbers, got {self.center!r}")
        if not 0 < self.scale <= 1:
            raise PoseError(f"face scale must be within (0, 1], got {self.scale}")
        if not self.aspect > 0:
            raise PoseError(f"face aspect must be positive, got {self.aspect}")


def _template(p: FaceParams) -> np.ndarray:
    """(68, 3) points in face units (half-width 1): x to the image right, y down, z toward the camera."""
    pts = np.zeros((68, 3))
    opening = 0.32 * p.mouth_open
    # Jaw: a U from the right temple round the chin; the chin drops as the mouth opens.
    phi = np.linspace(0.0, np.pi, 17)
    pts[0:17] = np.stack(
        [-np.cos(phi) * (1.0 - 0.12 * np.sin(phi)), -0.22 + 1.2 * np.sin(phi) ** 1.3 + opening * 0.7 * np.sin(phi) ** 4,
         0.25 + 0.5 * np.sin(phi)], axis=1)
    # Brows: arched, lifted by brow_raise.
    arch = np.sin(np.linspace(0.15, np.pi - 0.6, 5))
    brow_y = -0.6 - 0.1 * arch - 0.14 * p.brow_raise
    brow_x = np.linspace(-0.86, -0.2, 5)
    pts[17:22] = np.stack([brow_x, brow_y, 0.5 + 0.2 * (1 - np.abs(brow_x))], axis=1)
    pts[22:27] = pts[17:22][::-1] * (-1, 1, 1)
    # Nose: bridge down the middle, then the base from right to left nostril.
    pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.4, 0.06, 4), np.linspace(0.7, 0.95, 4)], axis=1)
    pts[31:36] = np.stack(
        [np.linspace(-0.22, 0.22, 5), [0.15, 0.19, 0.21, 0.19, 0.15], [0.68, 0.76, 0.8, 0.76, 0.68]], axis=1
    )
    # Eyes: corners, two upper-lid and two lower-lid points each, lids closing with eye_openness.
    lid = 0.09 * p.eye_openness
    right_eye = [(-0.62, 0.0), (-0.49, -lid), (-0.35, -lid), (-0.23, 0.0), (-0.35, 0.85 * lid), (-0.49, 0.85 * lid)]
    pts[36:42] = [(x, -0.3 + y, 0.55) for x, y in right_eye]
    left_order = (3, 2, 1, 0, 5, 4)  # mirror, so 42 is the inner corner and 45 the outer
    pts[42:48] = [(-right_eye[i][0], -0.3 + right_eye[i][1], 0.55) for i in left_order]
    # Mouth: corners widen and rise with a smile; lower lips follow the opening.
    half = 0.36 + 0.06 * p.smile
    corner = 0.52 - 0.08 * p.smile
    outer = [(-1.0, 0.0), (-0.6, -0.08), (-0.25, -0.11), (0.0, -0.09), (0.25, -0.11), (0.6, -0.08), (1.0, 0.0)]
    pts[48:55] = [(half * x, (corner if abs(x) == 1 else 0.52) + y, 0.62 + 0.12 * (1 - abs(x))) for x, y in outer]
    lower = [(0.6, 0.1), (0.25, 0.14), (0.0, 0.15), (-0.25, 0.14), (-0.6, 0.1)]
    pts[55:60] = [(half * x, 0.52 + y + opening * (1 - 0.5 * abs(x)), 0.64 + 0.12 * (1 - abs(x))) for x, y in lower]
    pts[60] = (-0.86 * half, corner, 0.62)
    pts[61:64] = [(half * x, 0.5, 0.72) for x in (-0.3, 0.0, 0.3)]
    pts[64] = (0.86 * half, corner, 0.62)
    pts[65:68] = [(half * x, 0.54 + opening * (1 - 0.5 * abs(x)), 0.72) for x in (0.3, 0.0, -0.3)]
    return pts


def face_landmarks(params: FaceParams) -> Keypoints:
    """The 68 iBUG landmarks of a face with these parameters (normalised image coordinates)."""
    if not isinstance(params, FaceParams):
        raise TypeError(f"params must be FaceParams, got {type(params).__name__}")
    pts = _template(params)
    yaw, roll = math.radians(params.yaw), math.radians(params.roll)
    x = pts[:, 0] * math.cos(yaw) + pts[:, 2] * math.sin(yaw)
    y = pts[:, 1]
    # Counter-clockwise on screen with y pointing down.
    xr = x * math.cos(roll) + y * math.sin(roll)
    yr = -x * math.sin(roll) + y * math.cos(roll)
    cx, cy = params.center
    xy = np.stack([cx + params.scale * xr, cy + params.scale * params.aspect * yr], axis=1)
    return Keypoints(FACE_68, xy)


def _check_landmarks(landmarks: Keypoints) -> None:
    if not isinstance(landmarks, Keypoints) or landmarks.skeleton.name != FACE_68.name:
        name = landmarks.skeleton.name if isinstance(landmarks, Keypoints) else type(landmarks).__name__
        raise PoseError(f"expected {FACE_68.name} landmarks, got {name}")


def draw_face_contours(landmarks: Keypoints, height: int, width: int, thickness: int = CONTOUR_THICKNESS) -> np.ndarray:
    """AniPortrait-style condition image: feature contours on black, RGB uint8 (H, W, 3).

    Lines are ``thickness`` pixels at the output size (AniPortrait draws 2 px at 512 x 512).
    Segments touching a landmark scored below the threshold are left out.
    """
    _check_landmarks(landmarks)
    check_image_size(height, width)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    pixels = np.round(landmarks.xy * (width, height) * (1 << _SHIFT)).astype(np.int32)
    seen = landmarks.visible
    for indices, colour in _CONTOURS:
        for a, b in zip(indices[:-1], indices[1:]):
            if seen[a] and seen[b]:
                cv2.line(canvas, tuple(pixels[a]), tuple(pixels[b]), colour, thickness, cv2.LINE_8, _SHIFT)
    return canvas


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)  # type: ignore[return-value]


def render_face(landmarks: Keypoints, appearance: Appearance, height: int, width: int) -> np.ndarray:
    """A shaded portrait whose eyes, brows, nose, lips and outline sit on ``landmarks``."""
    _check_landmarks(landmarks)
    check_image_size(height, width)
    if not isinstance(appearance, Appearance):
        raise TypeError(f"appearance must be an Appearance, got {type(appearance).__name__}")
    if not landmarks.visible.all():
        raise PoseError("render_face needs all 68 landmarks scored above the threshold")
    look = appearance
    big_h, big_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    canvas = np.empty((big_h, big_w, 3), dtype=np.uint8)
    canvas[:] = look.background
    p = landmarks.xy * (big_w, big_h)

    def fill(points: np.ndarray, colour: RGB, target: np.ndarray = canvas) -> None:
        cv2.fillPoly(target, [np.round(points * (1 << _SHIFT)).astype(np.int32)], colour, cv2.LINE_8, _SHIFT)

    def stroke(points: np.ndarray, colour: RGB, width_px: float) -> None:
        pts = np.round(points * (1 << _SHIFT)).astype(np.int32)
        cv2.polylines(canvas, [pts], False, colour, max(1, int(round(width_px))), cv2.LINE_AA, _SHIFT)

    # The face's own frame: across (temple to temple) and up, and its size.
    across = p[16] - p[0]
    across = across / max(float(np.hypot(*across)), 1e-6)
    up = np.array([across[1], -across[0]])
    tilt = math.degrees(math.atan2(across[1], across[0]))  # roll, as OpenCV's ellipse angle
    temples = (p[0] + p[16]) / 2
    eye_line = p[[36, 39, 42, 45]].mean(axis=0)
    unit = max(float((eye_line - p[30]) @ up) / 0.36, 1e-6)  # one template unit (front-view half-width)
    turn = float(np.clip((p[30] - temples) @ across / unit, -1, 1))  # roughly sin(yaw), from the nose tip
    skull = temples - across * turn * 0.35 * unit

    # Forehead: the jaw reflected above the temple line, flattened into a dome.
    along = (p[:17] - temples) @ across
    forehead = temples + np.outer(along * 1.02, across) + np.outer(0.75 * unit * np.sin(np.linspace(0, np.pi, 17)), up)
    head = np.concatenate([p[:17], forehead[::-1]])

    # Shoulders and neck in the top colour and skin, the hair's mass behind the head.
    shoulders = temples - up * 2.4 * unit
    cv2.ellipse(canvas, tuple(int(v) for v in shoulders), (int(2.4 * unit), int(unit)), tilt, 0, 360, look.top, -1)
    neck = np.array([temples + across * s * 0.45 * unit - up * 0.9 * unit for s in (-1, 1)]
                    + [shoulders + across * s * 0.55 * unit + up * 0.2 * unit for s in (1, -1)])
    fill(neck, _shade(look.skin, 0.85))
    arc = np.linspace(0, np.pi, 17)
    dome = skull + np.outer(1.12 * unit * np.cos(arc), across) + np.outer(1.05 * unit * np.sin(arc), up)
    drop = {"short": 0.15, "bun": 0.15, "bob": 1.0, "long": 1.9}[look.hair_style]
    ends = [skull - up * drop * unit + across * s * (1.12 + 0.1 * min(drop, 1.0)) * unit for s in (-1, 1)]
    fill(np.concatenate([dome, ends]), look.hair)
    if look.hair_style == "bun":
        top = skull + up * 1.1 * unit - across * turn * 0.5 * unit
        cv2.circle(canvas, tuple(int(v) for v in top), int(0.45 * unit), look.hair, -1)
    # Ears at the jaw's upper ends, then the face itself.
    for i, side in ((1, -1), (15, 1)):
        ear = p[i] + across * side * 0.08 * unit
        cv2.ellipse(canvas, tuple(int(v) for v in ear), (int(0.14 * unit) + 1, int(0.24 * unit) + 1), tilt, 0, 360,
                    _shade(look.skin, 0.9), -1)
    # The skin, then the fringe over the top of the forehead.
    fill(head, look.skin)
    hairline = temples + np.outer(along * 1.02, across) + np.outer(0.42 * unit * np.sin(np.linspace(0, np.pi, 17)), up)
    fill(np.concatenate([hairline, forehead[::-1] + up * 0.04 * unit]), look.hair)

    # Shading: the cheek turned away from the light and the viewer is darker.
    mask = np.zeros((big_h, big_w), dtype=np.uint8)
    fill(head, 1, mask)
    ys, xs = np.mgrid[0:big_h, 0:big_w]
    offset = ((xs - skull[0]) * across[0] + (ys - skull[1]) * across[1]) / unit
    darkness = np.clip(0.22 * (offset * -np.sign(turn or 1.0) * (0.4 + abs(turn)) - 0.1), 0, 0.25)
    shaded = canvas * (1 - darkness[..., None] * mask[..., None])
    canvas[:] = np.clip(shaded, 0, 255).astype(np.uint8)

    line = max(1.0, 0.07 * unit)
    for indices in (RIGHT_EYE, LEFT_EYE):
        eye = p[list(indices)]
        fill(eye, (245, 245, 240))
        iris = np.zeros((big_h, big_w), dtype=np.uint8)
        cv2.circle(iris, tuple(int(v) for v in eye.mean(axis=0)), max(1, int(0.09 * unit)), 1, -1)
        eye_mask = np.zeros_like(iris)
        fill(eye, 1, eye_mask)
        canvas[(iris & eye_mask).astype(bool)] = (60, 45, 35)
        stroke(eye[[0, 1, 2, 3]], (40, 30, 30), line)
    for indices in (RIGHT_BROW, LEFT_BROW):
        stroke(p[list(indices)], _shade(look.hair, 0.8), 1.6 * line)
    stroke(p[list(NOSE_BRIDGE)], _shade(look.skin, 0.8), 0.8 * line)
    stroke(p[list(NOSE_BASE)], _shade(look.skin, 0.65), line)
    fill(p[list(OUTER_LIPS)], (min(255, look.skin[0] // 2 + 100), look.skin[1] // 2 + 20, look.skin[2] // 2 + 25))
    fill(p[list(INNER_LIPS)], (70, 25, 30))
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
