"""Draw a clothed synthetic person from an OpenPose-18 body pose.

This stands in for the UBC-Fashion videos: the generator must learn to copy a person's
look from a reference frame and move it to a new pose, so frames need a recognisable
identity (skin, hair, garments with patterns) whose pixels follow the skeleton.

The person is painted back to front in a few flat-coloured layers: far limbs, legs and
bottom garment, torso with the top, head with hair, near limbs. Which side is far and
whether we see the face or the back of the head are read off the 2D keypoints the way a
viewer would: the left/right order of shoulders and eyes, where the nose sits between
the ears, which ear is visible. Everything is drawn at ``SUPERSAMPLE`` times the size
with OpenCV polygon fills and shrunk with area averaging, which anti-aliases the edges.
Body proportions are expressed in units of the torso length (neck to mid-hip), so the
person scales with the pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from poseguard_lib.data.appearance import RGB, Appearance
from poseguard_lib.pose.skeleton import HAND_21, OPENPOSE_BODY_18, Pose, PoseError

SUPERSAMPLE = 2
_SHIFT = 4  # fractional bits of the fixed-point coordinates handed to OpenCV
_ARC_POINTS = 7
_ELLIPSE_POINTS = 18
_ARC = np.linspace(-1.0, 1.0, _ARC_POINTS)

# OpenPose-18 indices.
NOSE, NECK = 0, 1
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = 2, 3, 4, 5, 6, 7
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 8, 9, 10, 11, 12, 13
R_EYE, L_EYE, R_EAR, L_EAR = 14, 15, 16, 17
_ARM = {"right": (R_SHOULDER, R_ELBOW, R_WRIST), "left": (L_SHOULDER, L_ELBOW, L_WRIST)}
_LEG = {"right": (R_HIP, R_KNEE, R_ANKLE), "left": (L_HIP, L_KNEE, L_ANKLE)}

# Proportions in torso lengths (neck keypoint to mid-hip). The keypoint spans of a person
# facing the camera match the adult figure of ``poseguard_lib.pose.kinematics``.
_SHOULDER_SPAN, _HIP_SPAN, _EYE_SPAN = 0.8, 0.4, 0.2
_UPPER_ARM, _FOREARM, _HAND = 0.085, 0.07, 0.07
_FINGER = 0.035  # radius, when the fingers are drawn
_THIGH, _KNEE, _ANKLE = 0.13, 0.09, 0.06
_NECK_RADIUS = 0.07
_HEAD_RX, _HEAD_RY = 0.17, 0.21
_CHEST_HALF_DEPTH, _HIP_HALF_DEPTH = 0.24, 0.22  # torso half-width seen from the side
_FLOOR_LEVEL = 0.7  # fraction of the image height where wall meets floor
_EYE_COLOUR: RGB = (35, 28, 28)
_LIP_COLOUR: RGB = (170, 70, 70)


def check_image_size(height: int, width: int) -> None:
    """Raise ValueError naming ``height`` or ``width`` unless both are positive integers."""
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates to OpenCV's fixed-point int32 polygon."""
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _capsule(p: np.ndarray, q: np.ndarray, rp: float, rq: float) -> np.ndarray:
    """Convex outline of two discs (radii ``rp`` at ``p``, ``rq`` at ``q``) and their outer tangents."""
    d = q - p
    length = float(np.hypot(*d))
    if length <= abs(rp - rq) + 1e-6:
        return _ellipse(p if rp >= rq else q, max(rp, rq), max(rp, rq), 0.0)
    base = np.arctan2(d[1], d[0])
    tangent = np.arccos((rp - rq) / length)  # angle of the tangent points from the axis
    # Arc round q from -tangent to +tangent, then round p from tangent to 2 pi - tangent.
    angles = base + np.concatenate([tangent * _ARC, np.pi + (np.pi - tangent) * _ARC])
    outline = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    outline[:_ARC_POINTS] = q + rq * outline[:_ARC_POINTS]
    outline[_ARC_POINTS:] = p + rp * outline[_ARC_POINTS:]
    return outline


