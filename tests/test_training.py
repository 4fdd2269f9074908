"""Training: Moore's loss, both stages, checkpoints and exact resume, the cached base model."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

from poseguard_lib.config import load_profile
from poseguard_lib.io import CACHE_ENV, cache_dir
from poseguard_lib.models import build_model
from poseguard_lib.models.training import (
    ImageObjective,
    draw_batch,
    latest_checkpoint,
    learning_rate_factor,
    load_or_train_base_model,
    min_snr_weights,
    train_stage,
    trained_on,
    training_key,
    v_loss,
)
from poseguard_lib.reporting import device_description

torch.set_num_threads(1)
SIZE = 32
PROFILE = load_profile("tiny")


class RandomPairs(Dataset):
    """Fixed random (reference, pose, target) items; clips when ``frames`` is given."""

    def __init__(self, n: int, frames: int | None = None):
        self.n, self.frames = n, frames

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        frames = 1 if self.frames is None else self.frames

        def smooth(n):  # low-frequency images, like real frames (pixel noise cannot be learnt)
            coarse = torch.rand(n, 3, 4, 4, generator=g)
            return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")

        pose, target = smooth(frames), smooth(frames)
        if self.frames is None:
            pose, target = pose[0], target[0]
        return {"reference": smooth(1)[0], "pose": pose, "target": target}


def _settings(**changes):
    return PROFILE.train.model_copy(update={"mixed_precision": "no", **changes})


def test_min_snr_weights_follow_moore():
    scheduler = build_model(PROFILE.model).scheduler
    t = torch.tensor([0, 500, 999])
    weights = min_snr_weights(scheduler, t, gamma=5.0)
    snr = scheduler.alphas_cumprod[t] / (1 - scheduler.alphas_cumprod[t])
    torch.testing.assert_close(weights, torch.minimum(snr + 1, torch.tensor(5.0)) / (snr + 1))
    assert weights[0] < 0.01 and weights[2] == 1.0  # zero terminal SNR: pure noise gets weight 1


def test_draw_batch_is_a_function_of_the_generator():
    settings = _settings(condition_dropout=0.5)
    data = RandomPairs(10)
    a = draw_batch(data, 6, (12, 16, 16), settings, torch.Generator().manual_seed(1))
    b = draw_batch(data, 6, (12, 16, 16), settings, torch.Generator().manual_seed(1))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert a["noise"].shape == (6, 12, 16, 16) and a["timesteps"].max() < 1000
    assert a["with_reference"].dtype == torch.bool


def test_noise_offset_shifts_whole_colours_in_patched_pixel_space():
    """Offsets in unshuffled space must be constant within each colour's group of sub-pixels."""
    settings = _settings(noise_offset=10.0)  # the offset dominates, so it is visible in the image
    batch = draw_batch(RandomPairs(4), 4, (12, 16, 16), settings, torch.Generator().manual_seed(0), offset_group=4)
    image = torch.nn.functional.pixel_shuffle(batch["noise"], 2)  # (4, 3, 32, 32): per-pixel noise
    channel_means = image.mean(dim=(2, 3))
    sub_pixel_means = torch.stack([image[:, :, i::2, j::2].mean(dim=(2, 3)) for i in (0, 1) for j in (0, 1)])
    assert (sub_pixel_means - channel_means).abs().max() < 0.5  # no 2×2 pattern of offsets
    assert channel_means.abs().max() > 2.0  # while the colour shift itself is there


def test_overfitting_a_tiny_set_lowers_the_loss(tmp_path):
    model = build_model(PROFILE.model, seed=0)
    data = RandomPairs(2)
    settings = _settings(stage1_steps=60, batch_size=2, learning_rate=2e-3, condition_dropout=0.0, checkpoint_every=1000)
    fixed = draw_batch(data, 2, (12, 16, 16), settings, torch.Generator().manual_seed(99))
    fixed["timesteps"] = torch.tensor([300, 600])
    objective = ImageObjective(model, settings)
    with torch.no_grad():
        before = float(objective(**fixed))
    history = train_stage(model, 1, data, settings, seed=0, checkpoint_dir=tmp_path, progress=False)
    with torch.no_grad():
        after = float(objective(**fixed))
    assert len(history) == 60 and all(h["stage"] == 1 for h in history)
    assert after < 0.7 * before, (before, after)


