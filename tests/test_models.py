"""The generator: parts, reference attention, motion UNet, sampling, persistence, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from poseguard_lib.config import ConfigError, ModelSettings, SamplingSettings, load_profile
from poseguard_lib.models import AnimateAnyone, PerFrameGroupNorm, build_model
from poseguard_lib.models.components import ReferenceConditions
from poseguard_lib.models.pipeline import (
    GenerationInputError, balance_subpixel_phases, context_windows, generate_images, generate_video, initial_noise,
)

torch.set_num_threads(1)
SIZE = 32
SAMPLING = SamplingSettings(num_inference_steps=3, guidance_scale=2.0, context_frames=4, context_overlap=1)


def _randomise(module: nn.Module, seed: int) -> None:
    """Give zero-initialised layers weights, so that their path visibly changes outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def settings() -> ModelSettings:
    return load_profile("tiny").model


@pytest.fixture(scope="module")
def model(settings) -> AnimateAnyone:
    built = build_model(settings, seed=0).eval()
    _randomise(built.pose_guider.conv_out, seed=1)
    return built


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _denoise(model, noisy, references, poses, rows=None):
    conditions = model.reference_conditions(references)
    if rows is not None:
        conditions = ReferenceConditions(conditions.bank, rows, conditions.image_embeds)
    timesteps = torch.full((noisy.shape[0],), 500)
    return model.denoise(noisy, timesteps, conditions, model.pose_features(poses))


# ----------------------------------------------------------------------------- building
def test_build_is_seeded_and_names_its_parts(settings):
    a, b = build_model(settings, seed=3), build_model(settings, seed=3)
    for name in ("reference_unet", "denoising_unet", "pose_guider", "image_encoder", "motion_adapter"):
        assert isinstance(getattr(a, name), nn.Module)
    assert a.vae is None and a.scheduler.config.prediction_type == "v_prediction"
    assert a.scheduler.config.rescale_betas_zero_snr and a.scheduler.config.timestep_spacing == "trailing"
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    c = build_model(settings, seed=4)
    assert not torch.equal(a.denoising_unet.conv_in.weight, c.denoising_unet.conv_in.weight)


