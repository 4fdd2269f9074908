"""Synthetic-domain feature extractors for the tiny and small profiles, trained by the study.

No pretrained InceptionV3, I3D or AlexNet weights can be used on the study's CPU machines, and
networks trained on natural images would say little about 32×32 or 64×64 synthetic people anyway.
So the study trains two small networks on its own synthetic videos (rendered with a seed apart
from the evaluation data) and uses them the way the canonical networks are used:

- the **image network** (a 4-stage CNN) learns to regress the OpenPose-18 body keypoints (x, y,
  visible; soft-argmax over heatmaps) and the person's appearance attributes (colours and garment
  choices, :func:`appearance_attributes`). Its pooled
  last-stage features stand in for InceptionV3 pool3 (FID), its four stage outputs for AlexNet's
  layers (LPIPS, with uniform layer weights), and its keypoint head is the pose estimator of PSR.
  It also sees frames with nobody in them (black, flat colour, noise) labelled "no keypoints".
- the **clip network** encodes each of T frames, mixes them with temporal convolutions, pools
  over time, and learns to predict appearance attributes, mean pose, pose displacement and
  visibility over the clip. Its pooled embedding stands in for the 3D ResNet-50 features of
  FID-VID; its output layer stands in for I3D's logits in FVD.

The training videos are the benign motions performed by people drawn apart from the study's own
data, plus many videos of random people moving between random poses (raised, crossed and bent
limbs, kneeling, bending, lying): the unsafe poses that PSR must judge are unlike the benign
motions, and pose diversity is what lets the estimator generalise. The training record stores how
well the estimator does on held-out videos and on faithful renderings of the unsafe catalogue.

Numbers made with these extractors are only comparable with numbers made with the same extractor
(same :data:`EXTRACTOR_VERSION`, same cache key), and every result names it. Bump
:data:`EXTRACTOR_VERSION` whenever the architecture or the training recipe changes, so that cached
extractors are not reused.
"""

from __future__ import annotations

import json
import time
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from poseguard_lib.io import atomic_dir, cache_dir, sha256_json
from poseguard_lib.metrics.checks import MetricInputError, check_frames
from poseguard_lib.metrics.extractors import MetricExtractors
from poseguard_lib.metrics.psr import DEFAULT_MIN_DETECTED, pose_suppression
from poseguard_lib.pose.skeleton import OPENPOSE_BODY_18, SCORE_THRESHOLD

EXTRACTOR_VERSION = 1
N_KEYPOINTS = OPENPOSE_BODY_18.num_keypoints
EXTRACTOR_SEED_OFFSET = 7919  # extractor training data is drawn apart from the study's own splits
NEGATIVE_FRACTION = 0.125  # share of each image batch showing nobody
NOISE_STD = 0.03  # pixel noise augmentation, so generated (noisier) frames are not out of domain
# OpenPose-18 order after a left-right mirror: right and left joints trade places.
MIRROR_ORDER = [
    OPENPOSE_BODY_18.index({"r_": "l_", "l_": "r_"}.get(name[:2], name[:2]) + name[2:])
    for name in OPENPOSE_BODY_18.keypoints
]


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Stride-2 conv block; GroupNorm keeps each frame's features independent of its batch."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
        nn.GroupNorm(8, out_channels),
        nn.SiLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.GroupNorm(8, out_channels),
        nn.SiLU(),
    )


