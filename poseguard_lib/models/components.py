"""The AnimateAnyone-style generator (Moore-AnimateAnyone) built from stock diffusers parts.

Parts, as in Moore: a ReferenceNet (``UNet2DConditionModel``) that encodes the reference image
once, a denoising UNet (2D for images; a ``UNetMotionModel`` view with AnimateDiff motion modules
for video, see :mod:`poseguard_lib.models.motion`), a PoseGuider (``ControlNetConditioningEmbedding``)
whose features are added right after the denoiser's ``conv_in``, reference attention
(:mod:`poseguard_lib.models.reference_attention`), a CLIP image encoder whose projected embedding is
the cross-attention context (no text encoder), and DDIM with v-prediction and zero-terminal SNR.

Diffusion space. ``paper`` runs in the SD VAE's latent space (8× smaller than the image). The
tiny/small profiles run in *pixel space* on images scaled to [-1, 1]: with no pretrained VAE, a
latent space would need a VAE trained first, and at 32–64 px a pixel-space UNet of a few million
parameters already learns to follow the pose and keep the appearance (a prototype at 64×64 beat
the copy-the-reference baseline within ~800 CPU iterations). The UNet sees the image as 2×2
pixel patches stacked as channels (``pixel_patch_size``; a lossless, parameter-free unshuffle,
so noise and loss are still per pixel): on a 2-core CPU the full-resolution convolutions and
attention would otherwise cost more than the rest of the network. The PoseGuider's single
stride-2 stage brings the pose image to that patch grid.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils import logging as transformers_logging

from poseguard_lib.config import ModelSettings, ProfileConfig
from poseguard_lib.io import atomic_dir
from poseguard_lib.models.motion import build_motion_adapter, motion_unet, use_per_frame_norms
from poseguard_lib.models.reference_attention import (
    ReferenceBank,
    has_reference_attention,
    install_reference_attention,
)

SD_VAE_SCALING = 0.18215
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SETTINGS_FILE = "model_settings.json"
POSE_GUIDER_WEIGHTS = "diffusion_pytorch_model.safetensors"


# ----------------------------------------------------------------------------- pose features
_POSE_FEATURES: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "poseguard_pose_features", default=None
)


def _add_pose_features(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on the denoiser's ``conv_in``: Moore adds PoseGuider features right there."""
    features = _POSE_FEATURES.get()
    if features is None:
        return output
    if features.shape != output.shape:
        raise ValueError(
            f"pose features {tuple(features.shape)} do not match the denoiser's conv_in output "
            f"{tuple(output.shape)}"
        )
    return output + features.to(output.dtype)


@contextlib.contextmanager
def pose_conditioning(features: torch.Tensor) -> Iterator[None]:
    """Add ``features`` (one row per denoiser row) to the denoiser's conv_in output inside the block.

    A context variable rather than state on the hook, so copies of the UNet (deepcopy, PEFT)
    keep working; see reference_attention for the same reasoning.
    """
    token = _POSE_FEATURES.set(features)
    try:
        yield
    finally:
        _POSE_FEATURES.reset(token)


def install_pose_hook(denoising_unet: nn.Module) -> None:
    hooks = denoising_unet.conv_in._forward_hooks.values()
    if _add_pose_features not in hooks:
        denoising_unet.conv_in.register_forward_hook(_add_pose_features)


def _has_pose_hook(denoising_unet: nn.Module) -> bool:
    return _add_pose_features in denoising_unet.conv_in._forward_hooks.values()


# ----------------------------------------------------------------------------- builders
def unet_config(settings: ModelSettings) -> dict:
    """``UNet2DConditionModel`` arguments; for ``paper`` these are SD1.5's UNet config."""
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in settings.block_has_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(settings.block_has_attention))
    channels = 4 if settings.space == "latent" else 3 * settings.pixel_patch_size**2
    return dict(
        sample_size=64 if settings.space == "latent" else None,
        in_channels=channels,
        out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(settings.block_out_channels),
        layers_per_block=settings.layers_per_block,
        attention_head_dim=settings.num_attention_heads,  # diffusers' legacy name for the head count
        norm_num_groups=settings.norm_num_groups,
        cross_attention_dim=settings.cross_attention_dim,
    )


