"""Seconds per generated frame, for single frames (2D UNet) and videos (motion UNet).

Speed does not depend on the weights, so freshly built models of each profile's size are timed
with the profile's own sampling settings (steps, guidance, context windows). One warm-up call
precedes each measurement. On a GPU the model can run in half precision, as Moore's inference
does (fp16 weights); the paper profile's settings are the paper's (512×768, 30 DDIM steps,
guidance 3.5, 24-frame windows). Usage::

    python benchmarks/bench_generate.py --profiles tiny small --threads 2
    python benchmarks/bench_generate.py --profiles paper --device cuda --dtype bfloat16 \
        --images 8 --video-frames 24 --output benchmarks/results/generate_paper_gpu.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from poseguard_lib.config import load_profile
from poseguard_lib.io import write_json
from poseguard_lib.models import build_model
from poseguard_lib.models.pipeline import generate_images, generate_video
from poseguard_lib.reporting import device_description

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"


def _timed(function) -> float:
    """Wall seconds of ``function()``; generations return on the CPU, so GPU work is included."""
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def bench_profile(
    profile: str, images: int, video_frames: int | None, repeats: int, device: torch.device, dtype: torch.dtype
) -> dict:
    cfg = load_profile(profile)
    model = build_model(cfg.model, seed=cfg.seed).eval().to(device, dtype)
    height, width = cfg.data.height, cfg.data.width
    generator = torch.Generator().manual_seed(0)
    references = torch.rand(images, 3, height, width, generator=generator)
    poses = torch.rand(images, 3, height, width, generator=generator)
    frames = video_frames or 2 * cfg.sampling.context_frames
    video_poses = torch.rand(frames, 3, height, width, generator=generator)

    def image_run():
        generate_images(model, references, poses, cfg.sampling, seed=0, batch_size=images, progress=False)

    def video_run():
        generate_video(model, references[0], video_poses, cfg.sampling, seed=0, progress=False)

    image_run(), video_run()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    image_seconds = min(_timed(image_run) for _ in range(repeats))
    video_seconds = min(_timed(video_run) for _ in range(repeats))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "profile": profile,
        "height": height,
        "width": width,
        "denoiser_parameters": sum(p.numel() for p in model.denoising_unet.parameters()),
        "num_inference_steps": cfg.sampling.num_inference_steps,
        "guidance_scale": cfg.sampling.guidance_scale,
        "image_batch": images,
        "seconds_per_image_frame": image_seconds / images,
        "video_frames": frames,
        "context_frames": cfg.sampling.context_frames,
        "context_overlap": cfg.sampling.context_overlap,
        "seconds_per_video_frame": video_seconds / frames,
        "peak_gpu_memory_gib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["tiny", "small"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--images", type=int, default=32, help="frames per generate_images call")
    parser.add_argument("--video-frames", type=int, default=None, help="default: two context windows")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timed calls")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="the model's weights")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = [
        bench_profile(p, args.images, args.video_frames, args.repeats, device, getattr(torch, args.dtype))
        for p in args.profiles
    ]
    for row in results:
        print(
            f"{row['profile']:>6}: {row['seconds_per_image_frame']:.3f} s/frame (images), "
            f"{row['seconds_per_video_frame']:.3f} s/frame (video)"
        )
    write_json(
        args.output,
        {
            "device": device_description(device),
            "dtype": args.dtype,
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