def test_paper_settings_give_sd15_unet_layout():
    from poseguard_lib.models.components import unet_config

    config = unet_config(load_profile("paper").model)
    assert config["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert config["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert config["in_channels"] == 4 and config["cross_attention_dim"] == 768
    assert config["attention_head_dim"] == 8 and config["block_out_channels"] == (320, 640, 1280, 1280)


def test_inconsistent_widths_are_rejected_with_a_message():
    raw = load_profile("tiny").model.model_dump()
    with pytest.raises(ValueError, match="pose_guider_channels"):
        ModelSettings.model_validate({**raw, "pose_guider_channels": (8, 16, 32)})
    with pytest.raises(ValueError, match="block_has_attention"):
        ModelSettings.model_validate({**raw, "block_has_attention": (True,)})
    with pytest.raises(ConfigError, match="unknown profile"):
        load_profile("huge")


# ----------------------------------------------------------------------------- conditioning
def test_reference_attention_changes_conditional_rows_only(model):
    noisy = torch.randn(2, model.denoising_unet.config.in_channels, SIZE // 2, SIZE // 2)
    poses = _images(2, 1)
    with torch.no_grad():
        conditions_a = model.reference_conditions(_images(2, 2))
        conditions_b = model.reference_conditions(_images(2, 3))
        features = model.pose_features(poses)
        t = torch.full((2,), 500)

        def run(conditions, rows):  # the same (zero) CLIP context, so only reference attention differs
            zero = torch.zeros_like(conditions.image_embeds)
            return model.denoise(noisy, t, ReferenceConditions(conditions.bank, rows, zero), features)

        with_bank = run(conditions_a, torch.tensor([0, 1]))
        without_bank = run(conditions_a, torch.tensor([-1, -1]))
        mixed_a = run(conditions_a, torch.tensor([0, -1]))
        mixed_b = run(conditions_b, torch.tensor([0, -1]))
    assert (with_bank - without_bank).abs().max() > 1e-3
    assert (mixed_a[0] - mixed_b[0]).abs().max() > 1e-3  # row 0 reads its reference
    assert torch.equal(mixed_a[1], mixed_b[1])  # row 1 (unconditional) ignores it entirely
    torch.testing.assert_close(mixed_a[1], without_bank[1])


def test_rows_are_routed_to_their_own_reference(model):
    noisy = torch.randn(3, model.denoising_unet.config.in_channels, SIZE // 2, SIZE // 2)
    references, poses = _images(3, 4), _images(3, 5)
    with torch.no_grad():
        together = _denoise(model, noisy, references, poses, rows=torch.tensor([0, -1, 2]))
        alone = [_denoise(model, noisy[i : i + 1], references[i : i + 1], poses[i : i + 1]) for i in (0, 2)]
        plain = _denoise(model, noisy[1:2], references[1:2], poses[1:2], rows=torch.tensor([-1]))
    torch.testing.assert_close(together[0], alone[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together[2], alone[1][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(together[1], plain[0], atol=1e-5, rtol=1e-4)


def test_gradients_reach_referencenet_and_pose_guider(model):
    trained = copy.deepcopy(model).train()
    noisy = torch.randn(2, trained.denoising_unet.config.in_channels, SIZE // 2, SIZE // 2)
    prediction = trained.predict(noisy, torch.tensor([100, 800]), _images(2, 6), _images(2, 7))
    prediction.square().mean().backward()
    reference_grads = [p.grad for p in trained.reference_unet.parameters() if p.grad is not None]
    assert reference_grads and any(g.abs().sum() > 0 for g in reference_grads)
    assert trained.pose_guider.conv_in.weight.grad.abs().sum() > 0


def test_pose_changes_output_and_mismatched_features_fail(model):
    noisy = torch.randn(1, model.denoising_unet.config.in_channels, SIZE // 2, SIZE // 2)
    reference = _images(1, 8)
    with torch.no_grad():
        a = _denoise(model, noisy, reference, _images(1, 9))
        b = _denoise(model, noisy, reference, _images(1, 10))
        assert (a - b).abs().max() > 1e-4
        conditions = model.reference_conditions(reference)
        wrong = model.pose_features(_images(2, 9))
        with pytest.raises(ValueError, match="pose features"):
            model.denoise(noisy, torch.tensor([500]), conditions, wrong)


def test_deepcopy_keeps_the_wiring(model):
    clone = copy.deepcopy(model)
    clone.check_wiring()
    noisy = torch.randn(1, model.denoising_unet.config.in_channels, SIZE // 2, SIZE // 2)
    with torch.no_grad():
        torch.testing.assert_close(
            _denoise(clone, noisy, _images(1, 1), _images(1, 2)), _denoise(model, noisy, _images(1, 1), _images(1, 2))
        )


# ----------------------------------------------------------------------------- motion
def test_per_frame_group_norm_equals_group_norm_on_each_frame():
    norm = PerFrameGroupNorm(4, 8)
    _randomise(norm, seed=2)
    clip = torch.randn(2, 8, 5, 6, 6)
    out = norm(clip)
    reference = nn.GroupNorm(4, 8)
    reference.load_state_dict(norm.state_dict())
    for f in range(clip.shape[2]):
        torch.testing.assert_close(out[:, :, f], reference(clip[:, :, f]))
    # the stock norm mixes statistics across frames, which this patch exists to avoid
    assert (reference(clip) - out).abs().max() > 1e-3


def test_motion_unet_shares_weights_and_patches_every_motion_norm(model):
    video = model.video_unet()
    norms = [m.norm for n, m in video.named_modules() if n.endswith(tuple(f"motion_modules.{i}" for i in range(4)))]
    assert norms and all(isinstance(n, PerFrameGroupNorm) for n in norms)
    assert video.conv_in.weight is model.denoising_unet.conv_in.weight
    assert video.down_blocks[-1].attentions[0] is model.denoising_unet.down_blocks[-1].attentions[0]
    assert video.up_blocks[0].motion_modules is model.motion_adapter.up_blocks[0].motion_modules


def test_fresh_motion_unet_reproduces_the_image_unet_frame_by_frame(model):
    """Zero-initialised motion modules: the video UNet is the 2D UNet applied to each frame."""
    frames, channels = 5, model.denoising_unet.config.in_channels
    clips = torch.randn(2, channels, frames, SIZE // 2, SIZE // 2)
    references, poses = _images(2, 11), _images(2 * frames, 12)
    timesteps = torch.tensor([300, 700])
    with torch.no_grad():
        conditions = model.reference_conditions(references)
        conditions = ReferenceConditions(conditions.bank, torch.tensor([0, -1]), conditions.image_embeds)
        features = model.pose_features(poses)
        video = model.denoise(clips, timesteps, conditions, features, video_unet=model.video_unet())
        per_frame = model.denoise(
            clips.transpose(1, 2).flatten(0, 1),
            timesteps.repeat_interleave(frames),
            ReferenceConditions(
                conditions.bank, conditions.rows.repeat_interleave(frames),
                conditions.image_embeds.repeat_interleave(frames, 0),
            ),
            features,
        )
    torch.testing.assert_close(video.transpose(1, 2).flatten(0, 1), per_frame, atol=1e-5, rtol=1e-4)


def test_trained_motion_modules_mix_frames(model):
    moved = copy.deepcopy(model)
    _randomise(moved.motion_adapter, seed=5)
    moved.motion_adapter.apply(lambda m: m.reset_parameters() if isinstance(m, nn.GroupNorm) else None)
    clips = torch.randn(1, moved.denoising_unet.config.in_channels, 4, SIZE // 2, SIZE // 2)
    with torch.no_grad():
        conditions = moved.reference_conditions(_images(1, 13))
        features = moved.pose_features(_images(4, 14))
        out = moved.denoise(clips, torch.tensor([500]), conditions, features, video_unet=moved.video_unet())
        changed = clips.clone()
        changed[:, :, 3] += 1.0
        out2 = moved.denoise(changed, torch.tensor([500]), conditions, features, video_unet=moved.video_unet())
    assert (out[:, :, 0] - out2[:, :, 0]).abs().max() > 1e-4  # frame 0 sees frame 3


# ----------------------------------------------------------------------------- sampling
def test_generate_images_is_seeded_and_batch_independent(model):
    references, poses = _images(3, 20), _images(3, 21)
    a = generate_images(model, references, poses, SAMPLING, seed=7, batch_size=2, progress=False)
    b = generate_images(model, references, poses, SAMPLING, seed=7, batch_size=3, progress=False)
    c = generate_images(model, references, poses, SAMPLING, seed=8, batch_size=3, progress=False)
    assert a.shape == (3, 3, SIZE, SIZE) and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a - c).abs().max() > 1e-2
    single = generate_images(model, references[0], poses[:2], SAMPLING, seed=7, progress=False)
    assert single.shape == (2, 3, SIZE, SIZE)


def test_balanced_noise_has_equal_patch_position_means_and_keeps_the_rest():
    noise = torch.randn((2, 12, 5, 8, 8), generator=torch.Generator().manual_seed(0))  # (B, 3 colours · 2², T, h, w)
    balanced = balance_subpixel_phases(noise, patch=2)
    by_position = balanced.unflatten(1, (3, 4)).mean((-2, -1))  # (B, 3, 4, T)
    assert torch.allclose(by_position, by_position[:, :, :1].expand_as(by_position), atol=1e-6)
    colour_means = (x.unflatten(1, (3, 4)).mean((2, -2, -1)) for x in (noise, balanced))
    assert torch.allclose(*colour_means, atol=1e-6)
    removed = noise - balanced  # one constant per frame, colour and position: nothing else changes
    assert torch.allclose(removed, removed[..., :1, :1].expand_as(removed), atol=1e-6)
    assert torch.allclose(balance_subpixel_phases(balanced, patch=2), balanced, atol=1e-6)


def test_balanced_noise_is_opt_in_and_needs_pixel_patches(model, settings):
    balanced = SAMPLING.model_copy(update={"balanced_subpixel_noise": True})
    assert "balanced_subpixel_noise" not in SAMPLING.cache_record()  # outputs cached before the option keep their keys
    assert balanced.cache_record()["balanced_subpixel_noise"] is True
    shape = (1, model.denoising_unet.config.in_channels, SIZE // 2, SIZE // 2)
    assert not torch.equal(initial_noise(model, shape, 0, SAMPLING), initial_noise(model, shape, 0, balanced))
    references, poses = _images(2, seed=5), _images(2, seed=6)
    first, again = (generate_images(model, references, poses, balanced, seed=3, progress=False) for _ in range(2))
    assert torch.equal(first, again)
    unpatched = build_model(settings.model_copy(update={"pixel_patch_size": 1}), seed=0)
    with pytest.raises(ValueError, match="pixel_patch_size > 1"):
        generate_images(unpatched, references, poses, balanced, seed=3, progress=False)


def test_context_windows_cover_every_frame():
    assert context_windows(3, 4, 1) == [[0, 1, 2]]
    windows = context_windows(11, 4, 1)
    assert all(len(w) == 4 for w in windows) and windows[0][0] == 0 and windows[-1][-1] == 10
    assert sorted({f for w in windows for f in w}) == list(range(11))
    assert all(len(set(a) & set(b)) >= 1 for a, b in zip(windows, windows[1:]))


def test_windowed_video_matches_one_window_when_frames_are_independent(model):
    """With identity motion modules, averaging overlapping windows must not change any frame."""
    reference, poses = _images(1, 30)[0], _images(10, 31)
    windowed = generate_video(model, reference, poses, SAMPLING, seed=1, window_batch=2, progress=False)
    whole = SAMPLING.model_copy(update={"context_frames": 10, "context_overlap": 0})
    single = generate_video(model, reference, poses, whole, seed=1, progress=False)
    assert windowed.shape == (10, 3, SIZE, SIZE)
    torch.testing.assert_close(windowed, single, atol=1e-4, rtol=0)
    again = generate_video(model, reference, poses, SAMPLING, seed=1, window_batch=4, progress=False)
    torch.testing.assert_close(windowed, again, atol=1e-5, rtol=0)


def test_guidance_one_skips_unconditional_rows(model):
    references, poses = _images(2, 40), _images(2, 41)
    plain = SAMPLING.model_copy(update={"guidance_scale": 1.0})
    out = generate_images(model, references, poses, plain, seed=0, progress=False)
    guided = generate_images(model, references, poses, SAMPLING, seed=0, progress=False)
    assert (out - guided).abs().max() > 1e-3


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_half_precision_weights_sample_like_float32(settings, space):
    """A GPU user casts the model to bf16/fp16 (as Moore does); the float32 sampler state must follow."""
    if space == "latent":  # the SD VAE's factor 8 needs a PoseGuider that downsamples 8 times
        settings = settings.model_copy(update={"space": "latent", "pose_guider_channels": [8, 8, 8, 16]})
    model = build_model(settings, seed=0).eval()
    size = 2 * model.size_multiple
    reference, poses = _images(1, 50)[0, :, :size, :size], _images(4, 51)[:, :, :size, :size]
    video32 = generate_video(model, reference, poses, SAMPLING, seed=0, progress=False)
    images32 = generate_images(model, reference, poses[:2], SAMPLING, seed=0, progress=False)
    model.to(torch.bfloat16)
    video16 = generate_video(model, reference, poses, SAMPLING, seed=0, progress=False)
    images16 = generate_images(model, reference, poses[:2], SAMPLING, seed=0, progress=False)
    assert video16.dtype == images16.dtype == torch.float32
    assert (video16 - video32).abs().mean() < 0.02 and (images16 - images32).abs().mean() < 0.02
    assert (video32 - video32.roll(1, dims=0)).abs().mean() > 0.05  # frames differ far more than that


# ----------------------------------------------------------------------------- persistence
def test_save_and_load_round_trip(model, tmp_path):
    moved = copy.deepcopy(model)
    _randomise(moved.motion_adapter, seed=9)
    moved.motion_adapter.apply(lambda m: m.reset_parameters() if isinstance(m, nn.GroupNorm) else None)
    moved.save_pretrained(tmp_path / "model")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    loaded = AnimateAnyone.from_pretrained(tmp_path / "model").eval()
    assert loaded.settings == moved.settings
    assert (tmp_path / "model" / "pose_guider" / "diffusion_pytorch_model.safetensors").exists()
    references, poses = _images(2, 50), _images(2, 51)
    torch.testing.assert_close(
        generate_images(loaded, references, poses, SAMPLING, seed=2, progress=False),
        generate_images(moved, references, poses, SAMPLING, seed=2, progress=False),
        atol=0, rtol=0,
    )
    video_poses = _images(5, 52)
    torch.testing.assert_close(
        generate_video(loaded, references[0], video_poses, SAMPLING, seed=2, progress=False),
        generate_video(moved, references[0], video_poses, SAMPLING, seed=2, progress=False),
        atol=0, rtol=0,
    )
    with pytest.raises(FileNotFoundError, match="not a saved AnimateAnyone"):
        AnimateAnyone.from_pretrained(tmp_path)


def test_saving_and_loading_draw_no_progress_bar(model, tmp_path, capfd):
    from transformers.utils import logging as transformers_logging

    model.save_pretrained(tmp_path / "model")
    AnimateAnyone.from_pretrained(tmp_path / "model")
    output = capfd.readouterr().err
    assert "Writing model shards" not in output and "Loading weights" not in output
    assert transformers_logging.is_progress_bar_enabled()  # the caller's setting is restored


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "references, poses, message",
    [
        (torch.rand(2, 3, SIZE, SIZE), torch.rand(2, SIZE, SIZE, 3), r"poses must have shape \(N, 3, H, W\)"),
        (torch.rand(2, 3, SIZE, SIZE), torch.rand(3, SIZE, SIZE), r"poses must have shape"),
        (torch.rand(2, 3, 24, 24), torch.rand(2, 3, SIZE, SIZE), "same height and width"),
        (torch.rand(2, 3, 18, 18), torch.rand(2, 3, 18, 18), "multiples of 4"),
        ((torch.rand(2, 3, SIZE, SIZE) * 255).to(torch.uint8), torch.rand(2, 3, SIZE, SIZE), "float tensor"),
        (torch.rand(2, 3, SIZE, SIZE) * 255, torch.rand(2, 3, SIZE, SIZE), r"\[0, 1\]"),
        (torch.rand(2, 3, SIZE, SIZE), torch.full((2, 3, SIZE, SIZE), float("nan")), "NaN"),
        (torch.rand(3, 3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE), "3 references for 2 poses"),
        (torch.rand(2, 3, SIZE, SIZE).numpy(), torch.rand(2, 3, SIZE, SIZE), "torch.Tensor"),
    ],
)
def test_bad_image_inputs_are_named(model, references, poses, message):
    with pytest.raises(GenerationInputError, match=message):
        generate_images(model, references, poses, SAMPLING, progress=False)


def test_bad_video_inputs_are_named(model):
    with pytest.raises(GenerationInputError, match=r"reference must have shape \(3, H, W\)"):
        generate_video(model, torch.rand(1, 3, SIZE, SIZE), torch.rand(4, 3, SIZE, SIZE), SAMPLING, progress=False)
    with pytest.raises(GenerationInputError, match=r"poses must have shape \(T, 3, H, W\)"):
        generate_video(model, torch.rand(3, SIZE, SIZE), torch.rand(1, 4, 3, SIZE, SIZE), SAMPLING, progress=False)
    too_long = SAMPLING.model_copy(update={"context_frames": 64})
    with pytest.raises(GenerationInputError, match="max sequence length"):
        generate_video(model, torch.rand(3, SIZE, SIZE), torch.rand(4, 3, SIZE, SIZE), too_long, progress=False)
