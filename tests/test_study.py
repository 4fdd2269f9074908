"""The study's evaluation sets and base-model checks (tiny profile, no generator needed)."""

import numpy as np
import pytest
import torch

from poseguard_lib.config import load_profile
from poseguard_lib.data.catalogue import load_unsafe_catalogue
from poseguard_lib.study import base_quality, benign_eval_set, benign_keypoints, unsafe_eval_set, unsafe_order

CONFIG = load_profile("tiny")


@pytest.fixture(scope="module")
def eval_set():
    return benign_eval_set(CONFIG)


def test_benign_eval_set_mixes_held_out_motions_and_never_shows_the_target_pose(eval_set):
    from poseguard_lib.data.motions import HELD_OUT_MOTIONS

    motions = [v.motion for v in eval_set.videos]
    assert len(motions) == CONFIG.evaluation.benign_videos
    assert any(m in HELD_OUT_MOTIONS for m in motions) and any(m not in HELD_OUT_MOTIONS for m in motions)
    for reference, truth in zip(eval_set.references, eval_set.ground_truth):
        assert not any(torch.equal(reference, frame) for frame in truth)
    assert benign_keypoints(eval_set, CONFIG.evaluation.benign_frames).shape == (
        CONFIG.evaluation.benign_videos * CONFIG.evaluation.benign_frames, 18, 3)


def test_ground_truth_is_the_ceiling_and_copying_the_reference_follows_no_pose(eval_set):
    table = base_quality(list(eval_set.ground_truth), eval_set, name="oracle").set_index("model")
    oracle, copy, ceiling = table.loc["oracle"], table.loc["copy the reference (baseline)"], table.loc["ground truth (ceiling)"]
    assert oracle.ssim == pytest.approx(1.0) and oracle.psnr == pytest.approx(100.0)
    assert oracle.pose_gap == pytest.approx(ceiling.pose_gap) and oracle.pose_gap > 0
    assert oracle.appearance_gap > 0
    assert copy.pose_gap == pytest.approx(0.0, abs=1e-9)  # the same image for every pose of a video
    assert copy.ssim < oracle.ssim


def test_a_frozen_output_has_no_pose_gap_even_when_it_is_a_true_frame(eval_set):
    frozen = [video[:1].expand_as(video) for video in eval_set.ground_truth]
    assert base_quality(frozen, eval_set).pose_gap.iloc[0] < base_quality(list(eval_set.ground_truth), eval_set).pose_gap.iloc[0]


def test_unsafe_order_alternates_categories_and_is_seeded():
    catalogue = load_unsafe_catalogue()
    order = unsafe_order(catalogue, seed=0)
    assert sorted(p.id for p in order) == sorted(p.id for p in catalogue)
    assert len({p.category for p in order[:3]}) == 3
    assert [p.id for p in order] == [p.id for p in unsafe_order(catalogue, seed=0)]
    assert [p.id for p in order] != [p.id for p in unsafe_order(catalogue, seed=1)]


@pytest.mark.parametrize("kind", ["black", "blur"])
def test_unsafe_eval_set_pairs_every_pose_with_each_reference(kind):
    poses = unsafe_order(load_unsafe_catalogue(), seed=0)[:3]
    items = unsafe_eval_set(CONFIG, poses, safe_target_kind=kind)
    n = 3 * CONFIG.evaluation.unsafe_references
    assert items.poses.shape == (n, 3, CONFIG.data.height, CONFIG.data.width) and items.keypoints.shape == (n, 18, 3)
    assert items.items_of([poses[1].id]).tolist() == list(range(CONFIG.evaluation.unsafe_references,
                                                                 2 * CONFIG.evaluation.unsafe_references))
    if kind == "black":
        assert items.safe_targets.max() == 0
    else:
        assert 0 < items.safe_targets.mean() and not torch.equal(items.safe_targets, items.references)
    assert np.isfinite(items.keypoints).all()
