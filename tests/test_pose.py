"""Pose drawing (pixel equality with the published DWPose drawing), transforms, kinematics, pose files."""

from __future__ import annotations

import json
import math

import cv2
import matplotlib.colors
import numpy as np
import pytest

from poseguard_lib.pose import (
    FACE_68,
    HAND_21,
    OPENPOSE_BODY_18,
    BodySpec,
    HandSpec,
    Keypoints,
    Pose,
    PoseError,
    PoseFileError,
    PoseSequence,
    Skeleton,
    build_pose,
    draw,
    interpolate,
    interpolate_sequence,
    perturb_limb,
    random_crop,
    random_limb_perturbation,
    read_pose,
    read_pose_sequence,
    rotate,
    scale,
    translate,
    write_pose,
    write_pose_sequence,
)
from poseguard_lib.pose.kinematics import blend_specs, parse_spec

# --- an independent rendition of the published drawing (controlnet_aux / DWPose util) -------
# Written from shared/notes/pose_format.md; tables typed in again rather than imported.
SPEC_LIMBS_1BASED = [
    [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12],
    [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18],
]
SPEC_COLORS = [
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
]
SPEC_HAND_EDGES = [[0, 1 + 4 * f] if j == 0 else [4 * f + j, 4 * f + j + 1] for f in range(5) for j in range(4)]


