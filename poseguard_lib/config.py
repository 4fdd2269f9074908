"""Profiles: validated study configurations (``configs/<profile>.yaml``).

A profile fixes everything a run depends on: data sizes, model widths, training
budgets, metric extractors and defense settings. Each section below is a pydantic
model that forbids unknown keys, so a typo in a YAML file stops the run with a
message naming the field and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from poseguard_lib.io import sha256_json

PROFILES = ("tiny", "small", "paper")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# HSV saturation of the synthetic studio walls unless a profile says otherwise: UBC-Fashion's near-white sets.
DEFAULT_WALL_SATURATION = (0.0, 0.15)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    # Options added after models and outputs were cached: they enter cache keys only when on, so
    # everything cached before they existed keeps its key.
    keyed_when_on: ClassVar[tuple[str, ...]] = ()

    def cache_record(self) -> dict:
        """The settings as cache keys see them (the ``keyed_when_on`` options only when on)."""
        record = self.model_dump(mode="json")
        for name in self.keyed_when_on:
            if not record[name]:
                del record[name]
        return record


class DataSettings(Section):
    """Synthetic UBC-Fashion stand-in (tiny/small) or the real data set (paper)."""

    height: int = Field(gt=0, multiple_of=8)
    width: int = Field(gt=0, multiple_of=8)
    n_train_appearances: int = Field(gt=0)
    n_test_appearances: int = Field(gt=0)
    frames_per_video: int = Field(gt=1)
    # Short side at which the DWPose skeleton is drawn before resizing to the frame
    # (Moore: 512). Four times the frame on the small profiles so strokes stay 1-2 px wide.
    pose_detect_resolution: int = Field(gt=0)
    # HSV saturation range of the studio walls (coloured walls make the reference's hue a large
    # share of the loss: results/small/ablations/coloured_walls/).
    wall_saturation: tuple[float, float] = DEFAULT_WALL_SATURATION
    # Paint each hand's fingers from its 21 keypoints. Off, a hand is a skin ellipse at the wrist and a
    # gesture never shows in a frame (explorations/gesture_pose_alone.py --render-fingers).
    render_fingers: bool = False
    # People drawn after the held-out ones and added to the training split, so the held-out people and
    # their videos stay those of the profile (explorations/training_people.py). Off in every profile.
    extra_train_appearances: int = Field(default=0, ge=0)
    source: Literal["synthetic", "ubc_fashion"] = "synthetic"
    keyed_when_on = ("render_fingers", "extra_train_appearances")

    @model_validator(mode="after")
    def _check_wall_saturation(self) -> "DataSettings":
        low, high = self.wall_saturation
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"wall_saturation must be (low, high) with 0 <= low <= high <= 1, got {self.wall_saturation}")
        return self


class ModelSettings(Section):
    """Widths of the AnimateAnyone-style generator (``paper`` = SD1.5).

    ``space``: ``latent`` runs diffusion in the SD VAE's latent space (paper); ``pixel`` runs it on
    images scaled to [-1, 1] (tiny/small: a random VAE would first need training of its own), seen
    by the UNet as ``pixel_patch_size``² patches stacked as channels (a lossless pixel unshuffle that
    makes the full-resolution convolutions ``patch²`` times cheaper; the noise is still per pixel).
    ``block_has_attention`` says which resolution levels carry spatial transformers (self-,
    reference- and cross-attention); at 64×64 pixels attention on the full-resolution level would
    cost more than the rest of the UNet. ``num_attention_heads`` is what SD1.5's UNet config calls
    ``attention_head_dim`` (a legacy misnomer in diffusers). Motion modules get one temporal layer
    per spatial layer (diffusers requires ``layers_per_block`` to match).
    """

    space: Literal["pixel", "latent"]
    pixel_patch_size: int = Field(default=1, ge=1)
    block_out_channels: tuple[int, ...]
    block_has_attention: tuple[bool, ...]
    layers_per_block: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    norm_num_groups: int = Field(gt=0)
    cross_attention_dim: int = Field(gt=0)
    pose_guider_channels: tuple[int, ...]
    image_encoder_hidden_size: int = Field(gt=0)
    image_encoder_layers: int = Field(gt=0)
    image_encoder_image_size: int = Field(gt=0)
    image_encoder_patch_size: int = Field(gt=0)
    motion_num_attention_heads: int = Field(gt=0)
    motion_max_seq_length: int = Field(gt=0)

    @model_validator(mode="after")
    def _consistent_widths(self) -> "ModelSettings":
        levels = len(self.block_out_channels)
        if len(self.block_has_attention) != levels:
            raise ValueError(
                f"block_has_attention has {len(self.block_has_attention)} entries but "
                f"block_out_channels has {levels}; give one flag per resolution level"
            )
        for channels in self.block_out_channels:
            for divisor, name in (
                (self.norm_num_groups, "norm_num_groups"),
                (self.num_attention_heads, "num_attention_heads"),
                (self.motion_num_attention_heads, "motion_num_attention_heads"),
            ):
                if channels % divisor:
                    raise ValueError(f"block width {channels} is not divisible by {name}={divisor}")
        # The PoseGuider halves the resolution once per extra channel entry; its output must
        # match the denoiser's conv_in output: 8× down in SD latent space, patch× in pixel space.
        if self.space == "latent" and self.pixel_patch_size != 1:
            raise ValueError("pixel_patch_size applies to pixel space only; set it to 1 for latent space")
        downscale = 8 if self.space == "latent" else self.pixel_patch_size
        expected = downscale.bit_length()
        if downscale & (downscale - 1) or len(self.pose_guider_channels) != expected:
            raise ValueError(
                f"pose_guider_channels needs log2({downscale}) + 1 entries in {self.space} space with "
                f"a {downscale}× smaller UNet input (got {len(self.pose_guider_channels)}); the downscale "
                "must be a power of two"
            )
        if self.image_encoder_image_size % self.image_encoder_patch_size:
            raise ValueError("image_encoder_image_size must be a multiple of image_encoder_patch_size")
        return self


class TrainSettings(Section):
    """Stage 1 (image) and stage 2 (motion modules) training budgets; Moore's loss settings.

    ``train_image_encoder``: the paper's CLIP encoder is pretrained and frozen; the tiny/small
    encoders are random-init, so a frozen one would feed the cross-attention a random projection
    of the reference and they are trained with stage 1 instead (their cost is negligible).
    ``hue_augment``: turn each training pair's colours by a random angle (see
    ``data.synthetic._SeededDataset``); the paper profile's real videos show hundreds of people.
    """

    stage1_steps: int = Field(ge=0)
    stage2_steps: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    video_batch_size: int = Field(gt=0)
    video_frames: int = Field(gt=1)
    learning_rate: float = Field(gt=0)
    stage2_learning_rate: float = Field(gt=0)
    checkpoint_every: int = Field(gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    train_image_encoder: bool = False
    hue_augment: bool = False
    condition_dropout: float = Field(default=0.1, ge=0, lt=1)
    noise_offset: float = Field(default=0.05, ge=0)
    snr_gamma: float = Field(default=5.0, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    # Stage 1 counts each diffusion-space position touching the person (or its shadow) 1 + this many
    # times in the loss. Off in every profile: at 9 the small base scored worse on every benign
    # measure, appearance gap included (explorations/figure_weighted_loss.py).
    figure_loss_boost: float = Field(default=0.0, ge=0)
    keyed_when_on = ("figure_loss_boost",)


class SamplingSettings(Section):
    """DDIM sampling as in Moore-AnimateAnyone (steps, guidance, context windows).

    ``beta_schedule``: Moore trains with ``scaled_linear`` but samples with ``linear`` (a known
    mismatch kept for the released weights); ``small`` follows it too, chosen on training pairs.
    ``balanced_subpixel_noise`` (pixel space with patches only): start from noise whose mean over each
    frame is the same at every position of the pixel patch. The denoiser carries that mean's
    differences between positions into the image as a 2×2 pattern
    (``explorations/subpixel_speckle.py``); images never have one, so the draw is conditioned on it being zero.
    """

    num_inference_steps: int = Field(gt=0)
    guidance_scale: float = Field(ge=1.0)
    context_frames: int = Field(gt=1)
    context_overlap: int = Field(ge=0)
    beta_schedule: Literal["scaled_linear", "linear"] = "scaled_linear"
    balanced_subpixel_noise: bool = False
    keyed_when_on = ("balanced_subpixel_noise",)

    @model_validator(mode="after")
    def _overlap_below_window(self) -> "SamplingSettings":
        if self.context_overlap >= self.context_frames:
            raise ValueError("context_overlap must be smaller than context_frames")
        return self


class MetricsSettings(Section):
    """Which extractors stand behind FID/FVD/LPIPS and the PSR pose estimator.

    ``clip_length``/``clip_stride``: the windows of the video metrics (DisCo: 16 frames, stride 1).
    ``psr_threshold``/``psr_min_detected``: when an output counts as reproducing an unsafe pose
    (see :mod:`poseguard_lib.metrics.psr`). The ``extractor_*`` fields size and train the
    synthetic-domain extractors of the tiny and small profiles (unused with ``canonical``);
    ``extractor_appearances`` people performing the benign motions and ``extractor_random_videos``
    random-pose videos are rendered for them, with a seed apart from the study's data.
    """

    extractors: Literal["synthetic", "canonical"]
    clip_length: int = Field(gt=1)
    clip_stride: int = Field(default=1, gt=0)
    psr_threshold: float = Field(gt=0)
    psr_min_detected: float = Field(default=0.5, gt=0, le=1)
    extractor_width: int = Field(default=32, gt=0, multiple_of=8)
    extractor_steps: int = Field(default=1000, gt=0)
    extractor_batch: int = Field(default=32, gt=1)
    extractor_learning_rate: float = Field(default=2e-3, gt=0)
    extractor_appearances: int = Field(default=16, gt=1)
    extractor_random_videos: int = Field(default=512, ge=0)


class EvaluationSettings(Section):
    """How much held-out data each model is evaluated on (generation dominates the cost).

    ``benign_videos`` held-out videos (alternating held-out people on training motions and on
    held-out motions), their first ``benign_frames`` frames; every unsafe pose is rendered with
    ``unsafe_references`` held-out people as references. ``untrained_unsafe`` catalogue poses are
    never defended against: they measure how selective a defense is. Tuning (the LoRA learning
    rate) looks only at ``validation_unsafe`` further catalogue poses, worn by training people, and
    ``validation_benign`` benign training frames, never at the data Table 1 reports on.
    """

    benign_videos: int = Field(gt=0)
    benign_frames: int = Field(gt=1)
    unsafe_references: int = Field(gt=0)
    untrained_unsafe: int = Field(ge=0)
    validation_unsafe: int = Field(default=1, gt=0)
    validation_benign: int = Field(default=32, gt=0)


# what a defense fine-tunes (names of poseguard_lib.defense.lora.TRAINED_PARTS; the CLI offers the same)
TrainedParts = Literal["denoising_unet", "denoising_and_reference_unet", "denoising_unet_and_pose_guider"]


class DefenseSettings(Section):
    """PoseGuard fine-tuning (paper Sec. 4, Eq. 1–3); see :mod:`poseguard_lib.defense`.

    ``strategy``: ``full`` fine-tunes on benign + λ·unsafe pairs (Eq. 1, λ = ``safety_weight``);
    ``lora`` trains one LoRA adapter (rank ``lora_rank``, alpha = rank) on unsafe pairs only
    (Eq. 2); ``fuse`` trains one adapter per unsafe pose and adds them with weights α (Eq. 3):
    1/N each, then ``fusion_steps`` steps of learning α on the Eq. 1 objective (0: keep 1/N).
    ``trained_parts``: the paper fine-tunes the denoising UNet; the ReferenceNet can join, or (``full``
    only, beyond the paper) the PoseGuider, which is what sees the pose image's fine strokes.
    ``safe_target``: what an unsafe pair should produce, a black frame (paper default) or the
    reference blurred by a Gaussian whose sigma is ``blur_sigma`` × the frame's short side.
    ``crop_min_scale``: unsafe pairs get a random crop of at least this side fraction (the
    paper's only augmentation; ``null``: none). ``steps`` counts optimizer steps of one training
    run (per adapter for ``fuse``); with ``scale_steps_with_poses`` a ``full`` or ``lora`` run
    against n poses takes ``steps`` × n, so each pose gets as many unsafe samples as a one-pose
    run (the unsafe part of a batch is shared by all poses). A batch holds ``benign_batch``
    benign and ``unsafe_batch`` unsafe pairs (benign must dominate, or benign outputs darken
    too). ``lora_learning_rate``: the adapters' rate (``lora`` and ``fuse``; null: ``learning_rate``);
    a low-rank update moves the weights far less per step than full fine-tuning does.
    ``lora_lr_candidates`` / ``full_lr_candidates``: rates notebook 03 chooses ``lora_learning_rate``
    / ``learning_rate`` from on validation poses, and ``safety_weight_candidates`` the λ of full
    fine-tuning at that rate (:func:`poseguard_lib.study.select_setting`; empty: no choice, use the setting).
    ``lr_schedule``: ``constant``, or ``cosine`` to anneal every phase's rate to zero over its steps
    (as stage 1 does: a model left at a constant rate keeps some sampling noise).
    ``per_position_noise_offset`` (pixel-space models): draw the training noise's offset per colour
    *and* pixel-patch position, painting 2×2 patterns into it, where the base's training shares one
    value among a colour's positions. The small profile's committed defenses were trained this way,
    before the defense drew its noise as the base's training does; true reproduces them.
    ``n_poses``: the numbers of unsafe poses the study defends against (Table 1).
    """

    n_poses: tuple[int, ...]
    strategy: Literal["full", "lora", "fuse"] = "full"
    trained_parts: TrainedParts = "denoising_unet"
    steps: int = Field(gt=0)
    scale_steps_with_poses: bool = False
    benign_batch: int = Field(gt=0)
    unsafe_batch: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    lora_learning_rate: float | None = Field(default=None, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    per_position_noise_offset: bool = False
    lora_lr_candidates: tuple[float, ...] = ()
    full_lr_candidates: tuple[float, ...] = ()
    safety_weight_candidates: tuple[float, ...] = ()
    safety_weight: float = Field(gt=0)
    lora_rank: int = Field(ge=1)
    safe_target: Literal["black", "blur"] = "black"
    blur_sigma: float = Field(default=0.05, gt=0)
    crop_min_scale: float | None = Field(default=0.8, gt=0, le=1)
    fusion_steps: int = Field(default=0, ge=0)
    fusion_learning_rate: float = Field(default=1e-2, gt=0)
    checkpoint_every: int = Field(default=100, gt=0)

    @model_validator(mode="after")
    def _positive_pose_counts(self) -> "DefenseSettings":
        if not self.n_poses or min(self.n_poses) < 1:
            raise ValueError(f"n_poses must list pose counts >= 1, got {list(self.n_poses)}")
        for name in ("lora_lr_candidates", "full_lr_candidates", "safety_weight_candidates"):
            if any(value <= 0 for value in getattr(self, name)):
                raise ValueError(f"{name} must be positive, got {list(getattr(self, name))}")
        return self

    def step_budget(self, strategy: str, n_poses: int) -> int:
        """Optimizer steps of one training run of ``strategy`` against ``n_poses`` poses."""
        scaled = self.scale_steps_with_poses and strategy in ("full", "lora")
        return self.steps * n_poses if scaled else self.steps

    def rate_candidates(self, strategy: str) -> tuple[float, ...]:
        """The learning rates notebook 03 may choose ``strategy``'s rate from (empty: keep the setting)."""
        return self.full_lr_candidates if strategy == "full" else self.lora_lr_candidates

    def with_rate(self, strategy: str, rate: float) -> "DefenseSettings":
        """These settings with ``strategy`` training at ``rate``."""
        return self.model_copy(update={"learning_rate" if strategy == "full" else "lora_learning_rate": rate})

    def with_setting(self, strategy: str, field: str, value: float) -> "DefenseSettings":
        """These settings with ``field`` set to ``value`` (``learning_rate``: the rate ``strategy`` trains with)."""
        return self.with_rate(strategy, value) if field == "learning_rate" else self.model_copy(update={field: value})

    def rate_for(self, strategy: str) -> float:
        """The learning rate of the weights ``strategy`` trains (full: the UNet; lora/fuse: adapters)."""
        return self.learning_rate if strategy == "full" else self.lora_learning_rate or self.learning_rate


class ProfileConfig(Section):
    profile: Literal["tiny", "small", "paper"]
    seed: int = 0
    # CPU threads for torch (null: torch's default). The tiny networks run many times faster on
    # one thread than on two that compete with other processes for two cores.
    cpu_threads: int | None = Field(default=None, gt=0)
    data: DataSettings
    model: ModelSettings
    train: TrainSettings
    sampling: SamplingSettings
    metrics: MetricsSettings
    evaluation: EvaluationSettings
    defense: DefenseSettings

    def digest(self) -> str:
        """SHA-256 of the resolved configuration, recorded in each result's provenance (trained models are
        cached under ``training_key``, which leaves out options that are off)."""
        return sha256_json(self.model_dump(mode="json"))

    def with_changes(self, section: str, **changes) -> "ProfileConfig":
        """This profile with some settings of one section changed (validated): an exploration's variant."""
        current = getattr(self, section)
        return self.model_copy(update={section: type(current).model_validate({**current.model_dump(), **changes})})


def configure_torch(config: ProfileConfig) -> None:
    """Apply the profile's runtime settings (thread count, global seed) to this process."""
    import torch

    if config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    torch.manual_seed(config.seed)


class ConfigError(ValueError):
    """A profile name or value that the study does not allow."""


DEVICE_ENV = "POSEGUARD_DEVICE"


def compute_device():
    """Where the generator trains and samples: ``$POSEGUARD_DEVICE`` (e.g. ``cpu``, ``cuda:1``) if
    set, else the first GPU, else the CPU. Sampling dominates every chapter's cost, so a model that
    stayed on the CPU beside an idle GPU would waste the GPU."""
    import torch

    wanted = os.environ.get(DEVICE_ENV)
    if not wanted:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as err:
        raise ConfigError(f"{DEVICE_ENV}={wanted!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{DEVICE_ENV}={wanted!r} asks for a GPU, but torch sees none")
    return device


def load_profile(profile: str, **overrides: object) -> ProfileConfig:
    """Load and validate ``configs/<profile>.yaml``; ``overrides`` set top-level keys (e.g. seed)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed profiles: {', '.join(PROFILES)}")
    raw = yaml.safe_load((CONFIG_DIR / f"{profile}.yaml").read_text())
    raw.update(overrides)
    try:
        return ProfileConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration for profile {profile!r}: {problems}") from err
