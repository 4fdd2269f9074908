"""Seconds per training step of the base model (stage 1 images, stage 2 video), and the whole budget.

Trains a profile's freshly built model on its own synthetic training split for a short run of
each stage (``train_stage``, the code the study trains with, on :func:`compute_device`), takes the
median step time after the first ``--warmup`` steps, and multiplies by the profile's step budget
to estimate a full base training. Checkpoints go to a temporary folder and are deleted. Usage::

    python benchmarks/bench_train.py --profile small --steps 200 --video-steps 50
    POSEGUARD_DEVICE=cuda python benchmarks/bench_train.py --output benchmarks/results/train_small_gpu.json
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from poseguard_lib.config import compute_device, load_profile
from poseguard_lib.data.synthetic import ImagePairDataset, VideoClipDataset, build_split
from poseguard_lib.io import write_json
from poseguard_lib.models import build_model
from poseguard_lib.models.training import train_stage
from poseguard_lib.reporting import device_description

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", choices=("tiny", "small"))
    parser.add_argument("--steps", type=int, default=200, help="stage-1 steps timed")
    parser.add_argument("--video-steps", type=int, default=50, help="stage-2 steps timed")
    parser.add_argument("--warmup", type=int, default=10, help="first steps of each stage left out")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if min(args.steps, args.video_steps) <= args.warmup:
        parser.error(f"--steps and --video-steps must exceed --warmup ({args.warmup})")
    torch.set_num_threads(args.threads)
    cfg = load_profile(args.profile)
    began = time.perf_counter()
    videos = build_split(cfg.data, cfg.seed)["train"]
    hue = cfg.train.hue_augment
    datasets = {
        1: ImagePairDataset(videos, seed=cfg.seed, hue_augment=hue),
        2: VideoClipDataset(videos, clip_length=cfg.train.video_frames, seed=cfg.seed, hue_augment=hue),
    }
    data_seconds = time.perf_counter() - began
    budget = {1: cfg.train.stage1_steps, 2: cfg.train.stage2_steps}
    timed = {1: args.steps, 2: args.video_steps}
    settings = cfg.train.model_copy(update={
        "stage1_steps": args.steps, "stage2_steps": args.video_steps, "checkpoint_every": 10**9,
    })
    model = build_model(cfg.model, seed=cfg.seed)
    stages = []
    with tempfile.TemporaryDirectory() as scratch:
        for stage in (1, 2):
            history = pd.DataFrame(train_stage(
                model, stage, datasets[stage], settings, seed=cfg.seed,
                checkpoint_dir=Path(scratch) / f"stage{stage}", progress=False,
            ))
            seconds = float(history["seconds"].iloc[args.warmup:].median())
            stages.append({
                "stage": stage, "steps_timed": timed[stage], "median_seconds_per_step": seconds,
                "profile_steps": budget[stage], "estimated_stage_seconds": seconds * budget[stage],
            })
            print(stages[-1])
    device = compute_device()
    write_json(args.output, {
        "what": f"base-model training steps of the {args.profile} profile (its batch sizes and model); "
                "the full-training figure is the median step time times the profile's step budget",
        "profile": args.profile,
        "device": device_description(device),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "mixed_precision": cfg.train.mixed_precision,
        "synthetic_data_seconds": data_seconds,
        "stages": stages,
        "estimated_training_seconds": sum(s["estimated_stage_seconds"] for s in stages),
    })


if __name__ == "__main__":
    main()
