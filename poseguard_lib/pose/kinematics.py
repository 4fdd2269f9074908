"""Build OpenPose-18 poses (with optional 21-point hands) from a short joint-angle description.

The unsafe-pose catalogue and the benign motions are written as :class:`BodySpec` values
(readable YAML: "right arm raised forward, fist, torso bent 30 degrees") rather than as
lists of coordinates. A spec is posed as a 3-D stick figure with adult proportions and
projected orthographically, so turning the body (``facing``) foreshortens the shoulders
and hides the face points a detector would not see.

Conventions (all angles in degrees):

* Body frame: x to the subject's left, y up, z forward. ``facing`` turns the whole body
  about the vertical axis towards the subject's left: 0 faces the camera, 90 shows the
  right side (subject looks to image right), 180 shows the back. Names ``front``,
  ``side`` and ``back`` mean 0, 90 and 180.
* Limb segments are directions ``(lift, front)`` in the torso frame (arms) or pelvis frame
  (legs): ``lift`` is the angle from hanging straight down (90 horizontal, 180 straight
  up); ``front`` is where the segment points around the body: 0 out to that side, 90
  forward, -90 backward, 180 across the body. ``lower`` (forearm, shin) defaults to
  continuing the ``upper`` segment, i.e. a straight elbow or knee.
* ``torso_bend`` pitches the upper body forward, ``torso_lean`` tilts it towards the
  subject's left, ``torso_turn`` twists it to the left; the head has ``head_nod`` (chin
  down), ``head_tilt`` (towards the left shoulder) and ``head_turn`` (to the left).
* ``roll`` turns the finished figure on screen (counter-clockwise), e.g. 90 for lying.
* ``position`` is where the figure stands, in normalised image coordinates: with
  ``anchor: ground`` the hip centre's x and the lowest body point's y; with ``anchor:
  hips`` the hip centre. ``height`` is the standing height as a fraction of image height.
* Hands are drawn in the image plane at the wrist, fingers along the forearm (or at
  ``angle``, counter-clockwise from straight up on screen); ``palm`` says which side faces
  the camera (``front``, ``side``, ``back`` or a roll in degrees).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from poseguard_lib.pose.skeleton import HAND_21, OPENPOSE_BODY_18, Keypoints, Pose, PoseError

# Adult proportions in units of standing height (pelvis centre at the origin).
TORSO = 0.29  # hip centre to neck
SHOULDER_HALF_WIDTH = 0.115
HIP_HALF_WIDTH = 0.055
UPPER_ARM, FOREARM = 0.17, 0.15
THIGH, SHIN = 0.245, 0.245
PALM = 0.05  # wrist to the base of the middle finger
# Head points relative to the neck in the head frame (x left, y up, z forward).
_HEAD_POINTS = {
    "nose": (0.0, 0.09, 0.05),
    "r_eye": (-0.03, 0.105, 0.04),
    "l_eye": (0.03, 0.105, 0.04),
    "r_ear": (-0.065, 0.095, -0.01),
    "l_ear": (0.065, 0.095, -0.01),
}

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
Finger = Literal["thumb", "index", "middle", "ring", "pinky"]
_TURN_NAMES = {"front": 0.0, "side": 90.0, "back": 180.0}  # the body's facing and the palm, in degrees


def _turn_by_name(field: str, value: object) -> object:
    """A named turn (``"front"``, ``"side"``, ``"back"``) in degrees; anything else goes on to pydantic's
    own check."""
    if isinstance(value, str):
        if value not in _TURN_NAMES:
            raise ValueError(f"{field} must be one of {sorted(_TURN_NAMES)} or a number, got {value!r}")
        return _TURN_NAMES[value]
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimbSpec(_Spec):
    """One arm or leg: directions ``(lift, front)`` of the upper and lower segment."""

    upper: tuple[float, float]
    lower: tuple[float, float] | None = None


class HandSpec(_Spec):
    """A hand shape: a preset, or the fingers that are ``extended`` (the rest curled into a fist)."""

    shape: Literal["relaxed", "fist", "flat", "spread", "point"] = "relaxed"
    extended: tuple[Finger, ...] | None = None
    palm: float = 0.0
    spread: float | None = Field(default=None, ge=0)  # finger spread factor; None: the shape's own
    bend: float = 0.0  # wrist bend on screen relative to the forearm, counter-clockwise
    angle: float | None = None  # absolute finger direction on screen, overrides the forearm

    @field_validator("palm", mode="before")
    @classmethod
    def _palm_name(cls, value: object) -> object:
        return _turn_by_name("palm", value)


def _arm() -> LimbSpec:
    return LimbSpec(upper=(8.0, 0.0))


def _leg() -> LimbSpec:
    return LimbSpec(upper=(4.0, 0.0))


class BodySpec(_Spec):
    """A whole-body pose; every field has a neutral standing default."""

    position: tuple[float, float] = (0.5, 0.9)
    anchor: Literal["ground", "hips"] = "ground"
    height: float = Field(default=0.7, gt=0)
    facing: float = 0.0
    roll: float = 0.0
    torso_bend: float = 0.0
    torso_lean: float = 0.0
    torso_turn: float = 0.0
    head_nod: float = 0.0
    head_tilt: float = 0.0
    head_turn: float = 0.0
    right_arm: LimbSpec = Field(default_factory=_arm)
    left_arm: LimbSpec = Field(default_factory=_arm)
    right_leg: LimbSpec = Field(default_factory=_leg)
    left_leg: LimbSpec = Field(default_factory=_leg)
    right_hand: HandSpec | None = None
    left_hand: HandSpec | None = None

    @field_validator("facing", mode="before")
    @classmethod
    def _facing_name(cls, value: object) -> object:
        return _turn_by_name("facing", value)

    @property
    def has_hands(self) -> bool:
        return self.right_hand is not None or self.left_hand is not None


def parse_spec(data: object, where: str = "pose description") -> BodySpec:
    """Validate a kinematic description (a mapping, e.g. from YAML); errors name ``where`` and the field."""
    if isinstance(data, BodySpec):
        return data
    try:
        return BodySpec.model_validate({} if data is None else data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors())
        raise PoseError(f"{where}: invalid kinematic description: {problems}") from None


def spec_to_dict(spec: BodySpec) -> dict:
    """The non-default fields of ``spec`` as plain YAML/JSON data."""
    return spec.model_dump(mode="json", exclude_defaults=True)


# --- rotations (right-handed, x left, y up, z forward / towards the camera) ---------------
def _rot_x(deg: float) -> np.ndarray:  # pitches +y towards +z
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(deg: float) -> np.ndarray:  # turns +z towards +x
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(deg: float) -> np.ndarray:  # tilts +y towards +x
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


def _direction(lift: float, front: float, side: float) -> np.ndarray:
    """Unit vector of a limb segment; ``side`` is +1 for left limbs, -1 for right ones."""
    lift_r, front_r = math.radians(lift), math.radians(front)
    return np.array(
        [side * math.sin(lift_r) * math.cos(front_r), -math.cos(lift_r), math.sin(lift_r) * math.sin(front_r)]
    )


def _limb(root: np.ndarray, frame: np.ndarray, limb: LimbSpec, side: float, lengths: tuple[float, float]):
    lower = limb.upper if limb.lower is None else limb.lower
    middle = root + frame @ _direction(*limb.upper, side) * lengths[0]
    end = middle + frame @ _direction(*lower, side) * lengths[1]
    return middle, end


def _visible_head_points(head: np.ndarray) -> dict[str, bool]:
    """Which face points a detector sees: surfaces whose normal does not point away from the camera."""
    forward, left = head[:, 2], head[:, 0]

    def facing_camera(normal: np.ndarray, threshold: float) -> bool:
        return float(normal[2] / np.linalg.norm(normal)) > threshold

    return {
        "nose": facing_camera(forward, -0.3),
        "r_eye": facing_camera(forward - 0.5 * left, 0.1),
        "l_eye": facing_camera(forward + 0.5 * left, 0.1),
        "r_ear": facing_camera(-left - 0.3 * forward, -0.5),
        "l_ear": facing_camera(left - 0.3 * forward, -0.5),
    }


def _body_points(spec: BodySpec) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """3-D keypoints (camera frame: x image-right, y up, z towards camera) and face-point visibility."""
    body = _rot_y(spec.facing)
    upper = body @ _rot_y(spec.torso_turn) @ _rot_z(spec.torso_lean) @ _rot_x(spec.torso_bend)
    head = upper @ _rot_y(spec.head_turn) @ _rot_z(spec.head_tilt) @ _rot_x(spec.head_nod)
    neck = upper @ np.array([0.0, TORSO, 0.0])
    p: dict[str, np.ndarray] = {"neck": neck}
    for prefix, side in (("r", -1.0), ("l", 1.0)):
        arm, leg = (spec.right_arm, spec.right_leg) if prefix == "r" else (spec.left_arm, spec.left_leg)
        shoulder = neck + upper @ np.array([side * SHOULDER_HALF_WIDTH, 0.0, 0.0])
        hip = body @ np.array([side * HIP_HALF_WIDTH, 0.0, 0.0])
        p[f"{prefix}_shoulder"] = shoulder
        p[f"{prefix}_elbow"], p[f"{prefix}_wrist"] = _limb(shoulder, upper, arm, side, (UPPER_ARM, FOREARM))
        p[f"{prefix}_hip"] = hip
        p[f"{prefix}_knee"], p[f"{prefix}_ankle"] = _limb(hip, body, leg, side, (THIGH, SHIN))
    for name, offset in _HEAD_POINTS.items():
        p[name] = neck + head @ np.array(offset)
    return p, _visible_head_points(head)


def _finger_chain(base: np.ndarray, spread_deg: float, lengths, flexions) -> list[np.ndarray]:
    """Points of one finger in hand coordinates (u along the hand, v thumb side, w palm side)."""
    s = math.radians(spread_deg)
    along = np.array([math.cos(s), math.sin(s), 0.0])
    normal = np.array([0.0, 0.0, 1.0])
    points, angle = [base], 0.0
    for length, flex in zip(lengths, flexions):
        angle += math.radians(flex)
        points.append(points[-1] + length * (math.cos(angle) * along + math.sin(angle) * normal))
    return points


# Hand model in palm lengths: finger bases (u, v), segment lengths, base spread (degrees).
_FINGER_BASES = {"index": (1.0, 0.28), "middle": (1.05, 0.09), "ring": (1.0, -0.10), "pinky": (0.9, -0.28)}
_FINGER_LENGTHS = {
    "index": (0.50, 0.30, 0.22),
    "middle": (0.55, 0.34, 0.24),
    "ring": (0.50, 0.32, 0.23),
    "pinky": (0.40, 0.24, 0.20),
}
_FINGER_SPREAD = {"index": 6.0, "middle": 0.0, "ring": -6.0, "pinky": -12.0}
_THUMB_BASE, _THUMB_LENGTHS = (0.2, 0.2), (0.40, 0.32, 0.27)
_CURL = {"extended": (0.0, 0.0, 0.0), "relaxed": (25.0, 35.0, 20.0), "curled": (85.0, 100.0, 60.0)}
# Per shape: curl of the four fingers, thumb curl (0 out .. 1 tucked), thumb angle, spread factor.
_SHAPES = {
    "relaxed": ("relaxed", 0.25, 45.0, 1.0),
    "flat": ("extended", 0.0, 20.0, 0.3),
    "spread": ("extended", 0.0, 70.0, 2.5),
    "fist": ("curled", 1.0, 45.0, 0.5),
}


def _hand_shape(hand: HandSpec) -> np.ndarray:
    """(21, 3) hand points in palm lengths, wrist at the origin."""
    if hand.extended is not None or hand.shape == "point":
        extended = set(hand.extended if hand.extended is not None else ("index",))
        finger_curl = {f: "extended" if f in extended else "curled" for f in FINGERS[1:]}
        thumb_curl, thumb_angle, spread = (0.0, 50.0, 1.5) if "thumb" in extended else (1.0, 45.0, 1.5)
    else:
        curl, thumb_curl, thumb_angle, spread = _SHAPES[hand.shape]
        finger_curl = {f: curl for f in FINGERS[1:]}
    if hand.spread is not None:
        spread = hand.spread
    thumb_flex = (20.0 * thumb_curl, 40.0 * thumb_curl, 40.0 * thumb_curl)
    thumb_base = np.array([*_THUMB_BASE, 0.0])
    points = [np.zeros(3), *_finger_chain(thumb_base, thumb_angle - 70.0 * thumb_curl, _THUMB_LENGTHS, thumb_flex)]
    for finger in FINGERS[1:]:
        base = np.array([*_FINGER_BASES[finger], 0.0])
        spread_deg = _FINGER_SPREAD[finger] * spread
        points += _finger_chain(base, spread_deg, _FINGER_LENGTHS[finger], _CURL[finger_curl[finger]])
    return np.stack(points)


def _turn_on_screen(points: np.ndarray, degrees: float) -> np.ndarray:
    """Counter-clockwise on screen (y down) about the origin."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.stack([points[:, 0] * c + points[:, 1] * s, -points[:, 0] * s + points[:, 1] * c], axis=1)


