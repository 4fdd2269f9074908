"""Training the generator as Moore-AnimateAnyone does, at the scale a profile allows.

Stage 1 (images): denoiser + ReferenceNet + PoseGuider (+ the image encoder when the profile's is
random-init) learn pose → frame from (reference, pose, target) triples. Stage 2 (video): only the
motion modules learn, on clips, with everything else frozen. Loss (Moore): MSE on v with min-SNR
weighting (γ = 5), noise offset 0.05, t ~ U[0, 1000); 10% of samples drop the reference (zero
image embedding, no reference attention) so classifier-free guidance has something to contrast.
Unlike Moore, who drops whole batches, the drop is per sample (the attention routes rows).

Reproducibility: every random draw of step ``k`` (batch indices, noise, timesteps, drops) comes
from a generator seeded by (seed, stage, k, process), so a run resumed from a checkpoint takes
exactly the steps an uninterrupted run takes. Checkpoints are ``accelerate`` states (model in
safetensors, optimizer, RNG) plus a ``trainer_state.json`` with the step and the loss history.

Mixed precision: bf16 is applied with ``torch.autocast`` here rather than through
``Accelerator(mixed_precision=...)``, whose process-wide state would forbid a second training
with another precision in the same notebook; bf16 needs no loss scaling. fp16 (GPU) goes
through accelerate, which adds the loss scaler. On a 2-core CPU bf16 did not pay off for the
small profile (0.600 vs 0.613 s per stage-1 step at batch 8), so tiny/small train in fp32.

Small-profile recipe (measured on 2 CPU cores, 64×64, short runs from scratch):
at equal wall time batch 8 beat batch 16/32 and lr 1e-3 beat 3e-4 and 2e-3; annealing the
learning rate (cosine) left visibly less noise in samples than a constant rate. Moore's own
settings (batch 4, lr 1e-5 constant) fine-tune pretrained SD weights and stay in ``paper``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from poseguard_lib.config import ProfileConfig, TrainSettings, compute_device
from poseguard_lib.io import atomic_dir, cache_dir, sha256_json, write_csv, write_json
from poseguard_lib.models.components import SETTINGS_FILE, AnimateAnyone, build_model
from poseguard_lib.reporting import device_description

Stage = Literal[1, 2]
STATE_FILE = "trainer_state.json"


# ----------------------------------------------------------------------------- loss
def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weights for v-prediction: min(snr + 1, γ) / (snr + 1) (Hang et al.; Moore)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr_plus_one = alphas_cumprod / (1 - alphas_cumprod) + 1
    return torch.clamp(snr_plus_one, max=gamma) / snr_plus_one


def v_loss(model: AnimateAnyone, prediction, latents, noise, timesteps, gamma: float, weights=None) -> torch.Tensor:
    """Min-SNR-weighted MSE between the predicted and the true velocity, averaged over the batch.

    ``weights`` (broadcastable to the prediction) make the MSE of each sample a weighted mean.
    """
    target = model.scheduler.get_velocity(latents, noise, timesteps)
    squared = (prediction.float() - target.float()) ** 2
    if weights is None:
        per_sample = squared.flatten(1).mean(1)
    else:
        weights = weights.expand_as(squared)
        per_sample = (squared * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)
    return (per_sample * min_snr_weights(model.scheduler, timesteps, gamma)).mean()


class _Objective(nn.Module):
    """A training stage's loss as one module: one forward gives the loss, so DDP sees every trainable
    part in one module."""

    def __init__(self, model: AnimateAnyone, settings: TrainSettings):
        super().__init__()
        self.model = model
        self.gamma = settings.snr_gamma
        self.figure_boost = settings.figure_loss_boost


class ImageObjective(_Objective):
    """Stage 1: reference, pose and noisy target through the 2D denoiser.

    With ``figure_loss_boost`` a diffusion-space position counts 1 + boost times where its pixels
    touch the person (the batch's ``figure`` masks, max-pooled to the diffusion space's size).
    """

    def denoise(self, reference, pose, target, noise, timesteps, with_reference):
        """The velocity predicted for the noised targets, and the clean targets in diffusion space."""
        latents = self.model.encode(target)
        noisy = self.model.scheduler.add_noise(latents, noise, timesteps)
        return self.model.predict(noisy, timesteps, reference, pose, with_reference), latents

    def forward(self, reference, pose, target, noise, timesteps, with_reference, figure=None):
        prediction, latents = self.denoise(reference, pose, target, noise, timesteps, with_reference)
        weights = None
        if self.figure_boost:
            if figure is None:
                raise ValueError("figure_loss_boost needs batches with figure masks (ImagePairDataset(figure_mask=True))")
            weights = 1 + self.figure_boost * figure_positions(figure, latents)
        return v_loss(self.model, prediction, latents, noise, timesteps, self.gamma, weights)


def figure_positions(figure: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w): 1 where a diffusion-space position's pixels touch the person (the (B, 1, H, W)
    ``figure`` masks max-pooled to the latents' size), else 0."""
    return F.adaptive_max_pool2d(figure.to(latents.device), latents.shape[-2:])


