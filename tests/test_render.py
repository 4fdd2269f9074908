"""Synthetic people, faces and the training data built from them."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest
import torch

from poseguard_lib.config import DEFAULT_WALL_SATURATION, DataSettings, load_profile
from poseguard_lib.data.appearance import (APPEARANCE_PARTS, Appearance, AppearanceError, sample_appearances,
                                          with_fields_of)
from poseguard_lib.data.face import FaceParams, draw_face_contours, face_landmarks, render_face
from poseguard_lib.data.motions import HELD_OUT_MOTIONS
from poseguard_lib.data.render import render_person, render_studio
from poseguard_lib.data.synthetic import (
    SPLITS,
    ImagePairDataset,
    SyntheticVideo,
    VideoClipDataset,
    build_split,
    clear_split_cache,
    figure_masks,
    render_video,
    rotate_hue,
)
from poseguard_lib.pose.draw import condition_image
from poseguard_lib.pose.kinematics import build_pose
from poseguard_lib.pose.skeleton import HAND_21, OPENPOSE_BODY_18, Keypoints, Pose, PoseError
from poseguard_lib.pose.transforms import translate

H, W = 48, 40
PERSON = Appearance(
    skin=(220, 170, 130), hair=(30, 25, 25), hair_style="short", top=(200, 30, 40), top_accent=(250, 250, 250),
    top_pattern="plain", pattern_scale=1.0, sleeves="sleeveless", bottom=(30, 40, 160), bottom_type="trousers",
    shoes=(20, 20, 20), background=(235, 235, 235), floor_shade=1.0, build=1.0,
)


def _colour_share(image: np.ndarray, colour, tolerance: int = 12) -> float:
    return float((np.abs(image.astype(int) - np.array(colour)).max(axis=-1) <= tolerance).mean())


def _foreground(image: np.ndarray, look: Appearance = PERSON) -> np.ndarray:
    empty = Pose.from_body(np.full((18, 2), 0.5), np.zeros(18))
    return np.abs(image.astype(int) - render_person(empty, look, *image.shape[:2]).astype(int)).max(axis=-1) > 20


# --- appearances --------------------------------------------------------------------------
def test_appearances_are_reproducible_by_seed_and_prefix_stable():
    assert sample_appearances(6, seed=3) == sample_appearances(6, seed=3)
    assert sample_appearances(6, seed=3)[:4] == sample_appearances(4, seed=3)
    assert sample_appearances(6, seed=3) != sample_appearances(6, seed=4)
    assert len(set(sample_appearances(40, seed=0))) == 40


def _wall_saturation(look: Appearance) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in look.background))[1]


def test_wall_saturation_sets_the_walls_and_nothing_else():
    pale, coloured = sample_appearances(30, seed=2), sample_appearances(30, seed=2, wall_saturation=(0.3, 0.5))
    assert sample_appearances(30, seed=2, wall_saturation=DEFAULT_WALL_SATURATION) == pale
    assert max(_wall_saturation(look) for look in pale) <= 0.15 + 0.01  # rounding to 8-bit colours
    assert min(_wall_saturation(look) for look in coloured) >= 0.3 - 0.01
    assert max(_wall_saturation(look) for look in coloured) <= 0.5 + 0.01
    # the same random draws: only the walls differ, so a profile's people keep their clothes
    assert [dataclasses.replace(a, background=(0, 0, 0)) for a in pale] == [
        dataclasses.replace(b, background=(0, 0, 0)) for b in coloured
    ]


def test_appearance_parts_cover_every_field_once_and_swap_only_their_own():
    names = [name for part in APPEARANCE_PARTS.values() for name in part]
    assert sorted(names) == sorted(field.name for field in dataclasses.fields(Appearance))
    person, other = sample_appearances(2, seed=5)
    for part_fields in APPEARANCE_PARTS.values():
        mixed = with_fields_of(person, other, part_fields)
        for field in dataclasses.fields(Appearance):
            source = other if field.name in part_fields else person
            assert getattr(mixed, field.name) == getattr(source, field.name)
    everything = person
    for part_fields in APPEARANCE_PARTS.values():
        everything = with_fields_of(everything, other, part_fields)
    assert everything == other
    with pytest.raises(KeyError, match="unknown appearance fields \\['shirt'\\]"):
        with_fields_of(person, other, ("top", "shirt"))


@pytest.mark.parametrize("bad", [(0.5, 0.2), (-0.1, 0.2), (0.2, 1.5)])
def test_data_settings_refuse_a_bad_wall_saturation(bad):
    with pytest.raises(ValueError, match="wall_saturation"):
        DataSettings(height=32, width=32, n_train_appearances=2, n_test_appearances=2, frames_per_video=4,
                     pose_detect_resolution=64, wall_saturation=bad)


@pytest.mark.parametrize(
    "change, field",
    [({"hair_style": "mohawk"}, "hair_style"), ({"top": (300, 0, 0)}, "top"), ({"build": 3.0}, "build")],
)
def test_invalid_appearance_names_the_field(change, field):
    with pytest.raises(AppearanceError, match=field):
        dataclasses.replace(PERSON, **change)


# --- bodies -------------------------------------------------------------------------------
def test_render_shape_dtype_and_determinism():
    pose = build_pose({"facing": 30})
    frame = render_person(pose, PERSON, H, W)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, render_person(pose, PERSON, H, W))
    assert _foreground(frame).mean() > 0.05  # a person, not just the studio


def test_pose_without_visible_points_renders_the_empty_studio():
    empty = Pose.from_body(np.full((18, 2), 0.5), np.zeros(18))
    assert _colour_share(render_person(empty, PERSON, H, W), PERSON.background, tolerance=0) == 1.0


def test_different_appearances_give_different_pixels():
    pose = build_pose({})
    frames = [render_person(pose, look, H, W) for look in sample_appearances(4, seed=0)]
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            assert np.abs(frames[i].astype(int) - frames[j].astype(int)).mean() > 5


def test_person_pixels_move_with_the_pose():
    pose = build_pose({"position": (0.4, 0.92)})
    before = _foreground(render_person(pose, PERSON, 64, 64))
    after = _foreground(render_person(translate(pose, 0.2, 0.0), PERSON, 64, 64))
    shift = np.argwhere(after)[:, 1].mean() - np.argwhere(before)[:, 1].mean()
    assert shift == pytest.approx(0.2 * 64, abs=1.0)
    assert abs(int(before.sum()) - int(after.sum())) < 0.05 * before.sum()


def _head_box(pose: Pose, size: int) -> tuple[slice, slice]:
    """A square well inside the head: a tenth of the torso length around the head points."""
    xy = pose.body.xy * size
    seen = pose.body.visible
    head = xy[[i for i in (0, 14, 15, 16, 17) if seen[i]]].mean(axis=0)
    half = 0.1 * np.hypot(*(xy[[8, 11]].mean(axis=0) - xy[1]))
    (x0, y0), (x1, y1) = np.round(head - half).astype(int), np.round(head + half).astype(int)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def test_back_view_shows_hair_where_the_front_view_shows_a_face():
    size = 128
    front, back = build_pose({"facing": 0}), build_pose({"facing": 180})
    assert not back.body.visible[[0, 14, 15]].any()  # the detector sees no face from behind
    front_head = render_person(front, PERSON, size, size)[_head_box(front, size)]
    back_head = render_person(back, PERSON, size, size)[_head_box(back, size)]
    assert _colour_share(front_head, PERSON.skin) > 0.6
    assert _colour_share(back_head, PERSON.hair) > 0.9


@pytest.mark.parametrize("raised, expect", [("right_arm", "skin"), ("left_arm", "top")])
def test_far_arm_passes_behind_the_torso_and_near_arm_in_front(raised, expect):
    # Facing 90 shows the right side: the right arm is near the camera, the left one far.
    size = 128
    pose = build_pose({"facing": 90, raised: {"upper": (60, 90)}})  # forward and down across the chest
    frame = render_person(pose, PERSON, size, size)
    side = "r" if raised == "right_arm" else "l"
    shoulder = pose.body.xy[OPENPOSE_BODY_18.index(f"{side}_shoulder")]
    elbow = pose.body.xy[OPENPOSE_BODY_18.index(f"{side}_elbow")]
    assert elbow[0] > shoulder[0] + 0.05  # the arm points to the image right
    x, y = ((shoulder + 0.25 * (elbow - shoulder)) * size).astype(int)
    patch = frame[y - 1 : y + 2, x - 1 : x + 2]
    assert _colour_share(patch, getattr(PERSON, expect), tolerance=20) > 0.5


def test_missing_keypoints_are_skipped_not_drawn():
    pose = build_pose({"right_arm": {"upper": (90, 0)}})
    scores = pose.body.scores.copy()
    scores[OPENPOSE_BODY_18.index("r_wrist")] = 0.0
    cut = render_person(Pose.from_body(pose.body.xy, scores), PERSON, 64, 64)
    full = render_person(pose, PERSON, 64, 64)
    assert _foreground(cut).sum() < _foreground(full).sum()


def test_fingers_are_painted_only_when_asked():
    """By default a hand is an ellipse at the wrist whatever its shape; with fingers, a pointing hand
    shows skin that a fist does not, next to the hand and nowhere else."""
    size = 128
    arm = {"right_arm": {"upper": (90, 0)}}
    pointing, fist = (build_pose({**arm, "right_hand": {"shape": shape}}) for shape in ("point", "fist"))
    assert np.array_equal(render_person(pointing, PERSON, size, size), render_person(fist, PERSON, size, size))
    drawn = [render_person(pose, PERSON, size, size, fingers=True) for pose in (pointing, fist)]
    changed = np.argwhere(np.abs(drawn[0].astype(int) - drawn[1].astype(int)).max(axis=-1) > 0)
    assert len(changed) > 0
    xy = pointing.body.xy * size
    torso = np.hypot(*(xy[[8, 11]].mean(axis=0) - xy[1]))
    wrist = xy[OPENPOSE_BODY_18.index("r_wrist")]
    assert np.hypot(*(changed[:, ::-1] - wrist).T).max() < 0.5 * torso
    assert _colour_share(drawn[0], PERSON.skin) > _colour_share(drawn[1], PERSON.skin)


def test_render_rejects_bad_input():
    pose = build_pose({})
    with pytest.raises(ValueError, match="height"):
        render_person(pose, PERSON, 0, 32)
    with pytest.raises(ValueError, match="width"):
        render_person(pose, PERSON, 32, -4)
    with pytest.raises(PoseError, match="openpose_body_18"):
        render_person(Pose(Keypoints(HAND_21, np.full((21, 2), 0.5))), PERSON, 32, 32)
    with pytest.raises(TypeError, match="Appearance"):
        render_person(pose, "red dress", 32, 32)


# --- faces --------------------------------------------------------------------------------
def test_face_landmarks_follow_the_expression():
    neutral = face_landmarks(FaceParams()).xy
    assert neutral.shape == (68, 2)
    opened = face_landmarks(FaceParams(mouth_open=1.0)).xy
    assert opened[66, 1] - opened[62, 1] > neutral[66, 1] - neutral[62, 1] + 0.02  # lips part
    smiling = face_landmarks(FaceParams(smile=1.0)).xy
    assert smiling[[48, 54], 1].mean() < neutral[[48, 54], 1].mean()  # corners rise
    assert smiling[54, 0] - smiling[48, 0] > neutral[54, 0] - neutral[48, 0]  # and widen
    raised = face_landmarks(FaceParams(brow_raise=1.0)).xy
    assert raised[17:27, 1].mean() < neutral[17:27, 1].mean()
    shut = face_landmarks(FaceParams(eye_openness=0.0)).xy
    assert np.allclose(shut[[37, 38]], shut[[41, 40]])
    turned = face_landmarks(FaceParams(yaw=30)).xy
    assert turned[30, 0] > neutral[30, 0] + 0.02  # positive yaw turns the nose to the image right
    rolled = face_landmarks(FaceParams(roll=20)).xy
    assert rolled[45, 1] < rolled[36, 1]  # counter-clockwise: the image-right eye rises


def test_face_renders_are_images_that_follow_the_landmarks():
    look = sample_appearances(1, seed=5)[0]
    neutral = render_face(face_landmarks(FaceParams()), look, 64, 64)
    assert neutral.shape == (64, 64, 3) and neutral.dtype == np.uint8
    assert np.array_equal(neutral, render_face(face_landmarks(FaceParams()), look, 64, 64))
    opened = render_face(face_landmarks(FaceParams(mouth_open=1.0)), look, 64, 64)
    mouth = slice(34, 52), slice(22, 42)
    assert np.abs(opened[mouth].astype(int) - neutral[mouth].astype(int)).mean() > 5
    moved = render_face(face_landmarks(FaceParams(center=(0.35, 0.45))), look, 64, 64)
    assert np.abs(moved.astype(int) - neutral.astype(int)).mean() > 5


def test_face_contours_are_coloured_lines_on_black():
    landmarks = face_landmarks(FaceParams())
    image = draw_face_contours(landmarks, 64, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert 0.03 < (image.max(axis=-1) > 0).mean() < 0.4
    assert np.array_equal(image[0], np.zeros_like(image[0]))  # nothing outside the face
    x, y = (landmarks.xy[8] * 64).astype(int)  # the chin lies on the oval, drawn in its green
    assert image[y, x, 1] > 100 and image[y, x, 0] < 60
    assert not np.array_equal(image, draw_face_contours(face_landmarks(FaceParams(mouth_open=1.0)), 64, 64))


def test_face_functions_reject_bad_input():
    with pytest.raises(PoseError, match="mouth_open"):
        FaceParams(mouth_open=2.0)
    with pytest.raises(PoseError, match="face_68"):
        draw_face_contours(build_pose({}).body, 64, 64)
    with pytest.raises(ValueError, match="height"):
        render_face(face_landmarks(FaceParams()), PERSON, -1, 64)


# --- synthetic videos and training sets ---------------------------------------------------
SMALL_DATA = DataSettings(height=32, width=24, n_train_appearances=3, n_test_appearances=2, frames_per_video=6, pose_detect_resolution=48)


@pytest.fixture(scope="module")
def splits():
    return build_split(SMALL_DATA, seed=0)


def test_splits_keep_people_and_held_out_motions_apart(splits):
    assert set(splits) == set(SPLITS)
    train_people = {v.appearance for v in splits["train"]}
    test_people = {v.appearance for v in splits["test_appearance"]}
    assert len(train_people) == 3 and len(test_people) == 2 and not train_people & test_people
    assert {v.appearance for v in splits["test_motion"]} == test_people
    train_motions = {v.motion for v in splits["train"]}
    assert {v.motion for v in splits["test_appearance"]} == train_motions
    assert {v.motion for v in splits["test_motion"]} == set(HELD_OUT_MOTIONS)
    assert not train_motions & set(HELD_OUT_MOTIONS)
    assert len(splits["train"]) == 3 * len(train_motions)
    for video in splits["train"][:3] + splits["test_motion"][:1]:
        assert video.frames.shape == video.pose_images.shape == (6, 32, 24, 3)
        assert video.frames.dtype == video.pose_images.dtype == np.uint8
        assert not video.frames.flags.writeable


def test_splits_are_reproducible_and_depend_on_the_seed(splits):
    clear_split_cache()
    again = build_split(SMALL_DATA, seed=0)
    assert again["train"][0] is not splits["train"][0]  # rendered anew, not the cached copy
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(splits["train"], again["train"]))
    other = build_split(SMALL_DATA, seed=1)
    assert {v.appearance for v in other["train"]} != {v.appearance for v in splits["train"]}


def test_extra_training_people_join_the_training_split_and_leave_the_held_out_videos_alone(splits):
    more = build_split(SMALL_DATA.model_copy(update={"extra_train_appearances": 2}), seed=0)
    motions = len({v.motion for v in splits["train"]})
    assert len(more["train"]) == len(splits["train"]) + 2 * motions
    profile_people = {v.appearance for v in splits["train"] + splits["test_appearance"]}
    assert len({v.appearance for v in more["train"][len(splits["train"]):]} - profile_people) == 2
    for name, videos in splits.items():  # the held-out videos and the profile's training videos, placements too
        assert all(np.array_equal(a.frames, b.frames) and a.appearance == b.appearance
                   for a, b in zip(videos, more[name]))
    assert "extra_train_appearances" not in SMALL_DATA.cache_record()  # keys of earlier models stay
    with pytest.raises(ValueError, match="extra_train_appearances"):
        SMALL_DATA.model_validate({**SMALL_DATA.model_dump(), "extra_train_appearances": -1})


def test_frames_show_the_pose_drawn_in_the_pose_image(splits):
    video = splits["train"][0]
    for t in (0, 5):
        assert np.array_equal(video.pose_images[t], condition_image(video.poses[t], 32, 24, SMALL_DATA.pose_detect_resolution))
        assert np.array_equal(video.frames[t], render_person(video.poses[t], video.appearance, 32, 24))


def test_build_split_refuses_real_data_settings():
    with pytest.raises(ValueError, match="ubc_fashion"):
        build_split(load_profile("paper").data, seed=0)


def test_image_pairs_are_seeded_float_images_a_third_of_a_video_apart(splits):
    videos = splits["train"][:4]
    data = ImagePairDataset(videos, seed=3)
    assert len(data) == 4 * 6
    for index in range(len(data)):
        item = data[index]
        assert set(item) == {"reference", "pose", "target"}
        for image in item.values():
            assert image.shape == (3, 32, 24) and image.dtype == torch.float32
            assert 0.0 <= image.min() and image.max() <= 1.0
        video, target = videos[index // 6], index % 6
        frames = torch.tensor(video.frames).permute(0, 3, 1, 2) / 255.0
        assert torch.equal(item["target"], frames[target])
        matches = [i for i in range(6) if torch.equal(item["reference"], frames[i])]
        assert matches and max(abs(i - target) for i in matches) >= 2  # (still frames repeat)
    again = ImagePairDataset(videos, seed=3)
    assert all(torch.equal(data[i]["reference"], again[i]["reference"]) for i in range(len(data)))
    other = ImagePairDataset(videos, seed=4)
    assert any(not torch.equal(data[i]["reference"], other[i]["reference"]) for i in range(len(data)))


def _mirror_video(video: SyntheticVideo) -> SyntheticVideo:
    """A video whose frames are its pose images: any crop mismatch shows up as a difference."""
    images = video.pose_images.copy()
    return SyntheticVideo(video.appearance, video.motion, video.poses, images, images.copy())


def test_random_crop_cuts_frame_pose_and_reference_alike(splits):
    video = _mirror_video(splits["train"][1])
    cropped = ImagePairDataset([video], seed=0, crop_min_scale=0.6)
    plain = ImagePairDataset([video], seed=0)
    changed = 0
    for index in range(len(cropped)):
        item = cropped[index]
        assert item["pose"].shape == (3, 32, 24)
        assert torch.equal(item["pose"], item["target"])
        changed += not torch.equal(item["target"], plain[index]["target"])
    assert changed > 0
    still = SyntheticVideo(video.appearance, video.motion, video.poses,
                           np.repeat(video.frames[:1], 6, axis=0), np.repeat(video.frames[:1], 6, axis=0))
    item = ImagePairDataset([still], seed=0, crop_min_scale=0.6)[2]
    assert torch.equal(item["reference"], item["target"])  # one crop box for all three images


def test_figure_masks_mark_the_person_whatever_the_wall(splits):
    video = splits["train"][0]
    height, width = video.frames.shape[1:3]
    empty = Pose.from_body(np.full((18, 2), 0.5), np.zeros(18))
    assert video.appearance.floor_shade < 1  # the studio has a floor line, which must not count as the person
    assert np.array_equal(render_studio(video.appearance, height, width),
                          render_person(empty, video.appearance, height, width))
    masks = figure_masks(video)
    assert masks.shape == video.frames.shape[:3] and masks.dtype == bool
    assert 0.03 < masks.mean() < 0.4
    green_studio = dataclasses.replace(video.appearance, background=(40, 150, 70), floor_shade=0.8)
    assert np.array_equal(figure_masks(render_video(green_studio, video.motion, video.poses, height, width)), masks)


def test_figure_mask_items_add_the_target_s_mask_and_change_nothing_else(splits):
    videos = splits["train"][:2]
    for crop in (None, 0.6):
        plain = ImagePairDataset(videos, seed=0, crop_min_scale=crop, hue_augment=True)
        masked = ImagePairDataset(videos, seed=0, crop_min_scale=crop, hue_augment=True, figure_mask=True)
        for index in (0, len(plain) // 2, len(plain) - 1):
            item = masked[index]
            assert set(item) == set(plain[index]) | {"figure"}
            assert all(torch.equal(item[key], plain[index][key]) for key in plain[index])
            assert item["figure"].shape == (1, *item["target"].shape[1:]) and 0 < item["figure"].mean() < 0.5
    frames = len(videos[0])
    uncropped = ImagePairDataset(videos, seed=0, figure_mask=True)[frames + 3]["figure"][0]
    assert torch.equal(uncropped, torch.from_numpy(figure_masks(videos[1])[3]).float())


def test_video_clips_are_consecutive_frames_with_their_poses(splits):
    videos = splits["train"][:2]
    data = VideoClipDataset(videos, clip_length=4, seed=0)
    assert len(data) == 2 * (6 - 4 + 1)
    item = data[1]
    assert item["reference"].shape == (3, 32, 24)
    assert item["pose"].shape == item["target"].shape == (4, 3, 32, 24)
    assert torch.equal(item["target"], torch.tensor(videos[0].frames[1:5]).permute(0, 3, 1, 2) / 255.0)
    assert torch.equal(item["pose"], torch.tensor(videos[0].pose_images[1:5]).permute(0, 3, 1, 2) / 255.0)
    mirrored = VideoClipDataset([_mirror_video(videos[0])], clip_length=4, seed=0, crop_min_scale=0.6)
    for index in range(len(mirrored)):
        assert torch.equal(mirrored[index]["pose"], mirrored[index]["target"])
    with pytest.raises(ValueError, match="clip_length"):
        VideoClipDataset(videos, clip_length=7)
    with pytest.raises(IndexError):
        data[len(data)]


def test_datasets_reject_bad_settings(splits):
    with pytest.raises(ValueError, match="crop_min_scale"):
        ImagePairDataset(splits["train"][:1], crop_min_scale=1.5)
    with pytest.raises(ValueError, match="at least one video"):
        ImagePairDataset([])


def test_hue_rotation_keeps_greys_and_cycles_the_primaries():
    pixels = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [30, 200, 90]], dtype=np.uint8)
    assert np.array_equal(rotate_hue(pixels, 0.0), pixels)
    turned = rotate_hue(pixels, 2 * np.pi / 3)
    assert np.array_equal(turned[:3], pixels[:3][:, [2, 0, 1]])  # red → green, green → blue, blue → red
    assert np.array_equal(turned[3], pixels[3])  # grey stays grey
    assert np.array_equal(turned[4], pixels[4][[2, 0, 1]])
    half = rotate_hue(pixels, np.pi / 3).astype(int)
    assert abs(half[4].sum() - pixels[4].astype(int).sum()) <= 3  # brightness (the grey component) is kept


def test_hue_augment_recolours_reference_and_target_alike_but_not_the_pose(splits):
    videos = splits["train"][:2]
    pairs = (ImagePairDataset(videos, seed=0), ImagePairDataset(videos, seed=0, hue_augment=True))
    clips = (VideoClipDataset(videos, clip_length=3, seed=0), VideoClipDataset(videos, clip_length=3, seed=0, hue_augment=True))
    for plain, augmented in ((pairs[0][4], pairs[1][4]), (clips[0][1], clips[1][1])):
        assert torch.equal(augmented["pose"], plain["pose"])
        assert not torch.equal(augmented["target"], plain["target"])
        # the studio's top-left pixel: one colour in reference and target before, one (other) colour after
        corner = lambda image: image.reshape(-1, 3, *image.shape[-2:])[0, :, 0, 0]  # noqa: E731
        assert torch.equal(corner(plain["reference"]), corner(plain["target"]))
        assert torch.equal(corner(augmented["reference"]), corner(augmented["target"]))
        assert not torch.equal(corner(augmented["target"]), corner(plain["target"]))
    assert torch.equal(pairs[1][4]["target"], ImagePairDataset(videos, seed=0, hue_augment=True)[4]["target"])