def _hand_on_screen(hand: HandSpec, side: float, wrist: np.ndarray, elbow: np.ndarray) -> np.ndarray:
    """(21, 2) screen points of a hand (units of standing height) attached at ``wrist``."""
    if hand.angle is not None:
        along = _turn_on_screen(np.array([[0.0, -1.0]]), hand.angle)[0]
    else:
        forearm = wrist - elbow
        # A forearm pointing at the camera has no screen direction: hold the hand upright.
        along = forearm / np.linalg.norm(forearm) if np.linalg.norm(forearm) > 0.3 * FOREARM else np.array([0.0, -1.0])
        along = _turn_on_screen(along[None], hand.bend)[0]
    thumb_side = side * np.array([along[1], -along[0]])  # thumb side of a palm facing the camera
    shape = _hand_shape(hand)
    roll = math.radians(hand.palm)
    lateral = shape[:, 1] * math.cos(roll) + shape[:, 2] * math.sin(roll)
    return wrist + PALM * (shape[:, :1] * along + lateral[:, None] * thumb_side)


def build_pose(spec: BodySpec | dict, aspect: float = 1.0) -> Pose:
    """Pose of ``spec`` in normalised image coordinates for a frame of ``aspect`` = width / height."""
    spec = parse_spec(spec)
    if not aspect > 0:
        raise PoseError(f"aspect (width / height) must be positive, got {aspect}")
    points, head_visible = _body_points(spec)
    names = OPENPOSE_BODY_18.keypoints
    body = np.array([[points[n][0], -points[n][1]] for n in names])  # screen: x right, y down
    scores = np.array([1.0 if head_visible.get(n, True) else 0.0 for n in names])
    hands = []
    if spec.has_hands:
        for prefix, hand, side in (("l", spec.left_hand, 1.0), ("r", spec.right_hand, -1.0)):
            wrist, elbow = body[names.index(f"{prefix}_wrist")], body[names.index(f"{prefix}_elbow")]
            hands.append(_hand_on_screen(hand or HandSpec(), side, wrist, elbow))
    body, hands = _turn_on_screen(body, spec.roll), [_turn_on_screen(h, spec.roll) for h in hands]
    x0, y0 = spec.position
    if spec.anchor == "ground":
        y0 -= spec.height * body[scores > 0, 1].max()

    def to_image(screen: np.ndarray) -> np.ndarray:
        return np.stack([x0 + screen[:, 0] * spec.height / aspect, y0 + screen[:, 1] * spec.height], axis=1)

    return Pose(
        body=Keypoints(OPENPOSE_BODY_18, to_image(body), scores),
        hands=tuple(Keypoints(HAND_21, to_image(h)) for h in hands),
    )


def blend_specs(a: BodySpec, b: BodySpec, t: float) -> BodySpec:
    """Spec between ``a`` (t=0) and ``b`` (t=1): numbers blend linearly, choices switch at t=0.5."""

    def blend(x: object, y: object) -> object:
        if isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys():
            return {k: blend(x[k], y[k]) for k in x}
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y):
            return [blend(p, q) for p, q in zip(x, y)]
        if isinstance(x, float | int) and isinstance(y, float | int) and not isinstance(x, bool):
            return (1 - t) * x + t * y
        return x if t < 0.5 else y

    return BodySpec.model_validate(blend(a.model_dump(), b.model_dump()))