class VideoObjective(_Objective):
    """Stage 2: clips (B, T, 3, H, W) through the motion UNet; only motion modules learn."""

    def forward(self, reference, pose, target, noise, timesteps, with_reference):
        batch, frames = target.shape[:2]
        with torch.no_grad():  # frozen parts: ReferenceNet, image encoder, PoseGuider
            conditions = self.model.reference_conditions(reference, with_reference)
            pose_features = self.model.pose_features(pose.flatten(0, 1))
            latents = self.model.encode(target.flatten(0, 1))
        latents = latents.unflatten(0, (batch, frames)).transpose(1, 2)  # (B, C, T, h, w)
        noisy = self.model.scheduler.add_noise(latents, noise, timesteps)
        # The motion UNet shares its modules with the model; building it is cheap and keeping
        # it out of this module keeps the state dict free of duplicate (shared) tensors.
        prediction = self.model.denoise(noisy, timesteps, conditions, pose_features, self.model.video_unet())
        return v_loss(self.model, prediction, latents, noise, timesteps, self.gamma)


def trainable_parameters(model: AnimateAnyone, stage: Stage, settings: TrainSettings) -> list[nn.Parameter]:
    """Set ``requires_grad`` for the stage and return the parameters the optimizer updates."""
    model.requires_grad_(False)
    if stage == 1:
        parts = [model.reference_unet, model.denoising_unet, model.pose_guider]
        if settings.train_image_encoder:
            parts.append(model.image_encoder)
    else:
        if model.motion_adapter is None:
            raise ValueError("stage 2 needs a model with a motion adapter")
        parts = [model.motion_adapter]
    for part in parts:
        part.requires_grad_(True)
    return [p for part in parts for p in part.parameters()]


