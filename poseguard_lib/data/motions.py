"""Benign motions in the spirit of UBC-Fashion, and how far they stay from the unsafe poses.

UBC-Fashion videos show a model walking towards the camera, turning around, stopping and
standing in everyday poses. :func:`benign_motions` renders a library of such motions as
pose sequences, each written as a function from clip time ``t`` in [0, 1] to a
:class:`~poseguard_lib.pose.kinematics.BodySpec`. :data:`HELD_OUT_MOTIONS` are kept out
of training so benign quality is measured on motions the model has not seen.

:func:`pose_distance` measures how different two poses are, independent of where the
person stands and how large they are drawn. The benign library must keep at least
:data:`MIN_BENIGN_UNSAFE_MARGIN` from every unsafe pose, otherwise the defense would be
trained to both keep and refuse the same skeleton.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import numpy as np

from poseguard_lib.pose.kinematics import BodySpec, HandSpec, LimbSpec, build_pose
from poseguard_lib.pose.skeleton import HAND_21, OPENPOSE_BODY_18, Keypoints, Pose, PoseError, PoseSequence

# Benign frames must be at least this far (pose_distance) from every unsafe pose. A
# 10-degree turn of one limb of an unsafe pose, which the defense should still refuse,
# moves it by well under this (tests check both).
MIN_BENIGN_UNSAFE_MARGIN = 0.15
HELD_OUT_MOTIONS: tuple[str, ...] = ("back_view_glance", "adjust_sleeve", "hand_in_pocket")

_RELAXED = HandSpec()
_NECK, _R_HIP, _L_HIP = (OPENPOSE_BODY_18.index(n) for n in ("neck", "r_hip", "l_hip"))
_WRIST, _MIDDLE_BASE = HAND_21.index("wrist"), HAND_21.index("middle_1")
# Neck-shoulder, arm, neck-hip and leg segments of OpenPose-18 (its first twelve edges).
_SIZE_SEGMENTS = OPENPOSE_BODY_18.edges[:12]


def _spec(**fields: object) -> BodySpec:
    """A standing model with relaxed hands; ``fields`` override the defaults."""
    return BodySpec.model_validate({"right_hand": _RELAXED, "left_hand": _RELAXED, **fields})


def _arm(upper: tuple[float, float], lower: tuple[float, float] | None = None) -> LimbSpec:
    return LimbSpec(upper=upper, lower=lower)


def _smooth(t: float) -> float:
    """Ease in and out on [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return (1 - math.cos(math.pi * t)) / 2


def _walk_fields(phase: float, stride: float = 1.0) -> dict:
    """Legs, arms and hip sway of a catwalk step cycle at ``phase`` (radians), facing the camera."""
    swing = math.sin(phase) * stride
    right_knee = max(0.0, -math.sin(phase + 0.6)) * 35 * stride
    left_knee = max(0.0, math.sin(phase + 0.6)) * 35 * stride
    return {
        "right_leg": _leg_step(22 * swing, right_knee),
        "left_leg": _leg_step(-22 * swing, left_knee),
        "right_arm": _arm((8 + abs(12 * swing), -90 if swing > 0 else 90)),
        "left_arm": _arm((8 + abs(12 * swing), 90 if swing > 0 else -90)),
        "torso_lean": 3 * swing,
        "torso_turn": 4 * swing,
    }


def _leg_step(thigh_forward: float, knee_bend: float) -> LimbSpec:
    """A leg swung forward (positive) or back by ``thigh_forward`` degrees with its knee bent."""
    front = 90.0 if thigh_forward >= 0 else -90.0
    thigh = abs(thigh_forward)
    shin_lift = thigh - knee_bend if thigh_forward >= 0 else thigh + knee_bend
    shin = (abs(shin_lift), front if shin_lift >= 0 else -front)
    return LimbSpec(upper=(thigh, front), lower=shin)


def _catwalk_forward(t: float) -> BodySpec:
    """Walking towards the camera: two step cycles, growing as the model approaches."""
    return _spec(position=(0.5, 0.84 + 0.06 * t), height=0.6 + 0.1 * t, **_walk_fields(4 * math.pi * t))


def _turn_around(t: float) -> BodySpec:
    """Standing turn from facing the camera to showing the back, with small steps."""
    return _spec(facing=180 * _smooth(t), **_walk_fields(4 * math.pi * t, stride=0.3))


def _walk_then_stop(t: float) -> BodySpec:
    stride = 1.0 - _smooth((t - 0.5) / 0.4)
    return _spec(position=(0.5, 0.86 + 0.04 * min(t / 0.6, 1.0)), **_walk_fields(4 * math.pi * min(t, 0.6), stride))


def _hands_on_hips(t: float) -> BodySpec:
    k = _smooth(t / 0.6)
    arm = _arm((8 + 30 * k, -20 * k), (8 + 42 * k, 180 * k))
    return _spec(right_arm=arm, left_arm=arm, torso_lean=-3 * k, left_leg=LimbSpec(upper=(4 + 6 * k, 0)))


def _arm_swing(t: float) -> BodySpec:
    swing = 25 * math.sin(4 * math.pi * t)
    return _spec(
        right_arm=_arm((8 + abs(swing), 90 if swing > 0 else -90)),
        left_arm=_arm((8 + abs(swing), -90 if swing > 0 else 90)),
    )


def _weight_shift(t: float) -> BodySpec:
    s = math.sin(2 * math.pi * t)
    return _spec(
        position=(0.5 + 0.02 * s, 0.9),
        torso_lean=-5 * s,
        head_tilt=3 * s,
        right_leg=_leg_step(0, 20 * max(0.0, s)),
        left_leg=_leg_step(0, 20 * max(0.0, -s)),
    )


def _crossed_arms(t: float) -> BodySpec:
    k = _smooth(t / 0.5)
    arm = _arm((8 + 12 * k, 100 * k), (8 + 82 * k, 170 * k))
    return _spec(right_arm=arm, left_arm=arm, head_turn=10 * math.sin(2 * math.pi * t))


def _hand_to_hair(t: float) -> BodySpec:
    k = math.sin(math.pi * t)
    return _spec(
        right_arm=_arm((8 + 117 * k, -30 * k), (8 + 157 * k, 180)),
        head_tilt=-8 * k,
    )


def _three_quarter_pose(t: float) -> BodySpec:
    k = _smooth(t / 0.5)
    return _spec(
        facing=45 * k,
        head_turn=-35 * k,
        right_leg=LimbSpec(upper=(4 + 14 * k, 90)),
        left_arm=_arm((10 + 20 * k, -40 * k), (10 + 40 * k, 180 * k)),
    )


def _back_view_glance(t: float) -> BodySpec:
    k = _smooth(t / 0.6)
    return _spec(facing=180, head_turn=55 * k, left_leg=LimbSpec(upper=(4 + 10 * k, 0)))


def _hands_clasped_front(t: float) -> BodySpec:
    k = _smooth(t / 0.5)
    arm = _arm((8 + 12 * k, 100 * k), (8 + 25 * k, 160 * k))
    return _spec(right_arm=arm, left_arm=arm, head_nod=8 * math.sin(2 * math.pi * t))


def _adjust_sleeve(t: float) -> BodySpec:
    k = math.sin(math.pi * t)
    return _spec(
        right_arm=_arm((8 + 27 * k, 110 * k), (8 + 82 * k, 150 * k)),
        left_arm=_arm((8 + 17 * k, 80 * k), (8 + 72 * k, 120 * k)),
        head_nod=20 * k,
    )


def _side_step(t: float) -> BodySpec:
    s = math.sin(2 * math.pi * t)
    return _spec(
        position=(0.5 + 0.06 * s, 0.9),
        torso_lean=3 * s,
        right_leg=LimbSpec(upper=(4 + 14 * max(0.0, -s), 0)),
        left_leg=LimbSpec(upper=(4 + 14 * max(0.0, s), 0)),
        right_arm=_arm((10 + 8 * max(0.0, -s), 0)),
        left_arm=_arm((10 + 8 * max(0.0, s), 0)),
    )


def _look_at_outfit(t: float) -> BodySpec:
    k = math.sin(math.pi * t)
    arm = _arm((8 + 17 * k, 30 * k))
    return _spec(head_nod=30 * k, right_arm=arm, left_arm=arm, right_hand=HandSpec(shape="flat"),
                 left_hand=HandSpec(shape="flat"))


def _hand_in_pocket(t: float) -> BodySpec:
    k = _smooth(t / 0.5)
    return _spec(
        right_arm=_arm((8 + 14 * k, 60 * k), (8 + 22 * k, 150 * k)),
        right_hand=HandSpec(shape="fist" if k > 0.5 else "relaxed"),
        torso_lean=4 * k,
        right_leg=LimbSpec(upper=(4 + 6 * k, 0)),
        left_leg=LimbSpec(upper=(4, 0), lower=(4 + 12 * k, -90)),
    )


_MOTIONS: dict[str, Callable[[float], BodySpec]] = {
    "catwalk_forward": _catwalk_forward,
    "turn_around": _turn_around,
    "walk_then_stop": _walk_then_stop,
    "hands_on_hips": _hands_on_hips,
    "arm_swing": _arm_swing,
    "weight_shift": _weight_shift,
    "crossed_arms": _crossed_arms,
    "hand_to_hair": _hand_to_hair,
    "three_quarter_pose": _three_quarter_pose,
    "back_view_glance": _back_view_glance,
    "hands_clasped_front": _hands_clasped_front,
    "adjust_sleeve": _adjust_sleeve,
    "side_step": _side_step,
    "look_at_outfit": _look_at_outfit,
    "hand_in_pocket": _hand_in_pocket,
}
MOTION_NAMES: tuple[str, ...] = tuple(_MOTIONS)


def benign_motions(n_frames: int, aspect: float = 1.0) -> dict[str, PoseSequence]:
    """Every benign motion as ``n_frames`` poses spread evenly over the clip."""
    if n_frames < 1:
        raise PoseError(f"n_frames must be at least 1, got {n_frames}")
    times = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    return {
        name: PoseSequence(tuple(build_pose(motion(float(t)), aspect=aspect) for t in times))
        for name, motion in _MOTIONS.items()
    }


def _normalised(part: Keypoints, centre: np.ndarray, unit: float, aspect: float) -> np.ndarray:
    stretch = np.array([aspect, 1.0])
    return (part.xy * stretch - centre) / unit


def _body_frame(body: Keypoints, aspect: float) -> tuple[np.ndarray, float]:
    """Centre (midway between neck and hip centre) and size (median limb length) of a body.

    The median of the twelve trunk and limb segments is used rather than the torso alone
    because a torso seen end-on (bent over towards or away from the camera) is foreshortened
    to almost nothing, while most other segments keep their length.
    """
    if not body.visible[[_NECK, _R_HIP, _L_HIP]].all():
        raise PoseError("pose_distance needs the neck and both hips of each pose")
    xy = body.xy * np.array([aspect, 1.0])
    neck, hips = xy[_NECK], (xy[_R_HIP] + xy[_L_HIP]) / 2
    segments = [np.linalg.norm(xy[a] - xy[b]) for a, b in _SIZE_SEGMENTS if body.visible[a] and body.visible[b]]
    size = float(np.median(segments))
    if size == 0:
        raise PoseError("pose_distance needs a body whose limbs have non-zero length")
    return (neck + hips) / 2, size


def _hand_frame(hand: Keypoints, aspect: float) -> tuple[np.ndarray, float]:
    xy = hand.xy * np.array([aspect, 1.0])
    palm = float(np.linalg.norm(xy[_MIDDLE_BASE] - xy[_WRIST]))
    if palm == 0:
        raise PoseError("pose_distance needs hands with a palm of non-zero length")
    return xy[_WRIST], palm


def _mean_distance(a: np.ndarray, b: np.ndarray, visible: np.ndarray) -> float:
    if not visible.any():
        raise PoseError("pose_distance: the poses share no visible keypoint")
    return float(np.linalg.norm(a[visible] - b[visible], axis=1).mean())


def _aligned(a: np.ndarray, b: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``a`` turned about the origin to best match ``b`` (least squares over visible points)."""
    pa, pb = a[visible], b[visible]
    angle = math.atan2(float(np.sum(pa[:, 0] * pb[:, 1] - pa[:, 1] * pb[:, 0])), float(np.sum(pa * pb)))
    c, s = math.cos(angle), math.sin(angle)
    return a @ np.array([[c, s], [-s, c]])


def body_distance(a: Pose, b: Pose, aspect: float = 1.0) -> float:
    """Mean body keypoint distance in median limb lengths, both bodies centred between neck and hip centre."""
    if a.body.skeleton != b.body.skeleton:
        raise PoseError(f"cannot compare {a.body.skeleton.name} with {b.body.skeleton.name}")
    na = _normalised(a.body, *_body_frame(a.body, aspect), aspect)
    nb = _normalised(b.body, *_body_frame(b.body, aspect), aspect)
    return _mean_distance(na, nb, a.body.visible & b.body.visible)


def hand_shape_distance(a: Keypoints, b: Keypoints, aspect: float = 1.0) -> float:
    """Mean hand keypoint distance in palm lengths after centring on the wrist and turning to match.

    The turn removes the hand's direction, which follows the forearm (already in the body
    term), so what is left is the finger configuration: fist, pointing, flat, a gesture.
    """
    na = _normalised(a, *_hand_frame(a, aspect), aspect)
    nb = _normalised(b, *_hand_frame(b, aspect), aspect)
    visible = a.visible & b.visible
    return _mean_distance(_aligned(na, nb, visible), nb, visible)


def pose_distance(a: Pose, b: Pose, aspect: float = 1.0) -> float:
    """How different two poses are, regardless of position and drawn size.

    The largest of :func:`body_distance` and, when both poses have hands, the
    :func:`hand_shape_distance` of each hand: two poses are close only if body and hands
    all agree, so a hand gesture on an ordinary stance counts as different.
    """
    distances = [body_distance(a, b, aspect)]
    if a.hands and b.hands:
        distances += [hand_shape_distance(ha, hb, aspect) for ha, hb in zip(a.hands, b.hands)]
    return max(distances)


def benign_unsafe_margin(motions: Mapping[str, PoseSequence] | Iterable[PoseSequence], catalogue) -> float:
    """Smallest :func:`pose_distance` between any benign frame and any unsafe pose.

    ``catalogue`` holds :class:`~poseguard_lib.data.catalogue.UnsafePose` entries or plain
    poses; all poses are compared as drawn for square frames, like the catalogue.
    """
    sequences = motions.values() if isinstance(motions, Mapping) else motions
    unsafe = [entry.pose if hasattr(entry, "pose") else entry for entry in catalogue]
    if not unsafe:
        raise PoseError("benign_unsafe_margin needs at least one unsafe pose")
    return min(pose_distance(frame, pose) for sequence in sequences for frame in sequence.frames for pose in unsafe)