class CrashingPairs(RandomPairs):
    """Raises once ``crash_after`` items have been read, like a run killed mid-training."""

    def __init__(self, n: int, crash_after: int):
        super().__init__(n)
        self.reads_left = crash_after

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.reads_left == 0:
            raise RuntimeError("simulated crash")
        self.reads_left -= 1
        return super().__getitem__(index)


def test_resume_after_a_crash_reproduces_an_uninterrupted_run(tmp_path):
    settings = _settings(stage1_steps=6, batch_size=2, checkpoint_every=2, lr_schedule="cosine")
    uninterrupted = build_model(PROFILE.model, seed=0)
    history = train_stage(uninterrupted, 1, RandomPairs(8), settings, seed=3, checkpoint_dir=tmp_path / "a", progress=False)

    crashing = build_model(PROFILE.model, seed=0)
    # 1 read for the sample shape, 2 per step: the crash hits step 4, after the step-2 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_stage(crashing, 1, CrashingPairs(8, crash_after=1 + 2 * 3 + 1), settings, seed=3,
                    checkpoint_dir=tmp_path / "b", progress=False)
    assert latest_checkpoint(tmp_path / "b").name == "step_0000002"
    # another initialisation on purpose: equal results can only come from the checkpoint
    resumed = build_model(PROFILE.model, seed=1)
    resumed_history = train_stage(resumed, 1, RandomPairs(8), settings, seed=3, checkpoint_dir=tmp_path / "b", progress=False)

    assert [h["loss"] for h in resumed_history] == [h["loss"] for h in history]
    for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    checkpoint = latest_checkpoint(tmp_path / "b")
    assert checkpoint.name == "step_0000006" and (checkpoint / "model.safetensors").exists()
    assert len(list((tmp_path / "b").glob("step_*"))) == 2  # older checkpoints are pruned


def test_cosine_schedule_anneals_to_zero():
    assert learning_rate_factor("constant", 7, 10) == 1.0
    factors = [learning_rate_factor("cosine", step, 10) for step in range(10)]
    assert factors[0] == 1.0 and all(a > b for a, b in zip(factors, factors[1:])) and factors[-1] < 0.03


def test_stage_two_trains_only_motion_modules(tmp_path):
    model = build_model(PROFILE.model, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = _settings(stage2_steps=2, video_batch_size=1, video_frames=4, stage2_learning_rate=1e-2)
    history = train_stage(model, 2, RandomPairs(3, frames=4), settings, seed=0, checkpoint_dir=tmp_path, progress=False)
    assert len(history) == 2 and all(h["stage"] == 2 for h in history)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("motion_adapter.") for k in changed)


def test_painted_fingers_train_a_new_model_and_older_keys_stay():
    fingers = PROFILE.model_copy(update={"data": PROFILE.data.model_copy(update={"render_fingers": True})})
    assert training_key(fingers) != training_key(PROFILE)
    assert "render_fingers" not in PROFILE.data.cache_record()  # models trained before the option keep their keys


def test_figure_loss_boost_trains_a_new_model_and_older_keys_stay():
    assert training_key(PROFILE.with_changes("train", figure_loss_boost=9.0)) != training_key(PROFILE)
    assert "figure_loss_boost" not in PROFILE.train.cache_record()