def image_encoder_config(settings: ModelSettings) -> CLIPVisionConfig:
    """CLIP vision tower + projection; ``paper`` = ViT-L/14 of sd-image-variations."""
    return CLIPVisionConfig(
        hidden_size=settings.image_encoder_hidden_size,
        intermediate_size=4 * settings.image_encoder_hidden_size,
        num_hidden_layers=settings.image_encoder_layers,
        num_attention_heads=max(1, settings.image_encoder_hidden_size // 64),
        image_size=settings.image_encoder_image_size,
        patch_size=settings.image_encoder_patch_size,
        projection_dim=settings.cross_attention_dim,
    )


def build_scheduler(beta_schedule: str = "scaled_linear") -> DDIMScheduler:
    """Moore's DDIM: v-prediction, zero-terminal-SNR rescale, trailing spacing."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule=beta_schedule,
        clip_sample=False,
        steps_offset=1,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
    )


def build_pose_guider(settings: ModelSettings) -> ControlNetConditioningEmbedding:
    return ControlNetConditioningEmbedding(
        conditioning_embedding_channels=settings.block_out_channels[0],
        conditioning_channels=3,
        block_out_channels=tuple(settings.pose_guider_channels),
    )


def build_vae() -> AutoencoderKL:
    """sd-vae-ft-mse's architecture (random weights until the checkpoint loader fills them)."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=256,
        scaling_factor=SD_VAE_SCALING,
    )


@contextlib.contextmanager
def _quiet_transformers_progress() -> Iterator[None]:
    """transformers draws a progress bar on every save and load, which floods notebook output."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def _load_image_encoder(directory: Path) -> CLIPVisionModelWithProjection:
    with _quiet_transformers_progress():
        return CLIPVisionModelWithProjection.from_pretrained(directory)


def build_model(settings: ModelSettings | ProfileConfig, seed: int = 0) -> "AnimateAnyone":
    """A randomly initialised generator for a profile's ``model`` section (seeded)."""
    if isinstance(settings, ProfileConfig):
        settings = settings.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = unet_config(settings)
        return AnimateAnyone(
            settings=settings,
            reference_unet=UNet2DConditionModel(**config),
            denoising_unet=UNet2DConditionModel(**config),
            pose_guider=build_pose_guider(settings),
            image_encoder=CLIPVisionModelWithProjection(image_encoder_config(settings)),
            vae=build_vae() if settings.space == "latent" else None,
            scheduler=build_scheduler(),
            motion_adapter=build_motion_adapter(settings),
        )


# ----------------------------------------------------------------------------- the model
@dataclass
class ReferenceConditions:
    """What the reference contributes to one batch: the bank, its routing and the CLIP context."""

    bank: ReferenceBank
    rows: torch.Tensor  # (N,) bank row per sample, -1 where the condition is dropped
    image_embeds: torch.Tensor  # (N, 1, D), zeros where the condition is dropped


