"""Sampling: pose images + a reference image → frames (DDIM, classifier-free guidance).

As in Moore-AnimateAnyone: the ReferenceNet, the image encoder and the PoseGuider run once per
reference / pose sequence, not once per step; guidance contrasts the full condition with rows
that have no reference (plain self-attention, zero image embedding) but keep the pose. Videos
longer than the motion window are denoised in overlapping windows whose predictions are
averaged frame by frame at every step. All noise comes from one seeded CPU generator, drawn
up front for the whole request, so results do not depend on how the work is batched.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from poseguard_lib.config import SamplingSettings
from poseguard_lib.models.components import AnimateAnyone, ReferenceConditions


class GenerationInputError(ValueError):
    """A reference or pose input that the generator cannot take (shape, dtype, range, size)."""


def check_images(name: str, images: object, layout: str, size_multiple: int) -> torch.Tensor:
    """Validate float images in [0, 1] of ``layout`` (e.g. "(N, 3, H, W)"), sides divisible by ``size_multiple``."""
    ndim = layout.count(",") + 1
    if not isinstance(images, torch.Tensor):
        raise GenerationInputError(f"{name} must be a torch.Tensor {layout}, got {type(images).__name__}")
    if not images.is_floating_point():
        raise GenerationInputError(
            f"{name} must be a float tensor in [0, 1], got dtype {images.dtype} (for uint8 use x.float() / 255)"
        )
    if images.ndim != ndim or images.shape[-3] != 3:
        raise GenerationInputError(f"{name} must have shape {layout}, got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height % size_multiple or width % size_multiple:
        raise GenerationInputError(
            f"{name} is {height}×{width}; this model needs sides that are multiples of {size_multiple}"
        )
    if images.numel() == 0:
        raise GenerationInputError(f"{name} is empty")
    if not bool(torch.isfinite(images).all()):
        raise GenerationInputError(f"{name} contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise GenerationInputError(f"{name} values must lie in [0, 1], found [{low:.3g}, {high:.3g}]")
    return images


def _check_same_size(references: torch.Tensor, poses: torch.Tensor) -> None:
    if references.shape[-2:] != poses.shape[-2:]:
        raise GenerationInputError(
            f"reference is {tuple(references.shape[-2:])} but poses are {tuple(poses.shape[-2:])}; "
            "they must have the same height and width"
        )


def sampling_scheduler(model: AnimateAnyone, sampling: SamplingSettings) -> DDIMScheduler:
    """A fresh DDIM scheduler (the model's is never mutated) with the sampling schedule set."""
    scheduler = DDIMScheduler.from_config(model.scheduler.config, beta_schedule=sampling.beta_schedule)
    scheduler.set_timesteps(sampling.num_inference_steps)
    return scheduler


def _with_unconditional(
    conditions: ReferenceConditions, pose_features: torch.Tensor, guidance_scale: float
) -> tuple[ReferenceConditions, torch.Tensor]:
    """Under guidance, stack unconditional rows (no reference, zero embedding, same pose) on top."""
    if guidance_scale <= 1.0:
        return conditions, pose_features
    unconditional = ReferenceConditions(
        bank=conditions.bank,
        rows=torch.cat([torch.full_like(conditions.rows, -1), conditions.rows]),
        image_embeds=torch.cat([torch.zeros_like(conditions.image_embeds), conditions.image_embeds]),
    )
    return unconditional, torch.cat([pose_features, pose_features])


def _guided_prediction(model, latents, t, conditions, pose_features, guidance_scale, video_unet=None):
    """The denoiser's v for ``latents`` at step ``t``, with classifier-free guidance above scale 1."""
    guided = guidance_scale > 1.0
    model_input = torch.cat([latents, latents]) if guided else latents
    timesteps = torch.full((model_input.shape[0],), int(t), dtype=torch.long, device=latents.device)
    prediction = model.denoise(model_input, timesteps, conditions, pose_features, video_unet=video_unet)
    if guided:
        unconditional, conditional = prediction.float().chunk(2)
        prediction = unconditional + guidance_scale * (conditional - unconditional)
    return prediction


def balance_subpixel_phases(noise: torch.Tensor, patch: int) -> torch.Tensor:
    """``noise`` (B, colours·patch², [T,] h, w) with each frame's mean made equal across the patch positions.

    The Gaussian conditioned on those differences being zero: the projection that removes them
    leaves every other direction of the draw untouched (each colour keeps its mean).
    """
    grouped = noise.unflatten(1, (noise.shape[1] // patch**2, patch**2))  # pixel_unshuffle's channel order
    position_means = grouped.mean((-2, -1), keepdim=True)
    return (grouped - position_means + position_means.mean(2, keepdim=True)).flatten(1, 2)


def initial_noise(model: AnimateAnyone, shape: tuple[int, ...], seed: int, sampling: SamplingSettings) -> torch.Tensor:
    """The seeded starting noise of a request, sub-pixel balanced when ``sampling`` asks for it."""
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
    if not sampling.balanced_subpixel_noise:
        return noise
    if model.vae is not None or model.downscale == 1:
        raise ValueError("balanced_subpixel_noise applies to pixel-space models with pixel_patch_size > 1 only")
    return balance_subpixel_phases(noise, model.downscale)


@torch.no_grad()
def generate_images(
    model: AnimateAnyone,
    references: torch.Tensor,
    poses: torch.Tensor,
    sampling: SamplingSettings,
    *,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Pose → image with the 2D denoiser: ``references`` (N, 3, H, W) or one (3, H, W) for all,
    ``poses`` (N, 3, H, W), all in [0, 1] → images (N, 3, H, W) in [0, 1] on the CPU."""
    model.check_wiring()
    poses = check_images("poses", poses, "(N, 3, H, W)", model.size_multiple)
    if isinstance(references, torch.Tensor) and references.ndim == 3:
        references = check_images("reference", references, "(3, H, W)", model.size_multiple)
        references = references.expand(poses.shape[0], -1, -1, -1)
    references = check_images("references", references, "(N, 3, H, W)", model.size_multiple)
    _check_same_size(references, poses)
    if references.shape[0] != poses.shape[0]:
        raise GenerationInputError(
            f"got {references.shape[0]} references for {poses.shape[0]} poses; give one per pose or a single (3, H, W)"
        )
    scheduler = sampling_scheduler(model, sampling)
    n, channels = poses.shape[0], model.denoising_unet.config.in_channels
    height, width = (side // model.downscale for side in poses.shape[-2:])
    noise = initial_noise(model, (n, channels, height, width), seed, sampling)
    outputs = []
    bar = tqdm(total=n * len(scheduler.timesteps), desc="sampling images", unit="step", disable=not progress)
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        conditions, pose_features = _with_unconditional(
            model.reference_conditions(references[part]), model.pose_features(poses[part]), sampling.guidance_scale
        )
        latents = noise[part].to(model.device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            prediction = _guided_prediction(model, latents, t, conditions, pose_features, sampling.guidance_scale)
            latents = scheduler.step(prediction, t, latents).prev_sample
            bar.update(latents.shape[0])
        outputs.append(model.decode(latents).cpu())
    bar.close()
    return torch.cat(outputs)


def context_windows(num_frames: int, window: int, overlap: int) -> list[list[int]]:
    """Frame indices of overlapping windows covering ``num_frames`` (the last one ends at the end)."""
    if num_frames <= window:
        return [list(range(num_frames))]
    stride = window - overlap
    starts = list(range(0, num_frames - window, stride)) + [num_frames - window]
    return [list(range(s, s + window)) for s in starts]


@torch.no_grad()
def generate_video(
    model: AnimateAnyone,
    reference: torch.Tensor,
    poses: torch.Tensor,
    sampling: SamplingSettings,
    *,
    seed: int = 0,
    window_batch: int = 4,
    progress: bool = True,
) -> torch.Tensor:
    """Reference (3, H, W) + pose sequence (T, 3, H, W) in [0, 1] → video (T, 3, H, W) in [0, 1].

    Windows of ``sampling.context_frames`` frames overlapping by ``context_overlap`` are
    denoised ``window_batch`` at a time as one batch of the motion UNet.
    """
    model.check_wiring()
    reference = check_images("reference", reference, "(3, H, W)", model.size_multiple)
    poses = check_images("poses", poses, "(T, 3, H, W)", model.size_multiple)
    _check_same_size(reference, poses)
    if sampling.context_frames > model.settings.motion_max_seq_length:
        raise GenerationInputError(
            f"context_frames={sampling.context_frames} exceeds the motion modules' "
            f"max sequence length {model.settings.motion_max_seq_length}"
        )
    video_unet = model.video_unet()
    scheduler = sampling_scheduler(model, sampling)
    frames, channels = poses.shape[0], model.denoising_unet.config.in_channels
    height, width = (side // model.downscale for side in poses.shape[-2:])
    latents = initial_noise(model, (1, channels, frames, height, width), seed, sampling).to(model.device)
    latents = latents * scheduler.init_noise_sigma
    reference_conditions = model.reference_conditions(reference[None])
    pose_features = model.pose_features(poses)
    windows = context_windows(frames, sampling.context_frames, sampling.context_overlap)
    counts = torch.zeros(frames, device=model.device)
    for window in windows:
        counts[window] += 1
    for t in tqdm(scheduler.timesteps, desc="sampling video", unit="step", disable=not progress):
        summed = torch.zeros_like(latents, dtype=torch.float32)
        for first in range(0, len(windows), window_batch):
            group = windows[first : first + window_batch]
            clips = torch.cat([latents[:, :, w] for w in group])
            conditions = ReferenceConditions(
                bank=reference_conditions.bank,
                rows=reference_conditions.rows.repeat(len(group)),
                image_embeds=reference_conditions.image_embeds.expand(len(group), -1, -1),
            )
            conditions, features = _with_unconditional(
                conditions, torch.cat([pose_features[w] for w in group]), sampling.guidance_scale
            )
            prediction = _guided_prediction(
                model, clips, t, conditions, features, sampling.guidance_scale, video_unet=video_unet
            )
            for w, clip_prediction in zip(group, prediction):
                summed[0, :, w] += clip_prediction
        averaged = (summed / counts[None, None, :, None, None]).to(latents.dtype)
        latents = scheduler.step(averaged, t, latents).prev_sample
    frames_first = latents[0].permute(1, 0, 2, 3)
    return model.decode(frames_first).cpu()
