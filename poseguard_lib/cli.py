"""``poseguard``: apply PoseGuard to an AnimateAnyone-style model and generate with it, no notebook needed.

    poseguard defend --base-model BASE --poses kneel.yaml --strategy lora --output defended/
    poseguard generate defended/ --reference person.png --poses dance.yaml --output dance.mp4
    poseguard catalogue            # the built-in unsafe poses and their ids

A profile (``--profile``, default ``tiny``) supplies every setting an option leaves out: the
frame size and pose drawing, the benign training data of Eq. 1 (the profile's synthetic data),
the stage-1 loss settings, the defense and the sampling settings. Without ``--base-model`` the
profile's own trained generator is used (trained once and cached under ``--cache-dir``).
Bad input ends with ``poseguard: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, get_args

import cv2
import numpy as np
import torch
from pydantic import ValidationError

from poseguard_lib.config import PROFILES, DefenseSettings, SamplingSettings, TrainedParts, load_profile
from poseguard_lib.io import atomic_dir, atomic_path, unwind_on_sigterm

VIDEO_SUFFIXES = (".gif", ".mp4")
# option name → settings field, so validation errors name the option the user typed
DEFENSE_OPTIONS = {
    "strategy": "--strategy",
    "trained_parts": "--trained-parts",
    "safe_target": "--safe-target",
    "blur_sigma": "--blur-sigma",
    "safety_weight": "--lambda",
    "lora_rank": "--rank",
    "steps": "--steps",
    "scale_steps_with_poses": "--scale-steps",
    "learning_rate": "--lr",
    "lora_learning_rate": "--lora-lr",
    "lr_schedule": "--lr-schedule",
    "benign_batch": "--benign-batch",
    "unsafe_batch": "--unsafe-batch",
    "crop_min_scale": "--crop-min-scale",
    "fusion_steps": "--fusion-steps",
}
SAMPLING_OPTIONS = {
    "num_inference_steps": "--steps", "guidance_scale": "--guidance", "balanced_subpixel_noise": "--balanced-subpixel-noise",
}


class CliError(ValueError):
    """A problem with the command line or its files, reported as ``poseguard: error: ...``."""


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poseguard", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    defend = commands.add_parser(
        "defend",
        help="fine-tune safety guardrails into a model (PoseGuard, Eq. 1-3)",
        description="Fine-tune a copy of a generator so that unsafe poses (or one person's identity) produce a "
        "safe image (black or a blurred reference) while benign poses keep their quality.",
    )
    defend.add_argument("--base-model", type=Path, metavar="DIR",
                        help="saved AnimateAnyone model (save_pretrained folder, or a previous defense output); "
                        "default: the profile's trained generator")
    defend.add_argument("--profile", choices=PROFILES, default="tiny",
                        help="settings for everything not given as an option (default: %(default)s)")
    defend.add_argument("--seed", type=int, default=0, help="seed of the data, crops and training (default: %(default)s)")
    defend.add_argument("--poses", nargs="+", type=Path, default=[], metavar="FILE",
                        help="unsafe pose files (YAML/JSON, one pose each, see poseguard_lib.pose.io)")
    defend.add_argument("--catalogue", nargs="+", default=[], metavar="ID",
                        help="unsafe poses from the built-in catalogue by id (see `poseguard catalogue`)")
    defend.add_argument("--identity", type=Path, metavar="IMAGE",
                        help="defend this person instead of poses: any pose (the given ones, else the benign "
                        "training poses) with this reference image must give the safe image")
    tuning = defend.add_argument_group(
        "defense settings", "each defaults to the --profile's `defense:` section (configs/<profile>.yaml)"
    )
    tuning.add_argument("--strategy", choices=("full", "lora", "fuse"),
                        help="full: fine-tune on benign + lambda*unsafe (Eq. 1); lora: one LoRA adapter on unsafe "
                        "pairs (Eq. 2); fuse: one adapter per pose, summed (Eq. 3)")
    tuning.add_argument("--trained-parts", choices=get_args(TrainedParts),
                        help="which parts are fine-tuned (paper: denoising_unet; the pose guider: strategy full only)")
    tuning.add_argument("--safe-target", choices=("black", "blur"), help="what unsafe inputs should produce")
    tuning.add_argument("--blur-sigma", type=float, metavar="F",
                        help="Gaussian sigma of the blurred safe target, as a fraction of the frame's short side")
    tuning.add_argument("--lambda", dest="safety_weight", type=float, metavar="F",
                        help="weight of the safety term in Eq. 1 (> 0)")
    tuning.add_argument("--rank", dest="lora_rank", type=int, metavar="N", help="LoRA rank (>= 1; alpha = rank)")
    tuning.add_argument("--steps", type=int, metavar="N", help="optimizer steps (per adapter for fuse)")
    tuning.add_argument("--scale-steps", dest="scale_steps_with_poses", action=argparse.BooleanOptionalAction,
                        default=None, help="full/lora: train --steps × the number of poses")
    tuning.add_argument("--lr", dest="learning_rate", type=float, metavar="F", help="AdamW learning rate")
    tuning.add_argument("--lora-lr", dest="lora_learning_rate", type=float, metavar="F",
                        help="learning rate of LoRA adapters (lora, fuse); default: the profile's, else --lr")
    tuning.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="constant rate, or cosine annealing to zero over each training run")
    tuning.add_argument("--benign-batch", type=int, metavar="N", help="benign pairs per step (full, fusion weights)")
    tuning.add_argument("--unsafe-batch", type=int, metavar="N", help="unsafe pairs per step")
    tuning.add_argument("--crop-min-scale", type=float, metavar="F",
                        help="smallest random-crop side fraction of unsafe pairs, in (0, 1]")
    tuning.add_argument("--fusion-steps", type=int, metavar="N",
                        help="fuse: steps learning the adapter weights (0 keeps 1/N)")
    defend.add_argument("--output", type=Path, required=True, metavar="DIR",
                        help="folder for the defended model, its adapters and records (written atomically)")
    defend.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="where the profile's trained generator is cached (default: $POSEGUARD_CACHE/models, "
                             "else ~/.cache/poseguard/models)")
    defend.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")

    generate = commands.add_parser(
        "generate",
        help="animate a reference image with a pose sequence",
        description="Generate a video (GIF/MP4) or PNG frames from a reference image and a pose sequence file.",
    )
    generate.add_argument("model", type=Path, metavar="MODEL",
                          help="saved AnimateAnyone model folder or a `poseguard defend` output")
    generate.add_argument("--reference", type=Path, required=True, metavar="IMAGE",
                          help="reference image (PNG/JPEG...), resized to the frame size")
    generate.add_argument("--poses", type=Path, required=True, metavar="FILE",
                          help="pose sequence file (YAML/JSON; a single-pose file gives one frame)")
    generate.add_argument("--output", type=Path, required=True, metavar="PATH",
                          help="video file (.gif or .mp4) or a folder for PNG frames (no suffix)")
    generate.add_argument("--profile", choices=PROFILES, default="tiny",
                          help="frame size, pose drawing and sampling settings (default: %(default)s)")
    generate.add_argument("--height", type=int, metavar="N", help="frame height (default: the profile's)")
    generate.add_argument("--width", type=int, metavar="N", help="frame width (default: the profile's)")
    generate.add_argument("--steps", dest="num_inference_steps", type=int, metavar="N", help="DDIM steps")
    generate.add_argument("--guidance", dest="guidance_scale", type=float, metavar="F",
                          help="classifier-free guidance scale (>= 1)")
    generate.add_argument("--balanced-subpixel-noise", action=argparse.BooleanOptionalAction,
                          help="start from noise with equal means at every position of the pixel patch, which keeps "
                               "a patched pixel-space model from painting a 2×2 grid (default: the profile's)")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    generate.add_argument("--fps", type=float, default=8.0, help="frames per second of a video file (default: %(default)s)")
    generate.add_argument("--per-frame", action="store_true",
                          help="generate each frame on its own with the image denoiser (no motion modules)")
    generate.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")

    commands.add_parser("catalogue", help="list the built-in unsafe poses (id, category, description)",
                        description="List the built-in unsafe poses that `defend --catalogue` accepts.")
    return parser


# ----------------------------------------------------------------------------- helpers
def _validated(model_class, base, changes: dict, options: dict):
    """``base`` with ``changes`` applied and validated; errors name the command-line option."""
    changes = {key: value for key, value in changes.items() if value is not None}
    try:
        return model_class.model_validate({**base.model_dump(), **changes})
    except ValidationError as err:
        problems = "; ".join(
            f"{options.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise CliError(problems) from None


def _load_model(directory: Path):
    """A saved AnimateAnyone folder, or the ``model/`` of a defense output (on the GPU if there is one)."""
    from poseguard_lib.config import compute_device
    from poseguard_lib.models.components import SETTINGS_FILE, AnimateAnyone

    for candidate in (directory, directory / "model"):
        if (candidate / SETTINGS_FILE).is_file():
            return AnimateAnyone.from_pretrained(candidate).eval().to(compute_device())
    if not directory.exists():
        raise CliError(f"{directory} does not exist")
    raise CliError(f"{directory} is not a saved AnimateAnyone model (no {SETTINGS_FILE}, nor model/{SETTINGS_FILE})")


def _read_image(path: Path, height: int, width: int) -> np.ndarray:
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except (OSError, ValueError) as err:
        raise CliError(f"{path}: cannot read image ({err})") from None
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise CliError(f"{path}: expected an RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise CliError(f"{path}: expected 8-bit colour, got {image.dtype}")
    image = np.ascontiguousarray(image[..., :3])
    interpolation = cv2.INTER_AREA if image.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _unsafe_poses(files: Sequence[Path], ids: Sequence[str]):
    """Poses and labels from pose files and catalogue ids, in the order given."""
    from poseguard_lib.data.catalogue import load_unsafe_catalogue
    from poseguard_lib.pose.io import read_pose

    poses, labels = [], []
    for path in files:
        poses.append(read_pose(path))
        labels.append(path.stem)
    if ids:
        catalogue = {entry.id: entry for entry in load_unsafe_catalogue()}
        unknown = [i for i in ids if i not in catalogue]
        if unknown:
            raise CliError(f"unknown catalogue ids {unknown}; `poseguard catalogue` lists them")
        poses += [catalogue[i].pose for i in ids]
        labels += list(ids)
    return poses, labels


# ----------------------------------------------------------------------------- commands
def _defend(args: argparse.Namespace) -> int:
    from poseguard_lib.data.synthetic import ImagePairDataset, build_split
    from poseguard_lib.defense import UnsafePairDataset, defend, reference_frames
    from poseguard_lib.models.training import load_or_train_base_model

    cfg = load_profile(args.profile, seed=args.seed)
    settings = _validated(
        DefenseSettings, cfg.defense, {field: getattr(args, field) for field in DEFENSE_OPTIONS}, DEFENSE_OPTIONS
    )
    poses, labels = _unsafe_poses(args.poses, args.catalogue)
    if args.identity is None and not poses:
        raise CliError("no unsafe poses given: pass --poses FILE..., --catalogue ID... or --identity IMAGE")
    if args.identity is not None and settings.strategy == "fuse":
        raise CliError("--identity trains one defense for the person; use --strategy full or lora")
    identity = None if args.identity is None else _read_image(args.identity, cfg.data.height, cfg.data.width)
    model = _load_model(args.base_model) if args.base_model else load_or_train_base_model(
        cfg, args.cache_dir, progress=args.progress
    )[0]
    train_videos = build_split(cfg.data, args.seed)["train"]
    if identity is not None:
        references = identity[None]
        if not poses:
            poses = [pose for video in train_videos for pose in video.poses.frames]
            labels = [f"benign_{i:04d}" for i in range(len(poses))]
    else:
        references = reference_frames(train_videos)
    pairs = UnsafePairDataset.from_settings(references, poses, cfg.data, settings, seed=args.seed, pose_labels=labels)
    benign = ImagePairDataset(train_videos, seed=args.seed)
    result = defend(model, pairs, benign, settings, cfg.train, seed=args.seed, out_dir=args.output, progress=args.progress)
    final = result.history.groupby("phase", sort=False)["loss"].last().round(4).to_dict() if len(result.history) else {}
    print(f"defended model ({result.strategy}, {len(pairs.poses)} poses) saved to {args.output}; final losses {final}")
    return 0


def _write_output(path: Path, frames: np.ndarray, fps: float) -> None:
    """``frames`` (T, H, W, 3) uint8 → a GIF/MP4 file or a folder of PNGs, written atomically."""
    import imageio.v3 as iio

    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        with atomic_path(path) as tmp:
            if suffix == ".gif":
                iio.imwrite(tmp, frames, duration=1000.0 / fps, loop=0)
            else:
                iio.imwrite(tmp, frames, fps=fps, macro_block_size=1)
    elif suffix == "":
        with atomic_dir(path) as tmp:
            for index, frame in enumerate(frames):
                iio.imwrite(tmp / f"frame_{index:04d}.png", frame)
    else:
        raise CliError(f"{path}: unsupported output {suffix!r}; use .gif, .mp4 or a folder name without suffix")


def _generate(args: argparse.Namespace) -> int:
    from poseguard_lib.models.pipeline import generate_images, generate_video
    from poseguard_lib.pose.draw import condition_image
    from poseguard_lib.pose.io import PoseFileError, read_pose, read_pose_sequence
    from poseguard_lib.pose.skeleton import PoseSequence

    cfg = load_profile(args.profile)
    sampling = _validated(
        SamplingSettings, cfg.sampling, {field: getattr(args, field) for field in SAMPLING_OPTIONS}, SAMPLING_OPTIONS
    )
    if args.fps <= 0:
        raise CliError(f"--fps must be positive, got {args.fps}")
    suffix = args.output.suffix.lower()
    if suffix and suffix not in VIDEO_SUFFIXES:
        raise CliError(f"{args.output}: unsupported output {suffix!r}; use .gif, .mp4 or a folder name without suffix")
    height, width = args.height or cfg.data.height, args.width or cfg.data.width
    if height <= 0 or width <= 0:
        raise CliError(f"--height and --width must be positive, got {height}×{width}")
    try:
        sequence = read_pose_sequence(args.poses)
    except PoseFileError as sequence_error:
        try:
            sequence = PoseSequence((read_pose(args.poses),))
        except PoseFileError:
            raise sequence_error from None
    model = _load_model(args.model)
    reference = torch.from_numpy(_read_image(args.reference, height, width)).permute(2, 0, 1).float() / 255
    pose_images = np.stack([condition_image(p, height, width, cfg.data.pose_detect_resolution) for p in sequence.frames])
    poses = torch.from_numpy(pose_images).permute(0, 3, 1, 2).float() / 255
    if args.per_frame or model.motion_adapter is None or len(poses) == 1:
        frames = generate_images(model, reference, poses, sampling, seed=args.seed, progress=args.progress)
    else:
        frames = generate_video(model, reference, poses, sampling, seed=args.seed, progress=args.progress)
    frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _write_output(args.output, frames, args.fps)
    print(f"wrote {len(frames)} frame(s) of {height}×{width} to {args.output}")
    return 0


def _catalogue(args: argparse.Namespace) -> int:
    from poseguard_lib.data.catalogue import load_unsafe_catalogue

    for entry in load_unsafe_catalogue():
        print(f"{entry.id}\t{entry.category}\t{entry.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unwind_on_sigterm()  # a stopped defense leaves no half-written adapter directory
    command = {"defend": _defend, "generate": _generate, "catalogue": _catalogue}[args.command]
    try:
        return command(args)
    except (ValueError, FileNotFoundError) as err:  # our validation errors are ValueErrors that name the problem
        print(f"poseguard: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