class AnimateAnyone(nn.Module):
    """Container of the generator's parts (attribute names are the checkpoint folder names)."""

    def __init__(
        self,
        settings: ModelSettings,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNet2DConditionModel,
        pose_guider: ControlNetConditioningEmbedding,
        image_encoder: CLIPVisionModelWithProjection,
        vae: AutoencoderKL | None,
        scheduler: DDIMScheduler,
        motion_adapter: MotionAdapter | None = None,
    ):
        super().__init__()
        if (vae is None) != (settings.space == "pixel"):
            raise ValueError(f"{settings.space} space {'needs' if vae is None else 'takes no'} VAE")
        self.settings = settings
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.pose_guider = pose_guider
        self.image_encoder = image_encoder
        self.vae = vae
        self.scheduler = scheduler
        self.motion_adapter = use_per_frame_norms(motion_adapter) if motion_adapter is not None else None
        install_reference_attention(reference_unet, denoising_unet)
        install_pose_hook(denoising_unet)

    # --- geometry -------------------------------------------------------------------------
    @property
    def downscale(self) -> int:
        """Image pixels per UNet input pixel along each side (VAE factor or pixel patch size)."""
        return 8 if self.vae is not None else self.settings.pixel_patch_size

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE factor × UNet downsamplings)."""
        return self.downscale * 2 ** (len(self.settings.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return next(self.denoising_unet.parameters()).device

    def check_wiring(self) -> None:
        """Fail loudly if the UNets lost their reference processors or the pose hook (e.g. replaced)."""
        if not has_reference_attention(self.reference_unet, "write") or not has_reference_attention(
            self.denoising_unet, "read"
        ):
            raise RuntimeError("reference attention is not installed; rebuild with AnimateAnyone(...)")
        if not _has_pose_hook(self.denoising_unet):
            raise RuntimeError("the pose hook is missing from denoising_unet.conv_in")

    # --- encoders -------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → diffusion space (pixels in [-1, 1], or scaled VAE latent means)."""
        # contiguous: channels-last inputs (e.g. from HWC arrays) crash some CPU conv backward
        # kernels once they reach the motion UNet (torch 2.13, segfault)
        x = images.to(self.device).contiguous() * 2 - 1
        if self.vae is None:
            return F.pixel_unshuffle(x, self.downscale)
        return self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """Diffusion space → images in [0, 1]; the VAE decodes a few frames at a time (memory)."""
        if self.vae is None:
            images = F.pixel_shuffle(latents, self.downscale)
        else:
            scaled = (latents / self.vae.config.scaling_factor).to(self.vae.dtype)
            images = torch.cat([self.vae.decode(part).sample for part in scaled.split(chunk)])
        return (images.float().clamp(-1, 1) + 1) / 2

    def embed_reference(self, references: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding as the cross-attention context, (N, 1, D).

        The reference is resized to the encoder's square input without keeping the aspect
        ratio, as Moore's inference pipeline does.
        """
        size = self.image_encoder.config.image_size
        x = references.to(self.device)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        mean = x.new_tensor(CLIP_MEAN)[:, None, None]
        std = x.new_tensor(CLIP_STD)[:, None, None]
        pixels = ((x.clamp(0, 1) - mean) / std).to(self.image_encoder.dtype)
        return self.image_encoder(pixel_values=pixels).image_embeds[:, None]

    def pose_features(self, poses: torch.Tensor) -> torch.Tensor:
        """PoseGuider features for pose images in [0, 1] (Moore feeds them unnormalised)."""
        return self.pose_guider(poses.to(self.device, self.dtype_of(self.pose_guider)).contiguous())

    @staticmethod
    def dtype_of(module: nn.Module) -> torch.dtype:
        return next(module.parameters()).dtype

    def reference_conditions(
        self, references: torch.Tensor, with_reference: torch.Tensor | None = None
    ) -> ReferenceConditions:
        """Run the ReferenceNet once (timestep 0) on the kept references and the image encoder.

        ``with_reference`` (N,) bool marks rows that keep their condition; dropped rows get a zero
        embedding and plain self-attention, and the ReferenceNet does not run for them.
        """
        n = references.shape[0]
        keep = torch.ones(n, dtype=torch.bool) if with_reference is None else with_reference.cpu().bool()
        embeds = self.embed_reference(references)
        embeds = embeds * keep.to(embeds.device, embeds.dtype)[:, None, None]
        rows = torch.full((n,), -1, dtype=torch.long)
        rows[keep] = torch.arange(int(keep.sum()))
        bank = ReferenceBank()
        if keep.any():
            kept = keep.to(embeds.device)
            latents = self.encode(references[keep.to(references.device)]).to(self.dtype_of(self.reference_unet))
            timestep = torch.zeros(latents.shape[0], dtype=torch.long, device=latents.device)
            with bank.writing():
                self.reference_unet(latents, timestep, encoder_hidden_states=embeds[kept])
        return ReferenceConditions(bank=bank, rows=rows, image_embeds=embeds)

    # --- denoising ------------------------------------------------------------------------
    def denoise(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        conditions: ReferenceConditions,
        pose_features: torch.Tensor,
        video_unet: UNetMotionModel | None = None,
    ) -> torch.Tensor:
        """The denoiser's output (v) for images (N, C, h, w) or, with ``video_unet``, clips (N, C, F, h, w).

        Conditions are per sample (N rows); for clips they are repeated over the F frames, and
        ``pose_features`` has one row per frame (N·F, in sample-major order). ``noisy`` is cast to
        the denoiser's dtype, so a sampler can keep float32 latents for a half-precision model.
        """
        noisy = noisy.to(self.dtype_of(self.denoising_unet))
        if video_unet is None:
            with conditions.bank.reading(conditions.rows), pose_conditioning(pose_features):
                return self.denoising_unet(noisy, timesteps, conditions.image_embeds).sample
        frames = noisy.shape[2]
        rows = conditions.rows.repeat_interleave(frames)
        embeds = conditions.image_embeds.repeat_interleave(frames, dim=0)
        with conditions.bank.reading(rows), pose_conditioning(pose_features):
            return video_unet(noisy, timesteps, encoder_hidden_states=embeds).sample

    def video_unet(self) -> UNetMotionModel:
        """A motion UNet sharing this model's 2D denoiser and motion adapter (built on demand, cheap)."""
        if self.motion_adapter is None:
            raise ValueError("this model has no motion adapter; it can only generate single frames")
        return motion_unet(self.denoising_unet, self.motion_adapter)

    def predict(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        references: torch.Tensor,
        poses: torch.Tensor,
        with_reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Single-frame v-prediction from raw inputs (references/poses in [0, 1]); for training."""
        conditions = self.reference_conditions(references, with_reference)
        return self.denoise(noisy, timesteps, conditions, self.pose_features(poses))

    # --- persistence ----------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """One subfolder per part (safetensors + config), written atomically."""
        with atomic_dir(directory) as tmp:
            (tmp / SETTINGS_FILE).write_text(json.dumps(self.settings.model_dump(mode="json"), indent=2))
            self.reference_unet.save_pretrained(tmp / "reference_unet")
            self.denoising_unet.save_pretrained(tmp / "denoising_unet")
            with _quiet_transformers_progress():
                self.image_encoder.save_pretrained(tmp / "image_encoder")
            self.scheduler.save_pretrained(tmp / "scheduler")
            guider = tmp / "pose_guider"
            guider.mkdir()
            save_file({k: v.contiguous() for k, v in self.pose_guider.state_dict().items()}, guider / POSE_GUIDER_WEIGHTS)
            (guider / "config.json").write_text(
                json.dumps({"conditioning_embedding_channels": self.settings.block_out_channels[0],
                            "block_out_channels": list(self.settings.pose_guider_channels)}, indent=2)
            )
            if self.vae is not None:
                self.vae.save_pretrained(tmp / "vae")
            if self.motion_adapter is not None:
                self.motion_adapter.save_pretrained(tmp / "motion_adapter")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "AnimateAnyone":
        directory = Path(directory)
        if not (directory / SETTINGS_FILE).exists():
            raise FileNotFoundError(f"{directory} is not a saved AnimateAnyone model (no {SETTINGS_FILE})")
        settings = ModelSettings.model_validate_json((directory / SETTINGS_FILE).read_text())
        pose_guider = build_pose_guider(settings)
        pose_guider.load_state_dict(load_file(directory / "pose_guider" / POSE_GUIDER_WEIGHTS))
        has = lambda name: (directory / name).is_dir()  # noqa: E731
        model = cls(
            settings=settings,
            reference_unet=UNet2DConditionModel.from_pretrained(directory / "reference_unet"),
            denoising_unet=UNet2DConditionModel.from_pretrained(directory / "denoising_unet"),
            pose_guider=pose_guider,
            image_encoder=_load_image_encoder(directory / "image_encoder"),
            vae=AutoencoderKL.from_pretrained(directory / "vae") if has("vae") else None,
            scheduler=DDIMScheduler.from_pretrained(directory / "scheduler"),
            motion_adapter=MotionAdapter.from_pretrained(directory / "motion_adapter") if has("motion_adapter") else None,
        )
        # Tensors loaded from safetensors may sit at unaligned addresses, which sends some CPU
        # kernels down other paths (~1e-6 differences); fresh copies make a loaded model
        # reproduce the saved one bit for bit.
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        return model