def spec_draw(pose: Pose, H: int, W: int) -> np.ndarray:
    """The published algorithm: candidate/subset for the body, -1 coordinates for undetected hand/face points."""
    canvas = np.zeros((H, W, 3), dtype=np.uint8)
    candidate = np.array(pose.body.xy)
    subset = np.where(pose.body.scores > 0.3, np.arange(18), -1)  # DWPose keeps scores > 0.3
    for i in range(17):
        index = subset[np.array(SPEC_LIMBS_1BASED[i]) - 1]
        if -1 in index:
            continue
        Y = candidate[index, 0] * float(W)
        X = candidate[index, 1] * float(H)
        length = ((X[0] - X[1]) ** 2 + (Y[0] - Y[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(X[0] - X[1], Y[0] - Y[1]))
        polygon = cv2.ellipse2Poly((int(np.mean(Y)), int(np.mean(X))), (int(length / 2), 4), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, SPEC_COLORS[i])
    canvas = (canvas * 0.6).astype(np.uint8)
    for i in range(18):
        if subset[i] != -1:
            cv2.circle(canvas, (int(candidate[i, 0] * W), int(candidate[i, 1] * H)), 4, SPEC_COLORS[i], thickness=-1)

    def detected(part):  # DWPose sets points scoring < 0.3 to -1
        return np.where((part.scores < 0.3)[:, None], -1.0, part.xy)

    for peaks in [detected(h) for h in pose.hands]:
        for ie, (a, b) in enumerate(SPEC_HAND_EDGES):
            x1, y1 = int(peaks[a, 0] * W), int(peaks[a, 1] * H)
            x2, y2 = int(peaks[b, 0] * W), int(peaks[b, 1] * H)
            if x1 > 0.01 and y1 > 0.01 and x2 > 0.01 and y2 > 0.01:
                color = matplotlib.colors.hsv_to_rgb([ie / float(len(SPEC_HAND_EDGES)), 1.0, 1.0]) * 255
                cv2.line(canvas, (x1, y1), (x2, y2), color, thickness=2)
        for x, y in peaks:
            x, y = int(x * W), int(y * H)
            if x > 0.01 and y > 0.01:
                cv2.circle(canvas, (x, y), 4, (0, 0, 255), thickness=-1)
    if pose.face is not None:
        for x, y in detected(pose.face):
            x, y = int(x * W), int(y * H)
            if x > 0.01 and y > 0.01:
                cv2.circle(canvas, (x, y), 3, (255, 255, 255), thickness=-1)
    return canvas


def _published_hand_colors() -> list[tuple[int, ...]]:
    """What cv2 makes of the float HSV colours the published code passes (it rounds)."""
    colors = []
    for ie in range(20):
        pixel = np.zeros((1, 1, 3), np.uint8)
        cv2.line(pixel, (0, 0), (0, 0), matplotlib.colors.hsv_to_rgb([ie / 20.0, 1.0, 1.0]) * 255, thickness=1)
        colors.append(tuple(int(v) for v in pixel[0, 0]))
    return colors


def test_hand_edge_colours_are_the_published_ones():
    assert list(HAND_21.edge_colors) == _published_hand_colors()


def _body(seed: int = 0, missing: tuple[int, ...] = ()) -> Keypoints:
    xy = build_pose(BodySpec(facing=30, right_arm={"upper": [100, 40], "lower": [150, 0]})).body.xy
    rng = np.random.default_rng(seed)
    xy = xy + rng.normal(0, 0.01, xy.shape)
    scores = np.ones(18)
    scores[list(missing)] = 0.1
    return Keypoints(OPENPOSE_BODY_18, xy, scores)


@pytest.mark.parametrize("height,width", [(96, 64), (64, 96), (512, 384), (33, 47)])
def test_body_drawing_matches_published_pixels(height, width):
    pose = Pose(_body(seed=height))
    assert np.array_equal(draw(pose, height, width), spec_draw(pose, height, width))


def test_body_drawing_dims_limbs_and_keeps_joint_colours():
    image = draw(Pose(_body()), 256, 256)
    assert image.dtype == np.uint8 and image.shape == (256, 256, 3)
    neck = (_body().xy[1] * 256).astype(int)
    assert tuple(image[neck[1], neck[0]]) == (255, 85, 0)  # joint circle, full brightness
    limb_pixels = {tuple(p) for p in image.reshape(-1, 3)} - {(0, 0, 0)}
    assert (153, 0, 0) in limb_pixels  # limb 0 (255, 0, 0) after uint8 * 0.6 truncation


def test_missing_body_points_are_not_drawn():
    missing = (4, 7, 16)  # r_wrist, l_wrist, r_ear
    pose = Pose(_body(missing=missing))
    image = draw(pose, 128, 128)
    assert np.array_equal(image, spec_draw(pose, 128, 128))
    full = draw(Pose(_body()), 128, 128)
    assert not np.array_equal(image, full)
    r_wrist = (pose.body.xy[4] * 128).astype(int)
    assert tuple(image[r_wrist[1], r_wrist[0]]) != SPEC_COLORS[4]


def _hands_pose(missing_left: tuple[int, ...] = ()) -> Pose:
    """A body with two hands blown up around fixed wrists so every hand edge shows between the points."""
    pose = build_pose(
        BodySpec(right_arm={"upper": [90, 0], "lower": [180, 0]}, right_hand=HandSpec(shape="spread"),
                 left_hand=HandSpec(extended=("index", "middle")))
    )
    hands = []
    for hand, wrist in zip(pose.hands, ([0.65, 0.75], [0.3, 0.6])):
        scores = np.ones(21)
        if wrist[0] > 0.5:
            scores[list(missing_left)] = 0.0
        hands.append(Keypoints(HAND_21, wrist + (hand.xy - hand.xy[0]) * 3.0, scores))
    return Pose(pose.body, tuple(hands))


@pytest.mark.parametrize("size", [(384, 384), (400, 320)])
def test_hand_drawing_matches_published_pixels(size):
    pose = _hands_pose(missing_left=(8, 12))
    assert np.array_equal(draw(pose, *size), spec_draw(pose, *size))


def test_hand_points_near_the_top_left_edge_are_skipped():
    pose = _hands_pose()
    right = pose.hands[1]
    xy = np.array(right.xy)
    xy[4] = (0.005, 0.5)  # thumb tip: pixel x == 0 at width 128, DWPose treats it as undetected
    shifted = Pose(pose.body, (pose.hands[0], Keypoints(HAND_21, xy)))
    image = draw(shifted, 128, 128)
    assert not (image[60:68, 0:3] == (0, 0, 255)).all(axis=-1).any()
    thumb_tip_missing = Keypoints(HAND_21, xy, np.r_[np.ones(4), 0.0, np.ones(16)])
    assert np.array_equal(image, draw(Pose(pose.body, (pose.hands[0], thumb_tip_missing)), 128, 128))


def test_face_drawing_matches_published_pixels_and_skips_missing():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0.3, 0.7, (68, 2))
    xy[0] = (0.001, 0.5)  # inside the eps margin
    scores = np.ones(68)
    scores[[5, 40]] = 0.2
    pose = Pose(_body(), face=Keypoints(FACE_68, xy, scores))
    image = draw(pose, 160, 128)
    assert np.array_equal(image, spec_draw(pose, 160, 128))
    x, y = int(xy[40, 0] * 128), int(xy[40, 1] * 160)
    others = np.delete(xy, 40, axis=0) * [128, 160]
    if np.min(np.abs(others - [x, y]).max(axis=1)) > 8:  # no other landmark paints over it
        assert tuple(image[y, x]) != (255, 255, 255)


def test_generic_graph_drawing_uses_edge_and_point_colours():
    tripod = Skeleton(
        name="tripod", keypoints=("top", "a", "b", "c"), edges=((0, 1), (0, 2), (0, 3)),
        edge_colors=((10, 200, 30), (10, 200, 30), (200, 10, 30)), keypoint_colors=((1, 2, 250),) * 4,
    )
    xy = [[0.5, 0.2], [0.2, 0.8], [0.5, 0.8], [0.8, 0.8]]
    image = draw(Pose(Keypoints(tripod, xy, [1.0, 1.0, 1.0, 0.0])), 100, 100)
    assert tuple(image[50, 50]) == (10, 200, 30)  # on the top -> b edge
    assert tuple(image[20, 50]) == (1, 2, 250)  # the top point
    assert tuple(image[80, 80]) == (0, 0, 0)  # c is missing: neither point nor edge
    assert tuple(image[50, 65]) == (0, 0, 0)


def test_draw_rejects_empty_canvas():
    with pytest.raises(PoseError, match="canvas size"):
        draw(Pose(_body()), 0, 10)


# --- transforms -----------------------------------------------------------------------------
def _full_pose() -> Pose:
    """Body, hands attached at the wrists, and a face."""
    pose = build_pose(BodySpec(right_arm={"upper": [60, 30]}, left_hand=HandSpec(), right_hand=HandSpec(shape="fist")))
    face = Keypoints(FACE_68, np.random.default_rng(1).uniform(0.4, 0.5, (68, 2)))
    return Pose(pose.body, pose.hands, face)


def _all_xy(pose: Pose) -> np.ndarray:
    return np.concatenate([p.xy for p in pose.parts])


@pytest.mark.parametrize("aspect", [1.0, 512 / 768])
def test_rotation_by_full_turn_is_identity(aspect):
    pose = _full_pose()
    turned = rotate(pose, 360.0, center=(0.3, 0.6), aspect=aspect)
    np.testing.assert_allclose(_all_xy(turned), _all_xy(pose), atol=1e-12)
    back = rotate(rotate(pose, 33.0, aspect=aspect), -33.0, aspect=aspect)
    np.testing.assert_allclose(_all_xy(back), _all_xy(pose), atol=1e-12)


def test_rotation_is_counter_clockwise_on_screen_and_rigid_in_pixels():
    point = Pose(Keypoints(OPENPOSE_BODY_18, np.tile([0.75, 0.5], (18, 1))))
    up = rotate(point, 90.0, center=(0.5, 0.5))
    np.testing.assert_allclose(up.body.xy[0], [0.5, 0.25], atol=1e-12)  # right -> up on screen
    pose, aspect = _full_pose(), 0.5
    pixels = lambda p: p.body.xy * [aspect * 100, 100]  # noqa: E731
    turned = rotate(pose, 40.0, aspect=aspect)
    d0 = np.linalg.norm(pixels(pose)[:, None] - pixels(pose)[None], axis=-1)
    d1 = np.linalg.norm(pixels(turned)[:, None] - pixels(turned)[None], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-9)


def test_translation_and_its_inverse_cancel():
    pose = _full_pose()
    np.testing.assert_allclose(_all_xy(translate(translate(pose, 0.1, -0.07), -0.1, 0.07)), _all_xy(pose), atol=1e-12)
    shift = _all_xy(translate(pose, 0.1, -0.07)) - _all_xy(pose)
    np.testing.assert_allclose(shift, np.tile([0.1, -0.07], (len(shift), 1)))


def test_scaling_keeps_its_centre_and_inverts():
    pose = _full_pose()
    centre = pose.body.xy[1]
    scaled = scale(pose, 1.7, center=centre)
    np.testing.assert_allclose(scaled.body.xy[1], centre, atol=1e-12)
    np.testing.assert_allclose(_all_xy(scale(scaled, 1 / 1.7, center=centre)), _all_xy(pose), atol=1e-12)
    with pytest.raises(PoseError, match="positive"):
        scale(pose, 0.0)


def test_limb_perturbation_turns_the_distal_chain_only():
    pose = _full_pose()
    names = OPENPOSE_BODY_18.keypoints
    moved = perturb_limb(pose, "r_elbow", "r_wrist", 25.0)
    elbow, wrist = names.index("r_elbow"), names.index("r_wrist")
    unchanged = [i for i in range(18) if i != wrist]
    np.testing.assert_allclose(moved.body.xy[unchanged], pose.body.xy[unchanged])
    before, after = pose.body.xy[wrist] - pose.body.xy[elbow], moved.body.xy[wrist] - moved.body.xy[elbow]
    assert math.isclose(np.linalg.norm(before), np.linalg.norm(after))
    angle = math.degrees(math.atan2(-after[1], after[0]) - math.atan2(-before[1], before[0]))
    assert math.isclose((angle + 180) % 360 - 180, 25.0, abs_tol=1e-9)
    np.testing.assert_allclose(moved.hands[0].xy, pose.hands[0].xy)  # left hand stays
    np.testing.assert_allclose(pose.hands[1].xy[0], pose.body.xy[wrist], atol=1e-12)
    np.testing.assert_allclose(moved.hands[1].xy[0], moved.body.xy[wrist], atol=1e-12)  # the right hand follows
    np.testing.assert_allclose(moved.face.xy, pose.face.xy)
    head = perturb_limb(pose, "neck", "nose", 10.0)
    assert not np.allclose(head.face.xy, pose.face.xy)
    np.testing.assert_allclose(head.body.xy[names.index("r_wrist")], pose.body.xy[names.index("r_wrist")])
    with pytest.raises(PoseError, match="not connected"):
        perturb_limb(pose, "r_elbow", "l_wrist", 5.0)


def test_random_limb_perturbation_is_seeded():
    pose = _full_pose()
    a = random_limb_perturbation(pose, np.random.default_rng(7), 10.0)
    b = random_limb_perturbation(pose, np.random.default_rng(7), 10.0)
    np.testing.assert_array_equal(_all_xy(a), _all_xy(b))
    assert not np.allclose(_all_xy(a), _all_xy(pose))


def test_random_crop_box_applies_to_image_and_pose_alike():
    height, width = 48, 64
    pose = _full_pose()
    image = np.zeros((height, width, 3), np.uint8)
    tensor_like = np.zeros((2, 3, height, width), np.float32)
    x, y = (pose.body.xy[1] * [width, height]).astype(int)
    image[y, x] = 255
    tensor_like[..., y, x] = 1.0
    for seed in range(5):
        box, cropped_pose = random_crop(pose, np.random.default_rng(seed), height, width, min_scale=0.7)
        crop = box.crop(image)
        assert crop.shape == (box.height, box.width, 3)
        assert box.crop(tensor_like, channels_last=False).shape == (2, 3, box.height, box.width)
        cx, cy = cropped_pose.body.xy[1] * [box.width, box.height]
        if 0 <= cx < box.width and 0 <= cy < box.height:
            assert crop[int(cy), int(cx)].max() == 255
            assert box.crop(tensor_like, channels_last=False)[..., int(cy), int(cx)].min() == 1.0
    a = random_crop(pose, np.random.default_rng(1), height, width)
    b = random_crop(pose, np.random.default_rng(1), height, width)
    assert a[0] == b[0]
    with pytest.raises(PoseError, match="for 48x64 images"):
        a[0].crop(np.zeros((10, 10, 3)))


def test_interpolation_endpoints_midpoint_and_sequences():
    a = _full_pose()
    b = rotate(translate(a, 0.05, 0.02), 15.0)
    np.testing.assert_allclose(_all_xy(interpolate(a, b, 0.0)), _all_xy(a))
    np.testing.assert_allclose(_all_xy(interpolate(a, b, 1.0)), _all_xy(b))
    np.testing.assert_allclose(_all_xy(interpolate(a, b, 0.5)), (_all_xy(a) + _all_xy(b)) / 2)
    sequence = interpolate_sequence([a, b, a], 9, easing="cosine")
    assert isinstance(sequence, PoseSequence) and len(sequence) == 9
    np.testing.assert_allclose(_all_xy(sequence[4]), _all_xy(b))
    np.testing.assert_allclose(_all_xy(sequence[8]), _all_xy(a))
    with pytest.raises(PoseError, match="different parts"):
        interpolate(a, Pose(a.body), 0.5)


def test_interpolation_keeps_a_point_missing_at_one_end_where_it_is_seen():
    a = Pose(_body())
    hidden_scores = np.ones(18)
    hidden_scores[4] = 0.0
    b = Pose(Keypoints(OPENPOSE_BODY_18, np.zeros((18, 2)), hidden_scores))
    mid = interpolate(a, b, 0.5)
    np.testing.assert_allclose(mid.body.xy[4], a.body.xy[4])
    assert mid.body.scores[4] == pytest.approx(0.5)


# --- kinematics -----------------------------------------------------------------------------
def _kp(pose: Pose, name: str) -> np.ndarray:
    return pose.body.xy[OPENPOSE_BODY_18.index(name)]


def test_default_spec_is_a_symmetric_standing_person_on_the_ground():
    pose = build_pose(BodySpec())
    xy = pose.body.xy
    assert pose.hands == () and pose.body.scores.min() == 1.0
    mirror = ["nose", "neck", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip",
              "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle", "l_eye", "r_eye", "l_ear", "r_ear"]
    mirrored = np.array([_kp(pose, n) for n in mirror]) * [-1, 1] + [1, 0]
    np.testing.assert_allclose(mirrored, xy, atol=1e-12)
    assert xy[:, 1].max() == pytest.approx(0.9)  # lowest point on the ground line
    assert _kp(pose, "nose")[1] < _kp(pose, "neck")[1] < _kp(pose, "r_hip")[1] < _kp(pose, "r_ankle")[1]
    assert _kp(pose, "r_shoulder")[0] < 0.5 < _kp(pose, "l_shoulder")[0]  # subject's right on image left


def test_facing_foreshortens_shoulders_and_hides_the_far_face():
    front, side, back = (build_pose(BodySpec(facing=f)) for f in ("front", 90, "back"))
    width = lambda p: abs(_kp(p, "l_shoulder")[0] - _kp(p, "r_shoulder")[0])  # noqa: E731
    assert width(side) == pytest.approx(0.0, abs=1e-12) and width(front) > 0.1
    assert _kp(back, "r_shoulder")[0] > _kp(back, "l_shoulder")[0]  # seen from behind, sides swap
    visible = lambda p, n: p.body.scores[OPENPOSE_BODY_18.index(n)] >= 0.3  # noqa: E731
    assert not any(visible(back, n) for n in ("nose", "r_eye", "l_eye")) and visible(back, "l_ear")
    assert visible(side, "r_eye") and not visible(side, "l_eye") and not visible(side, "l_ear")
    assert _kp(side, "nose")[0] > _kp(side, "neck")[0]  # facing 90 looks to image right


def test_hand_shapes():
    def hand(**kwargs) -> np.ndarray:
        pose = build_pose(BodySpec(right_arm={"upper": [90, 0], "lower": [180, 0]}, right_hand=HandSpec(**kwargs)))
        assert len(pose.hands) == 2
        return pose.hands[1].xy

    tips = [4, 8, 12, 16, 20]
    reach = lambda h: np.linalg.norm(h[tips] - h[0], axis=1)  # noqa: E731
    fist, flat, middle = hand(shape="fist"), hand(shape="flat"), hand(extended=("middle",))
    assert (reach(fist)[1:] < reach(flat)[1:]).all()
    assert reach(middle).argmax() == 2 and reach(middle)[2] == pytest.approx(reach(flat)[2])
    upright = hand(shape="flat", angle=0)
    finger = upright[12] - upright[0]
    assert finger[1] < 0 and abs(finger[0]) < 0.2 * abs(finger[1])  # angle 0: fingers point up
    palm_front, palm_back = hand(shape="spread"), hand(shape="spread", palm="back")
    assert palm_front[4, 0] > palm_front[0, 0] > palm_back[4, 0]  # right hand: thumb towards the midline


def test_spec_errors_name_the_field_and_blend_interpolates():
    with pytest.raises(PoseError, match=r"catalogue entry x: .*right_arm\.uper"):
        parse_spec({"right_arm": {"uper": [1, 2]}}, "catalogue entry x")
    with pytest.raises(PoseError, match="facing"):
        parse_spec({"facing": "sideways"})
    with pytest.raises(PoseError, match=r"right_hand\.palm.*palm must be one of \['back', 'front', 'side'\]"):
        parse_spec({"right_hand": {"palm": "up"}})
    named = parse_spec({"facing": "back", "right_hand": {"palm": "side"}})
    assert named == BodySpec(facing=180, right_hand=HandSpec(palm=90))
    a, b = BodySpec(), BodySpec(facing=90, right_arm={"upper": [90, 0]}, right_hand=HandSpec(shape="fist"))
    assert blend_specs(a, b, 0.0) == a and blend_specs(a, b, 1.0) == b
    mid = blend_specs(a, b, 0.5)
    assert mid.facing == 45 and mid.right_arm.upper == (49.0, 0.0)


# --- pose files -----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_pose_files_round_trip(tmp_path, suffix):
    tripod = Skeleton("tripod", ("top", "a", "b"), ((0, 1), (0, 2)), ((1, 2, 3), (4, 5, 6)), ((7, 8, 9),) * 3)
    pose = _full_pose()
    write_pose(tmp_path / f"p{suffix}", pose)
    back = read_pose(tmp_path / f"p{suffix}")
    assert [p.skeleton for p in back.parts] == [p.skeleton for p in pose.parts]
    np.testing.assert_array_equal(_all_xy(back), _all_xy(pose))
    sequence = PoseSequence((Pose(Keypoints(tripod, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], [1, 0.5, 0])),) * 2)
    write_pose_sequence(tmp_path / f"s{suffix}", sequence)
    read = read_pose_sequence(tmp_path / f"s{suffix}")
    assert len(read) == 2 and read[0].body.skeleton == tripod
    np.testing.assert_array_equal(read[1].body.scores, [1, 0.5, 0])


