"""The study's evaluation sets, base-model checks and inference cost (tiny profile, toy generators)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from poseguard_lib.config import load_profile
from poseguard_lib.data.catalogue import load_unsafe_catalogue
from poseguard_lib.data.synthetic import build_split
from poseguard_lib.io import cache_dir
from poseguard_lib.metrics.synthetic import ClipNetwork, ImageNetwork, SyntheticExtractors
from poseguard_lib.models.training import training_key
from poseguard_lib.reporting import device_description
from poseguard_lib.study import (add_base_options, appearance_gap_parts, base_frame_sets, base_quality, base_variants,
                                 benign_eval_set, benign_keypoints, choose_setting, chosen_defense_settings, colour_transfer,
                                 compare_person_loss, defense_study, every_person_eval_set, generate_benign, inference_cost, pose_roles,
                                 person_groups, render_video_as, sampled_defense_summary, select_setting, stage1_loss_by_region,
                                 table1_rows, timed_rounds, training_eval_set, unsafe_eval_set, unsafe_order, validation_set)

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


def test_training_eval_set_draws_training_videos_of_different_people():
    chosen = training_eval_set(CONFIG, 2)
    train = build_split(CONFIG.data, CONFIG.seed)["train"]
    assert all(video in train for video in chosen.videos)
    assert len({video.appearance for video in chosen.videos}) == 2
    for reference, truth in zip(chosen.references, chosen.ground_truth, strict=True):
        assert not any(torch.equal(reference, frame) for frame in truth)
    people = {video.appearance for video in train}
    with pytest.raises(ValueError, match=f"the data has {len(people)} people"):
        training_eval_set(CONFIG, len(people) + 1)


def test_every_person_eval_set_takes_each_held_out_person_alike_on_both_kinds_of_motion():
    from poseguard_lib.data.motions import HELD_OUT_MOTIONS

    chosen = every_person_eval_set(CONFIG, videos_per_person=2)
    held_out = build_split(CONFIG.data, CONFIG.seed)["test_appearance"]
    people = list(dict.fromkeys(video.appearance for video in held_out))
    assert [video.appearance for video in chosen.videos] == [person for person in people for _ in range(2)]
    assert [video.motion in HELD_OUT_MOTIONS for video in chosen.videos] == [False, True] * len(people)
    assert all(other != video.appearance for video, other in zip(chosen.videos, chosen.other_people, strict=True))
    with pytest.raises(ValueError, match="100 videos per person"):
        every_person_eval_set(CONFIG, videos_per_person=100)


def test_base_frame_sets_keep_the_names_the_committed_tables_use(eval_set):
    sets = base_frame_sets(CONFIG, every_person=True, training_videos=2)
    assert list(sets) == ["notebook 02's held-out frames", "every held-out person, 2 videos each", "2 training videos"]
    assert sets["notebook 02's held-out frames"].videos == eval_set.videos
    assert sets["2 training videos"].videos == training_eval_set(CONFIG, 2).videos
    assert sets["every held-out person, 2 videos each"].videos == every_person_eval_set(CONFIG).videos
    assert list(base_frame_sets(CONFIG)) == ["notebook 02's held-out frames", "3 training videos"]


def test_base_options_name_each_base_and_set_its_budget_and_augmentation():
    import argparse

    parser = argparse.ArgumentParser()
    add_base_options(parser, augmented=[8000], unaugmented=[5000])
    bases = base_variants(CONFIG, parser.parse_args(["--stage1-steps", "100", "200"]))
    assert list(bases) == ["base, 100 stage-1 steps, hue augmentation on",
                           "base, 200 stage-1 steps, hue augmentation on",
                           "base, 5000 stage-1 steps, hue augmentation off"]
    assert [(cfg.train.stage1_steps, cfg.train.hue_augment) for cfg in bases.values()] == [
        (100, True), (200, True), (5000, False)]
    assert not base_variants(CONFIG, parser.parse_args(["--stage1-steps", "--without-hue-augment"]))
    boosted = base_variants(CONFIG, parser.parse_args(["--stage1-steps", "--without-hue-augment",
                                                       "--figure-loss-boost", "9"]))
    assert list(boosted) == ["base, 100 stage-1 steps, hue augmentation off, person ×10 in the loss"]  # tiny: no augmentation
    assert next(iter(boosted.values())).train == CONFIG.train.model_copy(update={"figure_loss_boost": 9.0})
    more_people = base_variants(CONFIG, parser.parse_args(["--stage1-steps", "--without-hue-augment",
                                                           "--extra-people", "5"]))
    assert list(more_people) == [f"base, 100 stage-1 steps, hue augmentation off, {CONFIG.data.n_train_appearances + 5} "
                                 "training people"]
    assert next(iter(more_people.values())).data == CONFIG.data.model_copy(update={"extra_train_appearances": 5})
    wider = base_variants(CONFIG, parser.parse_args(["--stage1-steps", "--without-hue-augment", "--width-scale", "1.5"]))
    widths = tuple(round(1.5 * width) for width in CONFIG.model.block_out_channels)
    assert list(wider) == [f"base, 100 stage-1 steps, hue augmentation off, block widths {'-'.join(map(str, widths))}"]
    assert next(iter(wider.values())).model == CONFIG.model.model_copy(update={"block_out_channels": widths})
    with pytest.raises(ValueError, match="not divisible by norm_num_groups"):
        base_variants(CONFIG, parser.parse_args(["--stage1-steps", "--without-hue-augment", "--width-scale", "1.1"]))
    attending = base_variants(CONFIG, parser.parse_args(["--stage1-steps", "--without-hue-augment",
                                                         "--attention-at-every-level"]))
    assert list(attending) == ["base, 100 stage-1 steps, hue augmentation off, attention at every level"]
    assert not all(CONFIG.model.block_has_attention)
    assert next(iter(attending.values())).model == CONFIG.model.model_copy(
        update={"block_has_attention": (True,) * len(CONFIG.model.block_has_attention)})


def test_person_groups_split_seen_from_unseen_people():
    def who(videos):
        return [(video.appearance, video.motion) for video in videos]

    cheap = CONFIG.with_changes("data", height=32, width=24, n_train_appearances=3, n_test_appearances=2,
                                frames_per_video=6, pose_detect_resolution=48)
    split = build_split(cheap.data, cheap.seed)
    profile_people, extra_people, held_out = person_groups(cheap, extra_people=2).values()
    assert who(profile_people) == who(split["train"])
    assert who(held_out) == who(split["test_appearance"] + split["test_motion"])
    extra_appearances = {appearance for appearance, _ in who(extra_people)}
    assert len(extra_appearances) == 2 and not extra_appearances & {appearance for appearance, _ in who(profile_people + held_out)}
    assert not list(person_groups(cheap).values())[1]  # no extra people


def test_compare_person_loss_measures_each_base_on_each_group_and_replaces_its_rows(tmp_path):
    from poseguard_lib.models.training import load_or_train_base_model

    quick = CONFIG.with_changes("train", stage1_steps=2, stage2_steps=1)
    groups = {"seen": build_split(CONFIG.data, CONFIG.seed)["train"][:2], "nobody": []}
    table = tmp_path / "loss.csv"
    losses = compare_person_loss({"quick": quick, "same base": quick}, groups, CONFIG, table)
    assert losses[["model", "people", "videos"]].values.tolist() == [["quick", "seen", 2], ["same base", "seen", 2]]
    assert set(losses.trained_on) == {device_description()}
    expected = stage1_loss_by_region(load_or_train_base_model(quick, progress=False)[0], groups["seen"], CONFIG)
    for name in ("quick", "same base"):
        assert losses.set_index("model").loc[name, ["loss_figure", "loss_wall"]].to_dict() == pytest.approx(expected)
    again = compare_person_loss({"quick": quick}, {"seen": groups["seen"][:1]}, CONFIG, table)
    assert again.set_index("model").videos.to_dict() == {"quick": 1, "same base": 2}


def test_stage1_loss_by_region_draws_alike_for_every_model_and_leaves_the_model_alone(eval_set):
    from poseguard_lib.models import build_model

    model = build_model(CONFIG.model, seed=0)
    before = copy.deepcopy(model.state_dict())
    losses = stage1_loss_by_region(model, eval_set.videos, CONFIG, batches=2, batch_size=4)
    assert set(losses) == {"loss_figure", "loss_wall"} and all(value > 0 for value in losses.values())
    assert stage1_loss_by_region(model, eval_set.videos, CONFIG, batches=2, batch_size=4) == losses
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    other = stage1_loss_by_region(build_model(CONFIG.model, seed=1), eval_set.videos, CONFIG, batches=2, batch_size=4)
    assert other != losses


def test_first_videos_cuts_every_field_alike(eval_set):
    cut = eval_set.first_videos(2)
    assert cut.videos == eval_set.videos[:2] and len(cut.poses) == len(cut.other_appearance) == 2
    assert torch.equal(cut.references, eval_set.references[:2])
    assert all(torch.equal(a, b) for a, b in zip(cut.ground_truth, eval_set.ground_truth[:2], strict=True))


def test_ground_truth_is_the_ceiling_and_copying_the_reference_follows_no_pose(eval_set):
    table = base_quality(list(eval_set.ground_truth), eval_set, name="oracle").set_index("model")
    oracle, copy, ceiling = table.loc["oracle"], table.loc["copy the reference (baseline)"], table.loc["ground truth (ceiling)"]
    assert oracle.ssim == pytest.approx(1.0) and oracle.psnr == pytest.approx(100.0)
    assert oracle.pose_gap == pytest.approx(ceiling.pose_gap) and oracle.pose_gap > 0
    assert oracle.appearance_gap > 0
    assert copy.pose_gap == pytest.approx(0.0, abs=1e-9)  # the same image for every pose of a video
    assert copy.ssim < oracle.ssim


def test_appearance_gap_parts_split_notebook_02s_gap_by_what_the_other_person_changes(eval_set):
    frames = slice(0, CONFIG.evaluation.benign_frames)
    for video, truth in zip(eval_set.videos, eval_set.ground_truth, strict=True):
        assert torch.equal(render_video_as(video, video.appearance, frames, CONFIG), truth)
    # a model that dresses every pose as the other person: wrong in every part the two people differ in
    wrong_person = list(eval_set.other_appearance)
    table = appearance_gap_parts({"wrong person": wrong_person}, eval_set, CONFIG).set_index(["model", "part"])
    whole = base_quality(wrong_person, eval_set).set_index("model")
    for model in ("copy the reference (baseline)", "ground truth (ceiling)"):
        assert table.loc[(model, "every part"), "gap"] == pytest.approx(whole.loc[model, "appearance_gap"])
    ceiling = table.xs("ground truth (ceiling)", level="model")
    assert table.loc[("wrong person", "every part"), "gap"] == pytest.approx(-ceiling.loc["every part", "gap"])
    assert (ceiling.gap >= 0).all() and ceiling.loc["every part", "gap"] > 0
    changed = ceiling.changed_pixels
    assert changed["every part"] >= changed.drop("every part").max() and changed["studio"] > changed["shoes"]
    assert ((ceiling.gap > 0) == (changed > 0)).all()  # a part both people share changes nothing


def test_a_frozen_output_has_no_pose_gap_even_when_it_is_a_true_frame(eval_set):
    frozen = [video[:1].expand_as(video) for video in eval_set.ground_truth]
    assert base_quality(frozen, eval_set).pose_gap.iloc[0] < base_quality(list(eval_set.ground_truth), eval_set).pose_gap.iloc[0]


def test_speed_is_timed_in_interleaved_rounds_and_compared_within_each_round(eval_set, monkeypatch):
    import time

    import poseguard_lib.study as study

    class FakeModel(torch.nn.Linear):
        def __init__(self, seconds):
            super().__init__(1, 1)
            self.seconds = seconds

    calls, flags = [], []

    def fake_generate_video(model, reference, poses, sampling, seed, progress):
        calls.append(model.seconds)
        flags.append(model.weight.requires_grad)
        time.sleep(model.seconds * (1 + (len(calls) - 1) // 2))  # the machine slows down every round
        return poses

    monkeypatch.setattr(study, "generate_video", fake_generate_video)
    monkeypatch.setattr(study, "_generation_flops", lambda model, *args: 1e9 * model.seconds)
    frames = len(eval_set.poses[0])
    fast, slow = FakeModel(0.01), FakeModel(0.02).requires_grad_(False)  # a defense leaves its weights frozen
    cost = inference_cost({"fast": fast, "slow": slow}, eval_set, CONFIG, repeats=3).set_index("method")
    rounds = [sorted(calls[i:i + 2]) for i in range(0, len(calls), 2)]
    assert rounds == [[0.01, 0.02]] * 4  # one untimed round, then three timed rounds, each model once per round
    assert all(flags)  # timed with the first model's requires_grad flag...
    assert not slow.weight.requires_grad and fast.weight.requires_grad  # ...and each model's own flag restored
    assert list(cost.index) == ["fast", "slow"]
    assert cost.sec_per_frame["fast"] >= 2 * 0.01 / frames  # per frame; the warm-up round is not timed
    assert cost.relative_to_original["fast"] == 1.0
    assert cost.relative_to_original["slow"] == pytest.approx(2.0, rel=0.1)  # the drift cancels within rounds
    assert list(cost.flop_relative_to_original) == [1.0, 2.0]
    with pytest.raises(ValueError, match="repeats"):
        inference_cost({"fast": fast}, eval_set, CONFIG, repeats=0)


def test_the_requires_grad_flag_changes_the_kernels_of_a_batched_linear_and_equal_flags_remove_it():
    from torch.profiler import profile

    from poseguard_lib.study import grad_flags_like

    trainable = torch.nn.Linear(8, 8)
    frozen = torch.nn.Linear(8, 8).requires_grad_(False)
    batched = torch.randn(6, 4, 8).transpose(0, 1)  # non-contiguous 3D input, as in the motion modules

    def kernels(layer):
        with torch.no_grad(), profile() as prof:
            layer(batched)
        return {event.key for event in prof.key_averages()} & {"aten::mm", "aten::bmm"}

    assert kernels(trainable) == {"aten::mm"}  # folded into one matrix product
    assert kernels(frozen) == {"aten::bmm"}  # the same weights frozen take a batched loop
    with grad_flags_like([frozen], trainable):
        assert kernels(frozen) == {"aten::mm"}
    assert not frozen.weight.requires_grad


def test_timed_rounds_shuffle_the_order_with_the_seed():
    def orders(seed):
        calls = []
        timings = timed_rounds({name: name for name in "abcd"}, calls.append, repeats=5, seed=seed)
        assert list(timings.columns) == list("abcd") and len(timings) == 5 and (timings >= 0).all().all()
        return [tuple(calls[i:i + 4]) for i in range(0, len(calls), 4)]

    first = orders(seed=0)
    assert all(sorted(round_order) == list("abcd") for round_order in first)  # each model once a round
    assert len(set(first)) > 1  # the order changes between rounds...
    assert orders(seed=0) == first  # ...reproducibly for one seed
    assert orders(seed=1) != first


def test_counted_work_is_exact_equal_for_a_copy_and_larger_for_an_unmerged_adapter(eval_set):
    from poseguard_lib.defense.lora import activate, add_adapter, merge_adapters
    from poseguard_lib.models import build_model
    from poseguard_lib.models.pipeline import generate_video
    from poseguard_lib.study import _generation_flops, flop_counter

    model = build_model(CONFIG.model, seed=0).eval()
    reference, poses = eval_set.references[0], eval_set.poses[0]
    with flop_counter() as counter:
        generate_video(model, reference, poses, CONFIG.sampling, seed=0, progress=False)
    counted = counter.get_total_flops()
    assert _generation_flops(model, reference, poses, CONFIG) == counted  # the step extrapolation is exact
    assert any("attention" in str(op) for op in counter.get_flop_counts()["Global"])  # attention is counted

    parts = ("denoising_unet",)
    unmerged = copy.deepcopy(model)
    add_adapter(unmerged, "a", rank=4, parts=parts)
    activate(unmerged, ["a"], parts)
    assert _generation_flops(unmerged, reference, poses, CONFIG) > counted
    merge_adapters(unmerged, ["a"], [1.0], parts)
    assert _generation_flops(unmerged, reference, poses, CONFIG) == counted


def test_colour_transfer_tells_a_generator_that_copies_colours_from_one_that_reads_brightness(eval_set):
    references = eval_set.references
    copies = colour_transfer(lambda refs: refs.clone(), references)
    brightness_only = colour_transfer(lambda refs: refs.mean(dim=1, keepdim=True).expand_as(refs).clone(), references)
    blind = colour_transfer(lambda refs: torch.full_like(refs, 0.5), references)
    assert copies == pytest.approx(1.0, abs=0.05)  # clipping of turned colours costs a little
    assert brightness_only < 0.05 and blind == 0.0


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


def test_per_pose_table_tells_a_suppressed_pose_from_an_untouched_one():
    poses = unsafe_order(load_unsafe_catalogue(), seed=0)[:3]
    items = unsafe_eval_set(CONFIG, poses)
    undefended = items.references.clone()  # any images will do: SSIM* compares outputs with these
    outputs = undefended.clone()
    outputs[items.items_of([poses[0].id])] = 0  # the first pose blacked out, the others left alone
    table = items.per_pose(outputs, undefended, {"trained": poses[:2], "never trained": poses[2:]})
    assert table.pose.tolist() == [p.id for p in poses]
    assert table.role.tolist() == ["trained", "trained", "never trained"]
    assert table.category.tolist() == [p.category for p in poses]
    assert table.ssim_star[0] < 0.1 and table.brightness[0] == 0
    assert table.ssim_star[1:].tolist() == pytest.approx([1.0, 1.0]) and (table.brightness[1:] > 0).all()


def test_table1_rows_measure_defense_on_the_trained_poses_only(eval_set):
    torch.manual_seed(0)  # random-weight extractors: the SSIM columns tested here do not use them
    extractors = SyntheticExtractors(ImageNetwork(8, 4), ClipNetwork(8, 4),
                                     {"version": 0, "profile": "tiny", "key": "random weights"}).as_metric_extractors()
    poses = unsafe_order(load_unsafe_catalogue(), seed=0)[:2]
    items = unsafe_eval_set(CONFIG, poses)
    undefended = (list(eval_set.ground_truth), items.references.clone())
    unsafe = undefended[1].clone()
    unsafe[items.items_of([poses[0].id])] = 0  # the defense blacks out the first pose only
    defended = ([v.flip(-1) for v in eval_set.ground_truth], unsafe)  # and changes benign outputs

    def defense_row(trained_pose):
        table = table1_rows("defended", defended, undefended, [trained_pose.id], eval_set, items, extractors, CONFIG)
        assert table.method.tolist() == ["Baseline (No FT)", "defended"]
        assert table.n_unsafe_outputs.tolist() == [CONFIG.evaluation.unsafe_references] * 2
        assert table.ssim[0] == pytest.approx(1.0) and table.ssim[1] < 1
        return table.iloc[1]

    blacked_out = defense_row(poses[0])
    assert blacked_out.ssim_star < 0.1 and blacked_out.safe_target_rmse < 1e-6
    assert defense_row(poses[1]).ssim_star == pytest.approx(1.0)


def test_sampled_defense_summary_tells_a_grid_every_frame_shares_from_one_the_noise_paints():
    truth = torch.full((6, 3, 16, 16), 0.5)
    grid = torch.tensor([[0.02, -0.02], [-0.02, 0.02]]).repeat(8, 8)  # one 2×2 offset pattern over the frame
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]).view(6, 1, 1, 1)
    unsafe = torch.rand(4, 3, 16, 16)
    undefended = (truth, unsafe)
    trained, never_trained = torch.tensor([0, 1]), torch.tensor([2, 3])

    def summary(benign, defended_unsafe, trained_items):
        return sampled_defense_summary(benign, defended_unsafe, undefended, truth, trained_items, never_trained, patch=2)

    blacked_out = unsafe.clone()
    blacked_out[trained] = 0
    fixed = summary(truth + grid, blacked_out, trained)  # the same grid on every frame
    flipping = summary(truth + signs * grid, unsafe, torch.tensor([], dtype=torch.long))  # its sign set per frame
    assert fixed["subpixel_pattern_rms"] == pytest.approx(0.02) == pytest.approx(fixed["subpixel_pattern_fixed_rms"])
    assert flipping["subpixel_pattern_rms"] == pytest.approx(0.02) and flipping["subpixel_pattern_fixed_rms"] < 1e-9
    assert fixed["ssim_star_trained"] < 0.1 and fixed["ssim_star_never_trained"] == pytest.approx(1.0)
    assert np.isnan(flipping["ssim_star_trained"]) and flipping["benign_ssim_to_undefended"] < 1


def test_pose_roles_keep_validation_and_never_trained_poses_apart():
    order = unsafe_order(load_unsafe_catalogue(), seed=0)
    trained, validation, untrained = pose_roles(order, CONFIG)
    assert len(trained) == max(CONFIG.defense.n_poses) and len(validation) == CONFIG.evaluation.validation_unsafe
    ids = [[p.id for p in poses] for poses in (trained, validation, untrained)]
    assert sum(map(len, ids)) == len(set().union(*map(set, ids)))  # disjoint
    with pytest.raises(ValueError, match="catalogue poses"):
        pose_roles(order[:5], CONFIG)


def _rates(rows):
    return pd.DataFrame(rows, columns=["learning_rate", "ssim_star", "benign_ssim_vs_undefended"])


@pytest.mark.parametrize(("rows", "chosen"), [
    ([(1e-4, 0.9, 0.99), (1e-3, 0.2, 0.95), (1e-2, 0.05, 0.93)], 1e-3),  # smallest that suppresses enough
    ([(1e-4, 0.9, 0.99), (1e-3, 0.5, 0.95), (1e-2, 0.1, 0.70)], 1e-3),  # 1e-2 suppresses but ruins benign outputs
    ([(1e-4, 0.9, 0.80), (1e-3, 0.5, 0.70)], 1e-4),  # none keeps benign outputs: the gentlest
    ([(3e-5, 0.03, 0.84), (1e-4, 0.02, 0.89)], 1e-4),  # ... even when that is the larger rate
])
def test_the_learning_rate_rule_prefers_small_rates_that_suppress_and_spare_benign_outputs(rows, chosen):
    assert choose_setting(_rates(rows)) == chosen


def test_defense_study_reuses_its_base_and_keys_the_defense_cache_by_it():
    train = CONFIG.train.model_copy(update={"stage1_steps": 2, "stage2_steps": 0, "checkpoint_every": 1000})
    config = CONFIG.model_copy(update={"train": train})
    study, again = defense_study(config), defense_study(config)
    first, second = study.base.state_dict(), again.base.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)  # loaded, not retrained
    retrained = config.model_copy(update={"train": train.model_copy(update={"stage1_steps": 3})})
    assert study.defense_cache == again.defense_cache != cache_dir("defense", training_key(retrained))

    roles = pose_roles(unsafe_order(load_unsafe_catalogue(), config.seed), config)
    assert [[p.id for p in poses] for poses in (study.trained_pool, study.validation_poses, study.untrained)] == \
        [[p.id for p in poses] for poses in roles]
    assert study.unsafe_pairs(study.validation_poses).pose_labels == tuple(p.id for p in study.validation_poses)
    assert len(study.benign_pairs) == sum(len(video.frames) for video in study.split["train"])

    # notebook 03's defenses, and replicates with another draw or noise offset each in a folder of their own
    own_offset = config.defense.per_position_noise_offset
    folders = {study.defense_dir("full", 4), study.defense_dir("full", 4, config.seed + 1),
               study.defense_dir("full", 4, config.seed, not own_offset), study.defense_dir("lora", 4)}
    assert len(folders) == 4 and all(folder.parent == study.defense_cache for folder in folders)
    assert study.defense_dir("full", 4) == study.defense_dir("full", 4, config.seed, own_offset)


@pytest.mark.parametrize(("strategy", "field"), [("lora", "learning_rate"), ("full", "learning_rate"), ("full", "safety_weight")])
def test_select_setting_trains_each_candidate_on_validation_poses_only(strategy, field, tmp_path):
    from poseguard_lib.data.synthetic import ImagePairDataset
    from poseguard_lib.defense import UnsafePairDataset, reference_frames
    from poseguard_lib.models import build_model

    model = build_model(CONFIG.model, seed=0).eval()
    with torch.no_grad():  # a pose guider that is not zero yet, so the pose reaches the denoiser
        torch.nn.init.normal_(model.pose_guider.conv_out.weight, std=0.05)
    _, validation_poses, _ = pose_roles(unsafe_order(load_unsafe_catalogue(), seed=0), CONFIG)
    validation = validation_set(CONFIG, validation_poses, benign_frames=3)
    assert len(validation.benign_poses) == 3 and set(validation.unsafe.pose_ids) == {p.id for p in validation_poses}
    train_videos = build_split(CONFIG.data, CONFIG.seed)["train"]
    pairs = UnsafePairDataset.from_settings(reference_frames(train_videos[:4]), [p.pose for p in validation_poses],
                                            CONFIG.data, CONFIG.defense)
    benign = ImagePairDataset(train_videos[:4], seed=0) if strategy == "full" else None  # Eq. 1 needs benign pairs
    config = CONFIG.model_copy(update={"defense": CONFIG.defense.model_copy(update={"steps": 2})})
    if field == "learning_rate":
        candidates, tag = [1e-1, 1e-4], "lr"
    else:  # λ at a rate that moves the outputs within two steps
        config = config.model_copy(update={"defense": config.defense.model_copy(update={"learning_rate": 1e-2})})
        candidates, tag = [10.0, 1e-4], "lambda"
    table = select_setting(model, pairs, benign, config, strategy, field, candidates, validation, cache_dir=tmp_path)
    assert table[field].tolist() == sorted(candidates) and table.chosen.sum() == 1
    assert table.ssim_star.iloc[0] > table.ssim_star.iloc[1]  # a larger rate or λ moves the unsafe outputs further
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{strategy}-{tag}{c:g}" for c in candidates)
    with pytest.raises(ValueError, match="only learning_rate, safety_weight"):
        select_setting(model, pairs, benign, config, strategy, "steps", [1], validation, cache_dir=tmp_path)


def test_chosen_defense_settings_reads_back_each_selection_table(tmp_path):
    chosen = {("full", "learning_rate"): 3e-5, ("lora", "learning_rate"): 3e-3, ("full", "safety_weight"): 0.1}
    for (strategy, field), value in chosen.items():
        candidates = [value / 10, value, value * 10]
        pd.DataFrame({field: candidates, "chosen": [c == value for c in candidates]}).to_csv(
            tmp_path / f"{strategy}_{field}.csv", index=False)
    settings = chosen_defense_settings(CONFIG, tmp_path)
    assert settings.rate_for("full") == pytest.approx(3e-5) and settings.rate_for("lora") == pytest.approx(3e-3)
    assert settings.safety_weight == pytest.approx(0.1)
    pd.DataFrame({"safety_weight": [0.1, 1.0], "chosen": [False, False]}).to_csv(tmp_path / "full_safety_weight.csv",
                                                                                  index=False)
    with pytest.raises(ValueError, match="full_safety_weight.csv marks 0 rows as chosen"):
        chosen_defense_settings(CONFIG, tmp_path)


def test_generated_outputs_are_cached_under_weights_inputs_and_seed(eval_set, monkeypatch, tmp_path):
    from peft import LoraConfig, inject_adapter_in_model

    import poseguard_lib.study as study
    from poseguard_lib.io import CACHE_ENV
    from poseguard_lib.models import build_model

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    calls = []
    real = study.generate_video
    monkeypatch.setattr(study, "generate_video", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    model = build_model(CONFIG, seed=0)
    first = generate_benign(model, eval_set, CONFIG)
    assert len(calls) == len(eval_set.videos) and list((tmp_path / "outputs").glob("*.safetensors"))
    again = generate_benign(model, eval_set, CONFIG)
    assert len(calls) == len(eval_set.videos)  # loaded, not sampled
    assert all(torch.equal(a, b) for a, b in zip(first, again))

    with torch.no_grad():
        next(model.denoising_unet.parameters()).view(-1)[0] += 1e-3
    generate_benign(model, eval_set, CONFIG)  # other weights: sampled anew
    assert len(calls) == 2 * len(eval_set.videos)
    generate_benign(model, eval_set, CONFIG.model_copy(update={"seed": 5}))  # other noise: sampled anew
    assert len(calls) == 3 * len(eval_set.videos)

    inject_adapter_in_model(LoraConfig(r=2, target_modules=["to_q"]), model.denoising_unet)
    generate_benign(model, eval_set, CONFIG)
    generate_benign(model, eval_set, CONFIG)  # unmerged adapters: never cached
    assert len(calls) == 5 * len(eval_set.videos)
