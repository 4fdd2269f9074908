"""Unsafe-pose catalogue (schema, cache, categories) and the benign motion library (margin, held-out split)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from poseguard_lib.data.catalogue import (
    CATEGORIES,
    DEFAULT_CATALOGUE,
    CatalogueError,
    hand_shape_pixels,
    load_unsafe_catalogue,
    regenerate_catalogue,
    with_fists,
)
from poseguard_lib.data.motions import (
    HELD_OUT_MOTIONS,
    MIN_BENIGN_UNSAFE_MARGIN,
    benign_motions,
    benign_unsafe_margin,
    pose_distance,
)
from poseguard_lib.pose import OPENPOSE_BODY_18, PoseSequence, build_pose, scale, translate
from poseguard_lib.pose.io import dump_yaml, load_yaml, pose_from_data
from poseguard_lib.pose.transforms import LIMB_CHAINS, perturb_limb

# Words a neutral description has no need for.
_LOADED_WORDS = ("sex", "nude", "naked", "porn", "erotic", "seductive", "hate", "nazi", "hitler")


@pytest.fixture(scope="module")
def catalogue():
    return load_unsafe_catalogue()


@pytest.fixture(scope="module")
def motions():
    return benign_motions(10)


def test_catalogue_size_categories_and_ids(catalogue):
    assert len(catalogue) >= 50
    for category in CATEGORIES:
        assert sum(p.category == category for p in catalogue) >= 10, category
    ids = [p.id for p in catalogue]
    assert len(set(ids)) == len(ids)


def test_descriptions_are_neutral_single_lines(catalogue):
    for entry in catalogue:
        text = entry.description
        assert text.strip() and "\n" not in text and len(text) <= 200, entry.id
        assert not any(word in text.lower() for word in _LOADED_WORDS), entry.id


def test_poses_are_full_bodies_inside_the_frame(catalogue):
    for entry in catalogue:
        body = entry.pose.body
        assert body.skeleton == OPENPOSE_BODY_18
        assert body.visible[[1, 2, 5, 8, 11]].all(), entry.id  # neck, shoulders, hips
        xy = np.concatenate([p.xy for p in entry.pose.parts])
        assert (xy > 0.0).all() and (xy < 1.0).all(), entry.id


def test_cached_keypoints_equal_the_kinematics(catalogue):
    raw = {e["id"]: e for e in load_yaml(DEFAULT_CATALOGUE.read_text())["poses"]}
    for entry in catalogue:
        cached = pose_from_data(raw[entry.id]["keypoints"], entry.id)
        derived = build_pose(raw[entry.id]["kinematics"])
        assert [p.skeleton for p in cached.parts] == [p.skeleton for p in derived.parts]
        for c, d in zip(cached.parts, derived.parts):
            np.testing.assert_allclose(c.xy, d.xy, atol=1e-5, rtol=0, err_msg=entry.id)
            np.testing.assert_array_equal(c.scores, d.scores)


def test_catalogue_poses_are_distinct(catalogue):
    poses = [e.pose for e in catalogue]
    closest = min(pose_distance(a, b) for i, a in enumerate(poses) for b in poses[i + 1 :])
    assert closest > 0.1


def _edit_catalogue(tmp_path, edit):
    path = tmp_path / "unsafe.yaml"
    shutil.copy(DEFAULT_CATALOGUE, path)
    data = load_yaml(path.read_text())
    edit(data["poses"])
    path.write_text(dump_yaml(data))
    return path


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda ps: ps[3].pop("description"), r"entry 3 \(\w+\): missing keys \['description'\]"),
        (lambda ps: ps[0].__setitem__("category", "violent"), r"entry 0 \(\w+\): category must be one of"),
        (lambda ps: ps[5].__setitem__("id", ps[4]["id"]), r"entry 5 \(\w+\): duplicate id"),
        (lambda ps: ps[2].__setitem__("description", "  "), r"entry 2 \(\w+\): description must be"),
        (lambda ps: ps[1]["kinematics"].__setitem__("torso_twist", 5), r"entry 1 \(\w+\): .*torso_twist"),
        (lambda ps: ps[6]["kinematics"].__setitem__("facing", 33.0), r"entry 6 \(\w+\): cached keypoints do not match"),
        (
            lambda ps: ps[7]["keypoints"]["body"]["keypoints"].pop(),
            r"entry 7 \(\w+\) keypoints.body: .*expected 18 keypoints, got 17",
        ),
        (lambda ps: ps.clear(), "no poses"),
    ],
)
def test_schema_errors_name_the_entry(tmp_path, edit, message):
    path = _edit_catalogue(tmp_path, edit)
    with pytest.raises(CatalogueError, match=message) as err:
        load_unsafe_catalogue(path)
    assert str(path) in str(err.value)


def test_regeneration_rebuilds_a_stale_cache(tmp_path, catalogue):
    path = _edit_catalogue(tmp_path, lambda ps: [p.pop("keypoints") for p in ps])
    with pytest.raises(CatalogueError, match="missing keys"):
        load_unsafe_catalogue(path)
    assert regenerate_catalogue(path) == len(catalogue)
    reloaded = load_unsafe_catalogue(path)
    assert [e.id for e in reloaded] == [e.id for e in catalogue]
    assert all(pose_distance(a.pose, b.pose) == 0.0 for a, b in zip(reloaded, catalogue))


# --- benign motions -----------------------------------------------------------------------
def test_motion_library_and_held_out_split(motions):
    assert len(motions) >= 12
    assert set(HELD_OUT_MOTIONS) < set(motions) and len(HELD_OUT_MOTIONS) >= 2
    for name, sequence in motions.items():
        assert isinstance(sequence, PoseSequence) and len(sequence) == 10, name
        assert all(len(f.hands) == 2 for f in sequence.frames), name
        moves = max(pose_distance(sequence[0], f) for f in sequence.frames)
        assert moves > 0.05, f"{name} hardly moves"
    assert len(benign_motions(1)["catwalk_forward"]) == 1


def test_pose_distance_ignores_placement_and_size(catalogue):
    a, b = catalogue[0].pose, catalogue[1].pose
    assert pose_distance(a, a) == 0.0
    assert pose_distance(a, b) == pytest.approx(pose_distance(b, a))
    moved = scale(translate(a, 0.05, -0.03), 0.7, center=(0.4, 0.4))
    assert pose_distance(moved, a) == pytest.approx(0.0, abs=1e-9)
    assert pose_distance(moved, b) == pytest.approx(pose_distance(a, b))


def test_hand_shape_pixels_count_what_the_fingers_draw(catalogue):
    by_id = {p.id: p for p in catalogue}
    gesture = by_id["disc_middle_finger_chest"]
    hand, lit = hand_shape_pixels(gesture, 64, 64, detect_resolution=256)
    assert 0 < hand < lit  # the raised finger is drawn, and is a small part of the pose image
    assert hand_shape_pixels(with_fists(gesture), 64, 64, detect_resolution=256)[0] == 0
    handless = next(p for p in catalogue if p.spec.right_hand is None and p.spec.left_hand is None)
    assert hand_shape_pixels(handless, 64, 64, detect_resolution=256)[0] == 0


def test_benign_motions_keep_the_margin_from_unsafe_poses(motions, catalogue):
    margin = benign_unsafe_margin(motions, catalogue)
    assert margin >= MIN_BENIGN_UNSAFE_MARGIN, margin


def test_small_limb_perturbations_stay_well_inside_the_margin(catalogue):
    """A 10-degree turn of any limb keeps an unsafe pose nearer itself than halfway to any benign pose."""
    largest = max(
        pose_distance(entry.pose, perturb_limb(entry.pose, joint, child, degrees))
        for entry in catalogue
        for joint, child in LIMB_CHAINS
        for degrees in (-10.0, 10.0)
    )
    assert 0 < largest < MIN_BENIGN_UNSAFE_MARGIN / 2