def learning_rate_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (a pure function: resumes need no state).

    ``constant`` is Moore's; ``cosine`` anneals to zero over the stage, which a from-scratch
    model trained for a few thousand steps needs to shed the last of its sampling noise.
    """
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * step / steps))


# ----------------------------------------------------------------------------- randomness
def step_generator(seed: int, stage: Stage, step: int, process: int) -> torch.Generator:
    """The generator behind every random draw of one step (resume-exact by construction)."""
    state = np.random.SeedSequence([seed, stage, step, process]).generate_state(1)[0]
    return torch.Generator("cpu").manual_seed(int(state))


def noise_offset_group(model: AnimateAnyone) -> int:
    """How many channels of the diffusion space share one noise-offset value: a colour's pixel-patch
    positions for a pixel-space model (see :func:`draw_batch`), else each channel its own."""
    return 1 if model.vae is not None else model.downscale**2


def draw_batch(
    dataset, batch_size: int, latent_shape: Sequence[int], settings: TrainSettings, generator, offset_group: int = 1
):
    """Indices, noise (with offset), timesteps and condition drops for one step.

    The noise offset is one value per channel of a sample (per clip for videos); in patched
    pixel space the ``offset_group`` channels of one colour share it, so it shifts the colour
    of the whole image, as the offset is meant to, rather than painting a 2×2 pattern.
    """
    indices = torch.randint(len(dataset), (batch_size,), generator=generator).tolist()
    items = [dataset[i] for i in indices]
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    noise = torch.randn((batch_size, *latent_shape), generator=generator)
    channels, rest = latent_shape[0], (1,) * (len(latent_shape) - 1)
    offset = torch.randn((batch_size, channels // offset_group, *rest), generator=generator)
    batch["noise"] = noise + settings.noise_offset * offset.repeat_interleave(offset_group, dim=1)
    batch["timesteps"] = torch.randint(0, 1000, (batch_size,), generator=generator)
    batch["with_reference"] = torch.rand(batch_size, generator=generator) >= settings.condition_dropout
    return batch


# ----------------------------------------------------------------------------- checkpoints
def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint (one with a trainer state) under ``directory``."""
    done = sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def save_checkpoint(accelerator: Accelerator, directory: Path, step: int, history: list[dict], keep: int = 2):
    """accelerate state + trainer state in ``step_XXXXXXX``, renamed into place when complete."""
    final = directory / f"step_{step:07d}"
    partial = directory / f".{final.name}.partial"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(partial / STATE_FILE, {"step": step, "history": history})
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).exists())[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------- one stage
def train_stage(
    model: AnimateAnyone,
    stage: Stage,
    dataset,
    settings: TrainSettings,
    *,
    seed: int,
    checkpoint_dir: str | Path,
    progress: bool = True,
) -> list[dict]:
    """Train one stage to its step budget, resuming from the newest checkpoint in ``checkpoint_dir``.

    Returns the loss history of the whole stage (resumed steps included): dicts with
    ``stage``, ``step``, ``loss``, ``seconds`` (wall time of that step).
    """
    steps = settings.stage1_steps if stage == 1 else settings.stage2_steps
    batch_size = settings.batch_size if stage == 1 else settings.video_batch_size
    lr = settings.learning_rate if stage == 1 else settings.stage2_learning_rate
    checkpoint_dir = Path(checkpoint_dir)
    if steps == 0:
        return []
    if len(dataset) == 0:
        raise ValueError(f"stage {stage} got an empty dataset")

    params = trainable_parameters(model, stage, settings)
    objective = (ImageObjective if stage == 1 else VideoObjective)(model, settings)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=settings.weight_decay)
    accelerator = Accelerator(
        cpu=compute_device().type == "cpu",
        mixed_precision="fp16" if settings.mixed_precision == "fp16" else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    objective, optimizer = accelerator.prepare(objective, optimizer)
    autocast = (
        torch.autocast(accelerator.device.type, dtype=torch.bfloat16)
        if settings.mixed_precision == "bf16"
        else contextlib.nullcontext()
    )

    start, history = 0, []
    resume_from = latest_checkpoint(checkpoint_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = _read_state(resume_from)
        start, history = state["step"], state["history"]
    sample_shape = latent_shape(model, dataset[0]["target"])
    offset_group = noise_offset_group(model)

    objective.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"stage {stage}", disable=not progress)
    for step in bar:
        began = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr * learning_rate_factor(settings.lr_schedule, step, steps)
        generator = step_generator(seed, stage, step, accelerator.process_index)
        batch = draw_batch(dataset, batch_size, sample_shape, settings, generator, offset_group)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with autocast:
            loss = objective(**batch)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(accelerator.reduce(loss.detach(), reduction="mean"))
        history.append({"stage": stage, "step": step + 1, "loss": loss_value, "seconds": time.perf_counter() - began})
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == steps:
            save_checkpoint(accelerator, checkpoint_dir, step + 1, history)
    bar.close()
    model.requires_grad_(False)
    return history


def _read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def latent_shape(model: AnimateAnyone, target: torch.Tensor) -> tuple[int, ...]:
    """Shape of one sample's noise: (C, h, w) for frames (3, H, W), (C, T, h, w) for clips (T, 3, H, W)."""
    channels = model.denoising_unet.config.in_channels
    height, width = (side // model.downscale for side in target.shape[-2:])
    if target.ndim == 4:
        return (channels, target.shape[0], height, width)
    return (channels, height, width)


# ----------------------------------------------------------------------------- cached base model
def training_key(profile_cfg: ProfileConfig) -> str:
    """Cache key: everything that changes the trained weights (data, model, training, seed)."""
    relevant = {k: profile_cfg.model_dump(mode="json")[k] for k in ("profile", "seed", "model")}
    relevant["train"] = profile_cfg.train.cache_record()
    relevant["data"] = profile_cfg.data.cache_record()
    return f"{profile_cfg.profile}-{sha256_json(relevant)[:16]}"


def base_cache_folder(profile_cfg: ProfileConfig, cache_root: str | Path | None = None) -> Path:
    """Where the profile's trained base is cached: ``<cache_root>/<training key>`` (default root:
    ``cache_dir("models")``)."""
    return (Path(cache_root) if cache_root is not None else cache_dir("models")) / training_key(profile_cfg)


def trained_on(profile_cfg: ProfileConfig, cache_root: str | Path | None = None) -> str | None:
    """The machine that trained the profile's cached base (``training.json``), or None for a base not
    cached or cached before the machine was recorded. Bases trained on different machine kinds differ
    (float sums run in another order), so tables that compare bases say where each was trained."""
    record = base_cache_folder(profile_cfg, cache_root) / "training.json"
    return json.loads(record.read_text()).get("machine") if record.exists() else None


def train_base_model(
    profile_cfg: ProfileConfig, image_dataset, video_dataset, checkpoint_dir: str | Path, progress: bool = True
) -> tuple[AnimateAnyone, pd.DataFrame]:
    """Build the profile's model and run both stages (resumable through ``checkpoint_dir``)."""
    checkpoint_dir = Path(checkpoint_dir)
    model = build_model(profile_cfg.model, seed=profile_cfg.seed)
    history = train_stage(
        model, 1, image_dataset, profile_cfg.train,
        seed=profile_cfg.seed, checkpoint_dir=checkpoint_dir / "stage1", progress=progress,
    )
    history += train_stage(
        model, 2, video_dataset, profile_cfg.train,
        seed=profile_cfg.seed, checkpoint_dir=checkpoint_dir / "stage2", progress=progress,
    )
    return model.eval(), pd.DataFrame(history, columns=["stage", "step", "loss", "seconds"])


def load_or_train_base_model(
    profile_cfg: ProfileConfig, cache_root: str | Path | None = None, progress: bool = True
) -> tuple[AnimateAnyone, pd.DataFrame]:
    """The profile's trained generator and its loss history, trained once and cached by config.

    The cache folder ``<cache_root>/<profile>-<digest>`` holds ``model/`` (save_pretrained),
    ``loss_history.csv``/``.json`` and ``training.json`` (with the machine it trained on: another machine
    kind sums in another order, so its losses drift from these); an interrupted training resumes from
    ``<cache_root>/<profile>-<digest>.checkpoints``. The model comes back on :func:`compute_device`.
    """
    if profile_cfg.profile == "paper":
        raise ValueError("the paper profile uses Moore's released weights (poseguard_lib.models.checkpoints), not training")
    from poseguard_lib.data.synthetic import ImagePairDataset, VideoClipDataset, build_split

    final = base_cache_folder(profile_cfg, cache_root)
    key = final.name
    device = compute_device()
    if (final / "model" / SETTINGS_FILE).exists():
        model = AnimateAnyone.from_pretrained(final / "model").eval()
        return model.to(device), pd.read_csv(final / "loss_history.csv")

    # No random crops: a run sees each training pair only a few times, so there is nothing to
    # regularise, and crops would move the training distribution away from the uncropped tests.
    train_videos = build_split(profile_cfg.data, profile_cfg.seed)["train"]
    hue_augment = profile_cfg.train.hue_augment
    image_dataset = ImagePairDataset(train_videos, seed=profile_cfg.seed, hue_augment=hue_augment,
                                     figure_mask=profile_cfg.train.figure_loss_boost > 0)
    video_dataset = VideoClipDataset(
        train_videos, clip_length=profile_cfg.train.video_frames, seed=profile_cfg.seed, hue_augment=hue_augment
    )
    checkpoints = final.with_name(f"{key}.checkpoints")
    began = time.perf_counter()
    model, history = train_base_model(profile_cfg, image_dataset, video_dataset, checkpoints, progress)
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp / "model")
        write_csv(tmp / "loss_history.csv", history)
        write_json(tmp / "loss_history.json", history.to_dict(orient="records"))
        write_json(
            tmp / "training.json",
            {"key": key, "config": profile_cfg.model_dump(mode="json"), "seconds": time.perf_counter() - began,
             "torch_threads": torch.get_num_threads(), "machine": device_description(device)},
        )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return model.to(device), history