def test_loss_weights_make_a_weighted_mean_of_the_squared_error():
    model = build_model(PROFILE.model, seed=0)
    latents, noise = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)
    timesteps = torch.tensor([100, 700])
    prediction = torch.randn(2, 12, 8, 8)
    plain = v_loss(model, prediction, latents, noise, timesteps, 5.0)
    torch.testing.assert_close(v_loss(model, prediction, latents, noise, timesteps, 5.0, torch.full((2, 1, 8, 8), 3.0)), plain)
    left_only = torch.zeros(2, 1, 8, 8)
    left_only[..., :4] = 1
    changed_right = prediction.clone()
    changed_right[..., 4:] += 5
    weighted = v_loss(model, prediction, latents, noise, timesteps, 5.0, left_only)
    assert v_loss(model, changed_right, latents, noise, timesteps, 5.0, left_only) == weighted
    assert v_loss(model, changed_right, latents, noise, timesteps, 5.0) > plain


def test_figure_boost_weighs_the_masked_positions_and_needs_the_masks():
    model = build_model(PROFILE.model, seed=0)
    batch = draw_batch(RandomPairs(2), 2, (12, SIZE // 2, SIZE // 2), _settings(), torch.Generator().manual_seed(0))
    plain = ImageObjective(model, _settings())
    boosted = ImageObjective(model, _settings(figure_loss_boost=9.0))
    with torch.no_grad():
        everywhere = boosted(**batch, figure=torch.ones(2, 1, SIZE, SIZE))
        nowhere = boosted(**batch, figure=torch.zeros(2, 1, SIZE, SIZE))
        half = torch.zeros(2, 1, SIZE, SIZE)
        half[..., : SIZE // 2] = 1
        halfway = boosted(**batch, figure=half)
        torch.testing.assert_close(everywhere, plain(**batch))  # even weights: the plain mean
        torch.testing.assert_close(nowhere, plain(**batch))
        assert abs(float(halfway - plain(**batch))) > 1e-4
        with pytest.raises(ValueError, match="figure masks"):
            boosted(**batch)


def test_bf16_autocast_trains(tmp_path):
    model = build_model(PROFILE.model, seed=0)
    settings = _settings(stage1_steps=2, batch_size=2, mixed_precision="bf16")
    history = train_stage(model, 1, RandomPairs(4), settings, seed=0, checkpoint_dir=tmp_path, progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert next(model.denoising_unet.parameters()).dtype == torch.float32  # master weights stay fp32


def test_base_model_is_trained_once_and_cached(tmp_path, monkeypatch):
    profile = PROFILE.model_copy(update={"train": PROFILE.train.model_copy(update={"stage1_steps": 2, "stage2_steps": 1})})
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert trained_on(profile) is None  # not cached yet
    model, history = load_or_train_base_model(profile, progress=False)  # default root: $POSEGUARD_CACHE/models
    assert (tmp_path / "elsewhere" / "models" / training_key(profile) / "model").is_dir()
    model, history = load_or_train_base_model(profile, cache_root=tmp_path, progress=False)
    folder = tmp_path / training_key(profile)
    assert (folder / "loss_history.csv").exists() and (folder / "loss_history.json").exists()
    assert json.loads((folder / "training.json").read_text())["machine"] == device_description()
    assert trained_on(profile, cache_root=tmp_path) == trained_on(profile) == device_description()
    assert list(history["stage"]) == [1, 1, 2]
    assert not list(tmp_path.glob("*.checkpoints"))
    cached, cached_history = load_or_train_base_model(profile, cache_root=tmp_path, progress=False)
    assert cached_history["loss"].tolist() == history["loss"].tolist()
    for (name, a), b in zip(model.state_dict().items(), cached.state_dict().values()):
        assert torch.equal(a, b), name
    other = profile.model_copy(update={"seed": 1})
    assert training_key(other) != training_key(profile)


def test_cache_dir_is_the_environment_s_or_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir("models", "x") == tmp_path / "mine" / "models" / "x"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("extractors") == tmp_path / "home" / ".cache" / "poseguard" / "extractors"