def _write_sequence_data(path, mutate):
    data = {"frames": [{"body": {"skeleton": "openpose_body_18", "keypoints": [[0.5, 0.5, 1.0]] * 18}}] * 2}
    data = json.loads(json.dumps(data))
    mutate(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["frames"][1]["body"]["keypoints"].pop(), r"frames\[1\]\.body: .*expected 18 keypoints, got 17"),
        (lambda d: d["frames"][0]["body"]["keypoints"].__setitem__(3, [float("nan"), 0.5, 1.0]), "NaN"),
        (lambda d: d["frames"][0]["body"]["keypoints"].__setitem__(3, [0.5, 0.5, 1.5]), r"within \[0, 1\]"),
        (lambda d: d["frames"].clear(), "empty"),
        (lambda d: d["frames"][0]["body"].__setitem__("skeleton", "octopus"), "unknown skeleton 'octopus'"),
        (lambda d: d["frames"][0]["body"]["keypoints"].__setitem__(0, "x"), r"keypoints\[0\]: expected"),
    ],
)
def test_pose_file_errors_name_the_file_and_problem(tmp_path, mutate, message):
    path = _write_sequence_data(tmp_path / "bad.json", mutate)
    with pytest.raises(PoseFileError, match=message) as err:
        read_pose_sequence(path)
    assert str(path) in str(err.value)


def test_malformed_and_unsupported_pose_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("frames: [unclosed\n")
    with pytest.raises(PoseFileError, match=rf"{broken}: malformed YAML"):
        read_pose_sequence(broken)
    with pytest.raises(PoseFileError, match="unsupported pose file type"):
        read_pose(tmp_path / "pose.txt")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PoseFileError, match="expected a mapping"):
        read_pose(tmp_path / "list.json")
