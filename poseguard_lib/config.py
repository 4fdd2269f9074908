"""Profiles: validated study configurations (``configs/<profile>.yaml``).

A profile fixes everything a run depends on: data sizes, model widths, training
budgets, metric extractors and defense settings. Each section below is a pydantic
model that forbids unknown keys, so a typo in a YAML file stops the run with a
message naming the field and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poseguard_lib.io import sha256_json

PROFILES = ("tiny", "small", "paper")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class DataSettings(Section):
    """Synthetic UBC-Fashion stand-in (tiny/small) or the real data set (paper)."""

    height: int = Field(gt=0, multiple_of=8)
    width: int = Field(gt=0, multiple_of=8)
    n_train_appearances: int = Field(gt=0)
    n_test_appearances: int = Field(gt=0)
    frames_per_video: int = Field(gt=1)
    source: Literal["synthetic", "ubc_fashion"] = "synthetic"


class ModelSettings(Section):
    """Widths of the AnimateAnyone-style generator (``paper`` = SD1.5)."""

    space: Literal["pixel", "latent"]
    block_out_channels: tuple[int, ...]
    layers_per_block: int = Field(gt=0)
    attention_head_dim: int = Field(gt=0)
    norm_num_groups: int = Field(gt=0)
    cross_attention_dim: int = Field(gt=0)
    pose_guider_channels: tuple[int, ...]
    image_encoder_hidden_size: int = Field(gt=0)
    image_encoder_layers: int = Field(gt=0)
    motion_layers_per_block: int = Field(gt=0)
    motion_num_attention_heads: int = Field(gt=0)
    motion_max_seq_length: int = Field(gt=0)


class TrainSettings(Section):
    """Stage 1 (image) and stage 2 (motion modules) training budgets."""

    stage1_steps: int = Field(ge=0)
    stage2_steps: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    video_batch_size: int = Field(gt=0)
    video_frames: int = Field(gt=1)
    learning_rate: float = Field(gt=0)
    checkpoint_every: int = Field(gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"


class SamplingSettings(Section):
    """DDIM sampling as in Moore-AnimateAnyone (steps, guidance, context windows)."""

    num_inference_steps: int = Field(gt=0)
    guidance_scale: float = Field(ge=1.0)
    context_frames: int = Field(gt=1)
    context_overlap: int = Field(ge=0)


class MetricsSettings(Section):
    """Which extractors stand behind FID/FVD/LPIPS and the PSR pose estimator."""

    extractors: Literal["synthetic", "canonical"]
    clip_length: int = Field(gt=1)
    psr_threshold: float = Field(gt=0)


class DefenseSettings(Section):
    """PoseGuard fine-tuning (Eq. 1–3)."""

    n_poses: tuple[int, ...]
    steps: int = Field(gt=0)
    benign_batch: int = Field(gt=0)
    unsafe_batch: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    safety_weight: float = Field(gt=0)
    lora_rank: int = Field(gt=0)


class ProfileConfig(Section):
    profile: Literal["tiny", "small", "paper"]
    seed: int = 0
    data: DataSettings
    model: ModelSettings
    train: TrainSettings
    sampling: SamplingSettings
    metrics: MetricsSettings
    defense: DefenseSettings

    def digest(self) -> str:
        """SHA-256 of the resolved configuration: the key that caches trained models."""
        return sha256_json(self.model_dump(mode="json"))


class ConfigError(ValueError):
    """A profile name or value that the study does not allow."""


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