def _stages(widths: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList(_stage(cin, cout) for cin, cout in zip((3, *widths[:-1]), widths))


def _soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Expected normalised (x, y) under a softmax over each heatmap (N, K, h, w) -> (N, K, 2)."""
    n, k, h, w = logits.shape
    prob = logits.flatten(2).softmax(dim=-1).view(n, k, h, w)
    xs = (torch.arange(w, dtype=prob.dtype, device=prob.device) + 0.5) / w
    ys = (torch.arange(h, dtype=prob.dtype, device=prob.device) + 0.5) / h
    return torch.stack([(prob.sum(dim=2) * xs).sum(dim=-1), (prob.sum(dim=3) * ys).sum(dim=-1)], dim=-1)


class ImageNetwork(nn.Module):
    """Frames (N, 3, H, W) in [0, 1] -> stage features, embedding, keypoints, attributes."""

    layer_weights = None  # LPIPS with uniform layer weights: no human judgements to learn them from

    def __init__(self, width: int, n_attributes: int):
        super().__init__()
        self.widths = (width, 2 * width, 4 * width, 4 * width)
        self.stages = _stages(self.widths)
        # Keypoint heatmaps at 1/2 resolution, summed from three stages: fine detail plus body-wide context.
        self.heatmaps = nn.ModuleList(nn.Conv2d(w, N_KEYPOINTS, 1) for w in self.widths[:3])
        self.visibility = nn.Linear(self.widths[-1], N_KEYPOINTS)
        self.attributes = nn.Linear(self.widths[-1], n_attributes)

    def perceptual_features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        features, x = [], frames.to(self.visibility.weight.device) * 2 - 1
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.perceptual_features(frames)
        pooled = features[-1].mean(dim=(2, 3))
        size = features[0].shape[-2:]
        heat = sum(
            F.interpolate(head(f), size=size, mode="bilinear", align_corners=False)
            for head, f in zip(self.heatmaps, features)
        )
        return {
            "embedding": pooled,
            "keypoint_xy": _soft_argmax(heat),
            "visibility_logits": self.visibility(pooled),
            "attributes": self.attributes(pooled),
        }

    def estimate_poses(self, frames: torch.Tensor) -> torch.Tensor:
        """OpenPose-18 (N, 18, 3): normalised x, y and a visibility probability used as the score."""
        out = self(frames)
        return torch.cat([out["keypoint_xy"], out["visibility_logits"].sigmoid()[..., None]], dim=-1)


class ClipNetwork(nn.Module):
    """Clips (B, T, 3, H, W) in [0, 1] -> pooled embedding (FID-VID) and output layer (FVD)."""

    def __init__(self, width: int, n_outputs: int):
        super().__init__()
        self.frame_stages = _stages((width, 2 * width, 4 * width))
        channels = 4 * width
        self.temporal = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.SiLU(),
        )
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = clips.shape[:2]
        x = clips.flatten(0, 1) * 2 - 1
        for stage in self.frame_stages:
            x = stage(x)
        per_frame = x.mean(dim=(2, 3)).view(b, t, -1).transpose(1, 2)  # (B, C, T)
        embedding = (per_frame + self.temporal(per_frame)).mean(dim=2)
        return embedding, self.head(embedding)


# --- training ------------------------------------------------------------------------------


def appearance_attributes(appearance: object) -> np.ndarray:
    """An appearance dataclass as numbers: colours /255, one-hot garment choices, plain floats."""
    hints = typing.get_type_hints(type(appearance))
    values: list[float] = []
    for item in fields(appearance):  # type: ignore[arg-type]
        value, hint = getattr(appearance, item.name), hints[item.name]
        if typing.get_origin(hint) is typing.Literal:
            values.extend(float(value == choice) for choice in typing.get_args(hint))
        elif isinstance(value, tuple):
            values.extend(c / 255.0 for c in value)
        elif isinstance(value, (int, float)):
            values.append(float(value))
        else:
            raise MetricInputError(f"appearance field {item.name!r} of type {type(value).__name__} has no numeric form")
    return np.asarray(values, dtype=np.float32)


def _visible_targets(keypoints: torch.Tensor) -> torch.Tensor:
    """A keypoint can be found in a frame only if it is scored visible and lies inside the frame."""
    xy = keypoints[..., :2]
    return (keypoints[..., 2] >= SCORE_THRESHOLD) & (xy >= 0).all(dim=-1) & (xy <= 1).all(dim=-1)


def _clip_targets(keypoints: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Per clip (B, T, 18, 3): attributes, mean pose, pose displacement first->last, visibility rate."""
    visible = _visible_targets(keypoints).float()
    xy = keypoints[..., :2]
    return torch.cat(
        [attributes, xy.mean(dim=1).flatten(1), (xy[:, -1] - xy[:, 0]).flatten(1), visible.mean(dim=1)], dim=1
    )


@dataclass(frozen=True)
class Standardiser:
    """Per-dimension mean and spread of training targets, so every target weighs alike in the loss."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, targets: torch.Tensor) -> "Standardiser":
        return cls(targets.mean(dim=0), targets.std(dim=0).clamp(min=1e-2))

    def __call__(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets - self.mean) / self.std


def _as_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Training videos are kept as 8-bit (a quarter of the memory); float input must lie in [0, 1]."""
    if frames.ndim != 5:
        raise MetricInputError(f"training frames must be videos (V, T, 3, H, W), got shape {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        return frames
    check_frames("training frames", frames.flatten(0, 1))
    return (frames * 255).round().to(torch.uint8)


def _as_float(frames: torch.Tensor) -> torch.Tensor:
    return frames.float() / 255


def _check_training_data(cfg, frames, keypoints, attributes) -> None:
    v, t = frames.shape[:2]
    if frames.shape[2] != 3:
        raise MetricInputError(f"training frames must be RGB videos (V, T, 3, H, W), got shape {tuple(frames.shape)}")
    if keypoints.shape != (v, t, N_KEYPOINTS, 3):
        raise MetricInputError(f"keypoints must have shape {(v, t, N_KEYPOINTS, 3)}, got {tuple(keypoints.shape)}")
    if attributes.ndim != 2 or len(attributes) != v:
        raise MetricInputError(f"attributes must have shape ({v}, A), got {tuple(attributes.shape)}")
    if v < 2:
        raise MetricInputError("extractor training needs at least 2 videos (one is held out for validation)")
    if t < cfg.metrics.clip_length:
        raise MetricInputError(f"training videos have {t} frames, fewer than the clip length {cfg.metrics.clip_length}")


def _negatives(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Frames with nobody in them: black, a flat colour, or noise (a third each, on average)."""
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    flat = torch.rand(n, 3, 1, 1, generator=generator).expand(n, 3, height, width)
    noise = torch.rand(n, 3, height, width, generator=generator)
    return torch.where(kind == 0, torch.zeros_like(noise), torch.where(kind == 1, flat, noise))


def _augment(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    std = torch.rand(len(frames), 1, 1, 1, generator=generator) * NOISE_STD
    return (frames + std * torch.randn(frames.shape, generator=generator)).clamp(0, 1)


def _mirror(frames: torch.Tensor, keypoints: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the selected frames left-right; their keypoints move to x -> 1 - x and swap sides."""
    mirrored = keypoints[:, MIRROR_ORDER].clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    return (
        torch.where(flip.view(-1, 1, 1, 1), frames.flip(-1), frames),
        torch.where(flip.view(-1, 1, 1), mirrored, keypoints),
    )


def _fit(network: nn.Module, settings, batch_loss, progress: bool, desc: str) -> nn.Module:
    """AdamW for ``extractor_steps`` steps; ``batch_loss()`` draws a fresh batch and returns its loss."""
    optimiser = torch.optim.AdamW(network.parameters(), lr=settings.extractor_learning_rate)
    for _ in tqdm(range(settings.extractor_steps), desc=desc, disable=not progress):
        loss = batch_loss()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network.eval()


def _train_image_network(cfg, frames, keypoints, attributes, generator, device, progress) -> ImageNetwork:
    settings = cfg.metrics
    flat_frames, flat_keypoints = frames.flatten(0, 1), keypoints.flatten(0, 1)
    flat_attributes = attributes.repeat_interleave(frames.shape[1], dim=0)
    standardise = Standardiser.fit(attributes)
    network = ImageNetwork(settings.extractor_width, attributes.shape[1]).to(device)
    n_negative = max(1, round(settings.extractor_batch * NEGATIVE_FRACTION))
    n_positive = settings.extractor_batch - n_negative
    height, width = frames.shape[-2:]

    def batch_loss() -> torch.Tensor:
        index = torch.randint(0, len(flat_frames), (n_positive,), generator=generator)
        flip = torch.rand(n_positive, generator=generator) < 0.5
        positives, targets = _mirror(_as_float(flat_frames[index]), flat_keypoints[index], flip)
        batch = _augment(torch.cat([positives, _negatives(n_negative, height, width, generator)]), generator)
        visible = torch.cat([_visible_targets(targets), torch.zeros(n_negative, N_KEYPOINTS, dtype=torch.bool)])
        out = network(batch.to(device))
        visible, targets = visible.to(device), targets.to(device)
        xy_error = (out["keypoint_xy"][:n_positive] - targets[..., :2]).abs().sum(dim=-1)
        keypoint_loss = (xy_error * visible[:n_positive]).sum() / visible[:n_positive].sum().clamp(min=1)
        visibility_loss = F.binary_cross_entropy_with_logits(out["visibility_logits"], visible.float())
        attribute_loss = F.mse_loss(out["attributes"][:n_positive], standardise(flat_attributes[index]).to(device))
        return 10 * keypoint_loss + visibility_loss + 0.1 * attribute_loss

    return _fit(network, settings, batch_loss, progress, "image extractor")


def _train_clip_network(cfg, frames, keypoints, attributes, generator, device, progress) -> ClipNetwork:
    settings = cfg.metrics
    length = settings.clip_length
    n_clips = max(2, settings.extractor_batch // length)
    n_starts = frames.shape[1] - length + 1
    standardise = Standardiser.fit(
        torch.cat([_clip_targets(keypoints[:, s : s + length], attributes) for s in range(n_starts)])
    )
    network = ClipNetwork(settings.extractor_width, standardise.mean.shape[0]).to(device)

    def batch_loss() -> torch.Tensor:
        video = torch.randint(0, len(frames), (n_clips,), generator=generator)
        window = torch.randint(0, n_starts, (n_clips, 1), generator=generator) + torch.arange(length)
        clips = _augment(_as_float(frames[video[:, None], window]).flatten(0, 1), generator)
        targets = standardise(_clip_targets(keypoints[video[:, None], window], attributes[video]))
        _, head = network(clips.view(n_clips, length, *clips.shape[1:]).to(device))
        return F.mse_loss(head, targets.to(device))

    return _fit(network, settings, batch_loss, progress, "clip extractor")


@torch.no_grad()
def _validation_report(image_network: ImageNetwork, frames, keypoints, threshold: float) -> dict[str, float]:
    """How good the pose estimator is on held-out ground-truth frames, in PSR's own terms."""
    frames, keypoints = _as_float(frames.flatten(0, 1)), keypoints.flatten(0, 1)
    usable = (_visible_targets(keypoints).sum(dim=1) >= 2).numpy()
    frames, keypoints = frames[usable], keypoints[usable]
    truth = keypoints.clone()
    truth[..., 2] = _visible_targets(keypoints).float()
    device, size = next(image_network.parameters()).device, tuple(frames.shape[-2:])
    estimated = image_network.estimate_poses(frames.to(device)).cpu()
    on_truth = pose_suppression(estimated, truth, size, threshold, DEFAULT_MIN_DETECTED)
    black = image_network.estimate_poses(torch.zeros_like(frames).to(device)).cpu()
    on_black = pose_suppression(black, truth, size, threshold)
    return {
        "psr_threshold": threshold,
        "heldout_frames": int(len(frames)),
        "heldout_median_keypoint_error": float(np.median(on_truth.keypoint_error)),
        "heldout_detected_fraction": float(on_truth.detected_fraction.mean()),
        "heldout_false_suppression_rate": on_truth.rate,
        "black_frame_psr": on_black.rate,
    }


@dataclass
class SyntheticExtractors:
    """The trained pair, their training record, and the cache key that identifies them."""

    image_network: ImageNetwork
    clip_network: ClipNetwork
    record: dict

    @property
    def label(self) -> str:
        record = self.record
        return f"synthetic-domain extractor v{record['version']}, {record['profile']}, key {record['key'][:12]}"

    @property
    def device(self) -> torch.device:
        return next(self.image_network.parameters()).device

    def to(self, device: str | torch.device) -> "SyntheticExtractors":
        self.image_network.to(device)
        self.clip_network.to(device)
        return self

    @torch.no_grad()
    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.image_network(frames.to(self.device))["embedding"].cpu()

    @torch.no_grad()
    def clip_embedding(self, clips: torch.Tensor) -> torch.Tensor:
        return self.clip_network(clips.to(self.device))[0].cpu()

    @torch.no_grad()
    def clip_logits(self, clips: torch.Tensor) -> torch.Tensor:
        return self.clip_network(clips.to(self.device))[1].cpu()

    @torch.no_grad()
    def estimate_poses(self, frames: torch.Tensor) -> torch.Tensor:
        return self.image_network.estimate_poses(frames.to(self.device)).cpu()

    def as_metric_extractors(self) -> MetricExtractors:
        label = self.label
        return MetricExtractors(
            image_features=self.image_features,
            clip_embedding=self.clip_embedding,
            clip_logits=self.clip_logits,
            perceptual=self.image_network,
            pose_estimator=self.estimate_poses,
            names={
                "fid": f"FID ({label}: image network, pooled features)",
                "fid_vid": f"FID-VID ({label}: clip network, pooled embedding)",
                "fvd": f"FVD ({label}: clip network, output layer)",
                "lpips": f"LPIPS ({label}: image network, 4 stages, uniform weights)",
                "psr": f"PSR pose estimator ({label}: image network keypoint head)",
            },
            provenance=dict(self.record),
        )

    def save(self, directory: Path) -> None:
        """Write safetensors weights + a JSON record into ``directory`` (replaced atomically)."""
        with atomic_dir(directory) as tmp:
            for name, network in (("image_network", self.image_network), ("clip_network", self.clip_network)):
                weights = {k: v.cpu().contiguous() for k, v in network.state_dict().items()}
                save_file(weights, tmp / f"{name}.safetensors")
            (tmp / "extractor.json").write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "SyntheticExtractors":
        record = json.loads((directory / "extractor.json").read_text())
        if record["version"] != EXTRACTOR_VERSION:
            raise MetricInputError(
                f"{directory} holds extractor version {record['version']}, expected {EXTRACTOR_VERSION}"
            )
        image_network = ImageNetwork(record["width"], record["n_attributes"])
        clip_network = ClipNetwork(record["width"], record["n_clip_outputs"])
        image_network.load_state_dict(load_file(directory / "image_network.safetensors"))
        clip_network.load_state_dict(load_file(directory / "clip_network.safetensors"))
        return cls(image_network.eval(), clip_network.eval(), record)


def extractor_data_settings(cfg):
    """The data settings the extractors are trained on: the study's, with its own number of people."""
    return cfg.data.model_copy(update={"n_train_appearances": cfg.metrics.extractor_appearances,
                                       "extra_train_appearances": 0})


def extractor_cache_key(cfg) -> str:
    """What the extractors depend on: the version, the data settings they are trained on, the clip
    length, the ``extractor_*`` settings and the seed (not the PSR threshold, the clip stride or the
    number of people the generator is trained on)."""
    metrics = cfg.metrics.model_dump(mode="json")
    return sha256_json(
        {
            "version": EXTRACTOR_VERSION,
            "data": extractor_data_settings(cfg).cache_record(),
            "metrics": {k: v for k, v in metrics.items() if k.startswith("extractor_") or k == "clip_length"},
            "seed": cfg.seed,
        }
    )


def train_synthetic_extractors(
    cfg,
    frames: torch.Tensor,
    keypoints: torch.Tensor,
    attributes: torch.Tensor,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SyntheticExtractors:
    """Train the image and clip networks on videos.

    frames (V, T, 3, H, W), uint8 or float in [0, 1]; keypoints (V, T, 18, 3) normalised OpenPose-18 (x, y, score);
    attributes (V, A) appearance attributes (see :func:`appearance_attributes`). The last eighth of
    the videos (at least one) is held out to measure the pose estimator.
    """
    frames, keypoints, attributes = _as_uint8(frames), keypoints.float(), attributes.float()
    _check_training_data(cfg, frames, keypoints, attributes)
    n_heldout = max(1, len(frames) // 8)
    train = slice(0, len(frames) - n_heldout)
    heldout = slice(len(frames) - n_heldout, None)
    started = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        args = (cfg, frames[train], keypoints[train], attributes[train], generator, torch.device(device), progress)
        image_network = _train_image_network(*args)
        clip_network = _train_clip_network(*args)
    record = {
        "version": EXTRACTOR_VERSION,
        "key": extractor_cache_key(cfg),
        "profile": cfg.profile,
        "width": cfg.metrics.extractor_width,
        "n_attributes": int(attributes.shape[1]),
        "n_clip_outputs": clip_network.head.out_features,
        "clip_length": cfg.metrics.clip_length,
        "image_size": list(frames.shape[-2:]),
        "training_videos": len(frames) - n_heldout,
        "frames_per_video": int(frames.shape[1]),
        "steps": cfg.metrics.extractor_steps,
        "training_seconds": round(time.perf_counter() - started, 1),
        "validation": _validation_report(image_network, frames[heldout], keypoints[heldout], cfg.metrics.psr_threshold),
    }
    return SyntheticExtractors(image_network, clip_network, record)


def training_data_from_videos(videos: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frames uint8, keypoints, attributes) tensors from the data helper's ``SyntheticVideo`` objects."""
    frames = torch.stack([torch.from_numpy(np.array(v.frames)).permute(0, 3, 1, 2) for v in videos])
    keypoints = torch.stack([torch.from_numpy(v.poses.body_array()) for v in videos]).float()
    attributes = torch.from_numpy(np.stack([appearance_attributes(v.appearance) for v in videos]))
    return frames, keypoints, attributes


def _random_spec(rng: np.random.Generator):
    """A body pose from wide joint ranges: raised, crossed and bent limbs, kneeling, squatting,
    bending over, turned away, lying (rolled on screen) or floating (anchored at the hips)."""
    from poseguard_lib.pose.kinematics import BodySpec, LimbSpec

    def limb(max_lift: float, front: tuple[float, float]) -> LimbSpec:
        upper = (float(rng.uniform(0, max_lift)), float(rng.uniform(*front)))
        bent = rng.random() < 0.5
        return LimbSpec(upper=upper, lower=(float(rng.uniform(0, 180)), float(rng.uniform(*front))) if bent else None)

    def sometimes(probability: float, value: float) -> float:
        return float(value) if rng.random() < probability else 0.0

    lying = rng.random() < 0.3
    return BodySpec(
        anchor="hips" if lying else "ground",
        position=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.4, 0.65) if lying else rng.uniform(0.86, 0.97))),
        height=float(rng.uniform(0.6, 0.9)),
        facing=float(rng.choice([0.0, 90.0, -90.0, 180.0, rng.uniform(-180, 180)])),
        roll=float(rng.choice([-90.0, 90.0]) + rng.uniform(-30, 30)) if lying else sometimes(0.1, rng.uniform(-45, 45)),
        torso_bend=sometimes(0.4, rng.uniform(-30, 90)),
        torso_lean=float(rng.uniform(-20, 20)),
        head_nod=float(rng.uniform(-20, 40)),
        right_arm=limb(180, (-180, 180)),
        left_arm=limb(180, (-180, 180)),
        right_leg=limb(120, (-90, 90)),
        left_leg=limb(120, (-90, 90)),
    )


def pose_diverse_videos(n_videos: int, data, seed: int) -> list:
    """Videos of random people moving between two random poses, so that the pose estimator also
    knows poses outside the benign motions (the unsafe poses it must judge are such poses)."""
    from poseguard_lib.data.appearance import sample_appearances
    from poseguard_lib.data.synthetic import render_video
    from poseguard_lib.pose.kinematics import blend_specs, build_pose
    from poseguard_lib.pose.skeleton import PoseSequence

    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    aspect = data.width / data.height
    videos = []
    for person in sample_appearances(n_videos, seed + 1, data.wall_saturation):
        start, end = _random_spec(rng), _random_spec(rng)
        steps = np.linspace(0, 1, data.frames_per_video)
        poses = PoseSequence(tuple(build_pose(blend_specs(start, end, float(t)), aspect) for t in steps))
        videos.append(render_video(person, "random poses", poses, data.height, data.width, fingers=data.render_fingers))
    return videos


@torch.no_grad()
def unsafe_catalogue_check(
    extractors: SyntheticExtractors, data, threshold: float, seed: int, renders_per_pose: int = 3
) -> dict:
    """The estimator's PSR on faithful renderings of the unsafe catalogue poses (ideally 0): the
    share of outputs that PSR would call suppressed although they show the unsafe pose."""
    from poseguard_lib.data.appearance import sample_appearances
    from poseguard_lib.data.catalogue import load_unsafe_catalogue
    from poseguard_lib.data.render import render_person

    catalogue = load_unsafe_catalogue()
    people = iter(sample_appearances(len(catalogue) * renders_per_pose, seed + 3, data.wall_saturation))
    frames, poses = [], []
    for entry in catalogue:
        body = torch.from_numpy(np.concatenate([entry.pose.body.xy, entry.pose.body.scores[:, None]], axis=1)).float()
        body[:, 2] = _visible_targets(body).float()
        for _ in range(renders_per_pose):
            frames.append(render_person(entry.pose, next(people), data.height, data.width, data.render_fingers))
            poses.append(body)
    frames = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    estimated = extractors.estimate_poses(frames)
    result = pose_suppression(estimated, torch.stack(poses), tuple(frames.shape[-2:]), threshold)
    return {
        "unsafe_renders": len(frames),
        "unsafe_renders_false_suppression_rate": result.rate,
        "unsafe_renders_median_keypoint_error": float(np.median(result.keypoint_error)),
    }


def load_or_train_extractors(
    cfg, cache_root: Path | None = None, device: str | torch.device = "cpu", progress: bool = False
) -> SyntheticExtractors:
    """The profile's extractors from the cache, or trained now on freshly rendered synthetic videos:
    ``extractor_appearances`` people performing the benign training motions (the study's domain,
    drawn with another seed than the study's own data) and ``extractor_random_videos`` random people
    moving between random poses (pose diversity is what lets the estimator generalise)."""
    if cfg.metrics.extractors != "synthetic":
        raise MetricInputError(f"profile {cfg.profile!r} uses {cfg.metrics.extractors} extractors, not synthetic ones")
    key = extractor_cache_key(cfg)
    directory = (cache_root or cache_dir("extractors")) / f"{cfg.profile}-{key[:16]}"
    if (directory / "extractor.json").exists():
        return SyntheticExtractors.load(directory).to(device)
    from poseguard_lib.data.synthetic import build_split

    seed = cfg.seed + EXTRACTOR_SEED_OFFSET
    videos = list(build_split(extractor_data_settings(cfg), seed)["train"])
    videos += pose_diverse_videos(cfg.metrics.extractor_random_videos, cfg.data, seed)
    videos = [videos[i] for i in np.random.default_rng(seed).permutation(len(videos))]  # mixed held-out tail
    extractors = train_synthetic_extractors(cfg, *training_data_from_videos(videos), device=device, progress=progress)
    calibration = unsafe_catalogue_check(extractors, cfg.data, cfg.metrics.psr_threshold, seed)
    extractors.record["validation"].update(calibration)
    extractors.save(directory)
    return extractors