_UNIT_CIRCLE = np.stack(
    [np.cos(np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)),
     np.sin(np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False))],
    axis=1,
)


def _ellipse(centre: np.ndarray, rx: float, ry: float, angle: float) -> np.ndarray:
    """Ellipse outline with half-axes ``rx`` (along ``angle`` radians) and ``ry``."""
    c, s = np.cos(angle), np.sin(angle)
    local = _UNIT_CIRCLE * (rx, ry)
    return centre + local @ np.array([[c, s], [-s, c]])


def _hull(points: list[np.ndarray]) -> np.ndarray:
    return cv2.convexHull(np.asarray(points, dtype=np.float32)).reshape(-1, 2).astype(np.float64)


@lru_cache(maxsize=64)
def _studio(background: RGB, floor_shade: float, height: int, width: int) -> np.ndarray:
    """Flat studio wall, a slightly darker floor and a soft line where they meet."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = background
    if floor_shade < 1.0:
        floor = int(round(_FLOOR_LEVEL * height))
        image[floor:] = np.round(np.asarray(background) * floor_shade).astype(np.uint8)
        line = max(1, height // 128)
        image[floor : floor + line] = np.round(np.asarray(background) * (floor_shade - 0.06)).astype(np.uint8)
    image.setflags(write=False)
    return image


@lru_cache(maxsize=256)
def _pattern_tile(colour: RGB, accent: RGB, pattern: str, period: int, height: int, width: int) -> np.ndarray:
    """A (height + period, width + period) texture; a window of it is shifted to follow the torso."""
    ys, xs = np.mgrid[0 : height + period, 0 : width + period]
    half = period / 2
    if pattern == "stripes":
        use_accent = (ys // half).astype(int) % 2 == 1
    elif pattern == "checks":
        use_accent = ((ys // half).astype(int) + (xs // half).astype(int)) % 2 == 1
    elif pattern == "dots":
        dy, dx = (ys % period) - half, (xs % period) - half
        use_accent = dy * dy + dx * dx <= (0.28 * period) ** 2
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    tile = np.where(use_accent[..., None], np.asarray(accent, np.uint8), np.asarray(colour, np.uint8))
    tile.setflags(write=False)
    return tile


@dataclass(frozen=True)
class _Body:
    """Keypoints in (supersampled) pixels plus what the drawing reads off them."""

    xy: np.ndarray  # (18, 2) pixels
    seen: np.ndarray  # (18,) bool
    torso: float  # torso length in pixels: the unit of every proportion
    down: np.ndarray  # unit vector from neck to hips
    right: np.ndarray  # unit vector across the body, image-right when upright
    neck: np.ndarray | None
    hips: np.ndarray | None
    body_facing: float  # cosine of the body's yaw: 1 faces the camera, -1 shows the back
    head_facing: float
    side: int  # +1 when the person faces image right (their left side is far), -1 left, 0 unknown

    def has(self, *indices: int) -> bool:
        return bool(self.seen[list(indices)].all())

    @property
    def sin_yaw(self) -> float:
        return self.side * float(np.sqrt(max(0.0, 1.0 - self.head_facing**2)))

    def far_near(self) -> tuple[str, str]:
        return ("left", "right") if self.side > 0 else ("right", "left")


def _mean_of(xy: np.ndarray, seen: np.ndarray, indices: tuple[int, ...]) -> np.ndarray | None:
    chosen = [i for i in indices if seen[i]]
    return xy[chosen].mean(axis=0) if chosen else None


def _read_body(pose: Pose, height: int, width: int) -> _Body | None:
    if not isinstance(pose, Pose):
        raise PoseError(f"render_person needs a Pose, got {type(pose).__name__}")
    if pose.body.skeleton.name != OPENPOSE_BODY_18.name:
        raise PoseError(
            f"render_person draws the {OPENPOSE_BODY_18.name} body, got skeleton {pose.body.skeleton.name!r}"
        )
    xy = pose.body.xy * (width, height)
    seen = pose.body.visible
    if not seen.any():
        return None
    neck = xy[NECK] if seen[NECK] else _mean_of(xy, seen, (R_SHOULDER, L_SHOULDER))
    hips = _mean_of(xy, seen, (R_HIP, L_HIP))
    spine = hips - neck if neck is not None and hips is not None else np.array([0.0, 0.0])
    torso = float(np.hypot(*spine))
    down = spine / torso if torso > 1e-6 else np.array([0.0, 1.0])
    if torso < 0.04 * height:  # spine unseen or pointing at the camera: assume a person filling the frame
        torso = 0.28 * height
    right = np.array([down[1], -down[0]])

    def across(a: int, b: int) -> float:  # signed left-minus-right distance across the body
        return float((xy[b] - xy[a]) @ right)

    if seen[[R_SHOULDER, L_SHOULDER]].all():
        body_facing = across(R_SHOULDER, L_SHOULDER) / (_SHOULDER_SPAN * torso)
    elif seen[[R_HIP, L_HIP]].all():
        body_facing = across(R_HIP, L_HIP) / (_HIP_SPAN * torso)
    else:
        body_facing = None

    face_seen = seen[[NOSE, R_EYE, L_EYE]]
    if not face_seen.any():
        head_facing = -1.0
    elif seen[[R_EYE, L_EYE]].all():
        head_facing = across(R_EYE, L_EYE) / (_EYE_SPAN * torso)
    else:
        head_facing = 0.2  # a profile: nose and at most one eye
    head_facing = float(np.clip(head_facing, -1.0, 1.0))
    body_facing = head_facing if body_facing is None else float(np.clip(body_facing, -1.0, 1.0))

    # Which way the person faces across the image: the nose leads the ears and eyes.
    side = 0
    behind_nose = _mean_of(xy, seen, (R_EAR, L_EAR))
    if behind_nose is None:
        behind_nose = _mean_of(xy, seen, (R_EYE, L_EYE))
    if seen[NOSE] and behind_nose is not None:
        lead = float((xy[NOSE] - behind_nose) @ right)
        if abs(lead) > 0.15 * _HEAD_RX * torso:
            side = 1 if lead > 0 else -1
    elif seen[R_EAR] != seen[L_EAR]:  # only the near ear is visible
        side = -1 if seen[L_EAR] else 1
    return _Body(xy, seen, torso, down, right, neck, hips, body_facing, head_facing, side)


class _Painter:
    """Paints one person onto a supersampled canvas, layer by layer."""

    def __init__(self, canvas: np.ndarray, look: Appearance, body: _Body,
                 hands: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
        self.canvas = canvas
        self.look = look
        self.body = body
        self.hands = hands or {}  # side -> (pixel keypoints, visible): the fingers to draw, if any
        self.t = body.torso * look.build  # thickness unit
        height, width = canvas.shape[:2]
        self._mask = np.zeros((height, width), dtype=np.uint8)
        self._top_fill: np.ndarray | RGB = look.top
        if look.top_pattern != "plain":
            period = max(4, int(round(0.06 * height * look.pattern_scale)))
            tile = _pattern_tile(look.top, look.top_accent, look.top_pattern, period, height, width)
            anchor = body.neck if body.neck is not None else body.xy[body.seen].mean(axis=0)
            oy, ox = (-int(round(anchor[1]))) % period, (-int(round(anchor[0]))) % period
            self._top_fill = tile[oy : oy + height, ox : ox + width]

    # -- primitives -------------------------------------------------------------------
    def fill(self, polygons: list[np.ndarray], fill: np.ndarray | RGB) -> None:
        if not polygons:
            return
        if isinstance(fill, np.ndarray):  # textured: rasterise a mask, copy the texture through it
            self._mask.fill(0)
            for polygon in polygons:
                cv2.fillConvexPoly(self._mask, _fixed(polygon), 1, cv2.LINE_8, _SHIFT)
            np.copyto(self.canvas, fill, where=self._mask.view(bool)[..., None])
        else:
            for polygon in polygons:
                cv2.fillConvexPoly(self.canvas, _fixed(polygon), fill, cv2.LINE_8, _SHIFT)

    def segment(self, a: int, b: int, ra: float, rb: float) -> list[np.ndarray]:
        body = self.body
        return [_capsule(body.xy[a], body.xy[b], ra * self.t, rb * self.t)] if body.has(a, b) else []

    # -- layers -----------------------------------------------------------------------
    def person(self) -> None:
        body = self.body
        far, near = body.far_near()
        profile = abs(body.body_facing) < 0.5
        back_view = body.head_facing < -0.25
        self.shadow()
        if not back_view:
            self.long_hair()
        if profile:
            self.arm(far)
        self.leg(far)
        self.leg(near)
        self.bottom_garment()
        self.neck()
        self.torso()
        if not profile:
            self.arm(far)
        if back_view:
            self.long_hair()
        self.head(back_view)
        self.arm(near)

    def shadow(self) -> None:
        feet = _mean_of(self.body.xy, self.body.seen, (R_ANKLE, L_ANKLE))
        if feet is None or self.look.floor_shade >= 1.0:
            return
        shade = tuple(int(c * self.look.floor_shade * 0.88) for c in self.look.background)
        centre = feet + np.array([0.0, 0.08 * self.body.torso])
        self.fill([_ellipse(centre, 0.42 * self.body.torso, 0.06 * self.body.torso, 0.0)], shade)

    def arm(self, side: str) -> None:
        shoulder, elbow, wrist = _ARM[side]
        look, body = self.look, self.body
        if body.has(elbow, wrist):
            along = body.xy[wrist] - body.xy[elbow]
            along = along / max(float(np.hypot(*along)), 1e-6)
            hand = body.xy[wrist] + along * 0.5 * _HAND * self.t
            angle = float(np.arctan2(along[1], along[0]))
            self.fill([_ellipse(hand, _HAND * self.t, 0.8 * _HAND * self.t, angle)], look.skin)
        self.fill(self.fingers(side), look.skin)
        if look.sleeves == "long":  # the sleeve hides the whole arm
            self.fill(self.segment(shoulder, elbow, _UPPER_ARM * 1.15, _UPPER_ARM * 1.05)
                      + self.segment(elbow, wrist, _FOREARM * 1.15, _FOREARM * 1.05), self._top_fill)
            return
        self.fill(self.segment(shoulder, elbow, _UPPER_ARM, _UPPER_ARM * 0.9)
                  + self.segment(elbow, wrist, _FOREARM, _FOREARM * 0.85), look.skin)
        if look.sleeves == "short" and body.has(shoulder, elbow):
            sleeve_end = body.xy[shoulder] + 0.5 * (body.xy[elbow] - body.xy[shoulder])
            sleeve = _capsule(body.xy[shoulder], sleeve_end, 1.25 * _UPPER_ARM * self.t, 1.15 * _UPPER_ARM * self.t)
            self.fill([sleeve], self._top_fill)

    def fingers(self, side: str) -> list[np.ndarray]:
        if side not in self.hands:
            return []
        xy, seen = self.hands[side]
        radius = _FINGER * self.t
        return [_capsule(xy[a], xy[b], radius, radius) for a, b in HAND_21.edges if seen[a] and seen[b]]

    def leg(self, side: str) -> None:
        hip, knee, ankle = _LEG[side]
        look, body = self.look, self.body
        if look.bottom_type == "trousers":
            self.fill(self.segment(hip, knee, _THIGH * 1.1, _KNEE * 1.15)
                      + self.segment(knee, ankle, _KNEE * 1.15, _ANKLE * 1.3), look.bottom)
        else:
            self.fill(self.segment(hip, knee, _THIGH, _KNEE) + self.segment(knee, ankle, _KNEE, _ANKLE), look.skin)
            if look.bottom_type == "shorts" and body.has(hip, knee):
                hem = body.xy[hip] + 0.55 * (body.xy[knee] - body.xy[hip])
                self.fill([_capsule(body.xy[hip], hem, 1.15 * _THIGH * self.t, 1.1 * _THIGH * self.t)], look.bottom)
        if body.has(ankle):
            lead = abs(body.sin_yaw) * body.side * 0.07 * self.t
            centre = body.xy[ankle] + body.right * lead + body.down * 0.04 * self.t
            length = (0.055 + 0.05 * abs(body.sin_yaw)) * self.t
            angle = float(np.arctan2(body.right[1], body.right[0]))
            self.fill([_ellipse(centre, length, 0.045 * self.t, angle)], look.shoes)

    def _hip_line(self, outward: float, lift: float) -> list[np.ndarray]:
        """Hip keypoints pushed outward across the body and up the spine, plus side-view depth."""
        body = self.body
        hips = body.hips
        points = [body.xy[i] + body.right * sign * outward * self.t - body.down * lift * self.t
                  for i, sign in ((R_HIP, -1), (L_HIP, 1)) if body.seen[i]]
        for sign in (-1, 1):
            points.append(hips + body.right * sign * _HIP_HALF_DEPTH * self.t - body.down * lift * self.t)
        return points

    def bottom_garment(self) -> None:
        body, look = self.body, self.look
        if body.hips is None:
            return
        waist = self._hip_line(outward=0.09, lift=0.12)
        if look.bottom_type == "skirt":
            knees = [body.xy[i] for i in (R_KNEE, L_KNEE) if body.seen[i]]
            if knees:  # the hem ends just above the knees and spreads to cover both
                hem_centre = np.mean(knees, axis=0) - body.down * 0.05 * self.t
            else:
                hem_centre = body.hips + body.down * 0.6 * body.torso
            knee_gap = float(abs((knees[1] - knees[0]) @ body.right)) / 2 if len(knees) == 2 else 0.0
            spread = max(knee_gap + 0.15 * self.t, 0.3 * self.t)
            hem = [hem_centre + body.right * sign * spread for sign in (-1, 1)]
            self.fill([_hull(waist + hem)], look.bottom)
        else:
            crotch = body.hips + body.down * 0.2 * self.t
            self.fill([_hull(waist + self._hip_line(outward=0.12, lift=-0.12) + [crotch])], look.bottom)

    def neck(self) -> None:
        head = self.head_centre()
        if self.body.neck is not None and head is not None:
            self.fill([_capsule(self.body.neck, head, _NECK_RADIUS * self.t, _NECK_RADIUS * self.t)], self.look.skin)

    def torso(self) -> None:
        body = self.body
        if body.neck is None:
            return
        points = [body.neck - body.down * 0.03 * self.t]
        for index, sign in ((R_SHOULDER, -1), (L_SHOULDER, 1)):
            if body.seen[index]:
                points.append(body.xy[index] + body.right * sign * 0.05 * self.t - body.down * 0.03 * self.t)
        for sign in (-1, 1):
            points.append(body.neck + body.right * sign * _CHEST_HALF_DEPTH * self.t + body.down * 0.02 * self.t)
        if body.hips is not None:
            points += self._hip_line(outward=0.1, lift=-0.06)
        else:  # hips unseen: the top hangs one torso length down the spine
            hem = body.neck + body.down * body.torso
            points += [hem + body.right * sign * _HIP_HALF_DEPTH * self.t for sign in (-1, 1)]
        if self.look.sleeves == "sleeveless":  # bare shoulders under the straps
            self.fill([_ellipse(body.xy[i], _UPPER_ARM * 1.1 * self.t, _UPPER_ARM * 1.1 * self.t, 0.0)
                       for i in (R_SHOULDER, L_SHOULDER) if body.seen[i]], self.look.skin)
        self.fill([_hull(points)], self._top_fill)

    def head_centre(self) -> np.ndarray | None:
        body = self.body
        face_points = _mean_of(body.xy, body.seen, (NOSE, R_EYE, L_EYE, R_EAR, L_EAR))
        if face_points is not None:  # the nose sits a little below the middle of the head
            return face_points - body.down * 0.02 * body.torso
        if body.neck is not None:
            return body.neck - body.down * 0.33 * body.torso
        return None

    def long_hair(self) -> None:
        look, body = self.look, self.body
        centre = self.head_centre()
        if look.hair_style not in ("bob", "long") or centre is None:
            return
        rx, ry = _HEAD_RX * body.torso, _HEAD_RY * body.torso
        back = -body.right * body.sin_yaw * 0.45 * rx
        end = centre + body.down * (1.0 * ry if look.hair_style == "bob" else 0.55 * body.torso)
        corners = [centre + back - body.down * 0.3 * ry + body.right * s * 1.08 * rx for s in (-1, 1)]
        corners += [end + back + body.right * s * 1.2 * rx for s in (-1, 1)]
        self.fill([_hull(corners)], look.hair)

    def head(self, back_view: bool) -> None:
        look, body = self.look, self.body
        centre = self.head_centre()
        if centre is None:
            return
        rx, ry = _HEAD_RX * body.torso, _HEAD_RY * body.torso
        tilt = float(np.arctan2(body.right[1], body.right[0]))
        sin_yaw = body.sin_yaw
        if look.hair_style == "bun":
            bun = centre - body.down * 0.85 * ry - body.right * sin_yaw * 0.6 * rx
            self.fill([_ellipse(bun, 0.5 * rx, 0.45 * rx, tilt)], look.hair)
        if back_view:
            self.fill([_ellipse(centre, 1.06 * rx, 1.04 * ry, tilt)], look.hair)
            return
        cap = centre - body.down * 0.12 * ry - body.right * sin_yaw * 0.25 * rx
        face = centre + body.down * 0.12 * ry + body.right * sin_yaw * 0.3 * rx
        face_rx = (0.86 - 0.2 * abs(sin_yaw)) * rx
        self.fill([_ellipse(cap, 1.07 * rx, 0.98 * ry, tilt)], look.hair)
        self.fill([_ellipse(face, face_rx, 0.86 * ry, tilt)], look.skin)
        eyes = [_ellipse(body.xy[i], 0.16 * rx, 0.12 * rx, tilt) for i in (R_EYE, L_EYE) if body.seen[i]]
        self.fill(eyes, _EYE_COLOUR)
        mouth = face + body.down * 0.45 * ry + body.right * sin_yaw * 0.35 * rx
        self.fill([_ellipse(mouth, 0.28 * face_rx, 0.07 * ry, tilt)], _LIP_COLOUR)


def render_studio(appearance: Appearance, height: int, width: int) -> np.ndarray:
    """The frame :func:`render_person` gives with nobody in it: the pixels where a frame differs from
    it are the person's and their shadow's (the wall is flat, so nothing else does)."""
    check_image_size(height, width)
    wall = _studio(appearance.background, appearance.floor_shade, height * SUPERSAMPLE, width * SUPERSAMPLE)
    return cv2.resize(wall, (width, height), interpolation=cv2.INTER_AREA)


def render_person(pose: Pose, appearance: Appearance, height: int, width: int, fingers: bool = False) -> np.ndarray:
    """An RGB uint8 (height, width, 3) frame of ``appearance`` in ``pose`` on its studio background.

    A hand is a skin ellipse at the wrist, whatever its keypoints say, unless ``fingers``: then each
    finger of the pose's hands (left, then right) is painted along its keypoints as well.
    """
    check_image_size(height, width)
    if not isinstance(appearance, Appearance):
        raise TypeError(f"appearance must be an Appearance, got {type(appearance).__name__}")
    big_h, big_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    body = _read_body(pose, big_h, big_w)
    canvas = _studio(appearance.background, appearance.floor_shade, big_h, big_w).copy()
    if body is not None:
        hands = ({side: (hand.xy * (big_w, big_h), hand.visible) for side, hand in zip(("left", "right"), pose.hands)}
                 if fingers else None)
        _Painter(canvas, appearance, body, hands).person()
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
