"""Does a merged LoRA defense generate as fast as the model it defends? (issue 5: "within 1%").

Table 2 of notebook 03 times each model a handful of times, and its control copy of the original
(the same weights, timed as a separate model) came out at 0.936: one-shot timing noise on a
shared CPU is several percent, too coarse for a 1% claim. This benchmark times many short,
interleaved rounds instead (``poseguard_lib.study.timed_rounds``: every model once per round, in
a seeded shuffled order) and reports, per model, the median over rounds of its time over the
original's time in the same round, with a bootstrap 95% interval for that median.

Speed does not depend on the weights' values, so the models are the profile's architecture with
freshly initialised weights: the original, a deep copy of it (control: any gap it shows is noise),
a copy with a seeded random LoRA adapter merged into the denoiser, and that adapter left unmerged
and active. The timed unit is either one generation (``--unit generation``: one context window of
video at a reduced step count) or one denoising step of that window (``--unit denoiser-step``: one
call of the motion UNet, the only part a LoRA defense changes; the ReferenceNet, PoseGuider and
image encoder are the same modules with the same weights in all four models, so a generation is
within the denoiser's ratio whenever its denoising steps are). Each generation lasts seconds, and
the machine's speed drifts within that time; a step lasts a tenth of that, so many more rounds fit
in the same time and adjacent models see nearly the same machine. Every model is timed with the
original's ``requires_grad`` flag (``poseguard_lib.study.grad_flags_like``): frozen weights alone
made a copy of the original 4% slower per step on a 2-core CPU. Usage::

    python benchmarks/bench_merged_speed.py --profile small --rounds 30 --steps 20
    python benchmarks/bench_merged_speed.py --unit denoiser-step --rounds 800 --threads 1 \
        --output benchmarks/results/merged_speed_denoiser_step.json
    python benchmarks/bench_merged_speed.py --profile paper --unit denoiser-step --rounds 30 \
        --device cuda --dtype bfloat16 --output benchmarks/results/merged_speed_paper_gpu.json
"""

from __future__ import annotations

import argparse
import copy
import platform
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap

from poseguard_lib.config import load_profile
from poseguard_lib.defense.lora import add_adapter, merge_adapters
from poseguard_lib.io import write_json
from poseguard_lib.models import build_model
from poseguard_lib.models.pipeline import generate_video
from poseguard_lib.reporting import device_description
from poseguard_lib.study import grad_flags_like, per_round_ratios, timed_rounds

RESULTS = Path(__file__).resolve().parent / "results" / "merged_speed.json"
PARTS = ("denoising_unet",)


def candidate_models(cfg, seed: int, device: torch.device, dtype: torch.dtype) -> dict:
    """Original, control copy, merged adapter, unmerged adapter (same random adapter in both)."""
    original = build_model(cfg.model, seed=seed).eval().to(device, dtype)
    with_adapter = copy.deepcopy(original)
    torch.manual_seed(seed)
    add_adapter(with_adapter, "defense", rank=cfg.defense.lora_rank, parts=PARTS)
    with torch.no_grad():  # a trained adapter's B is not zero; give it seeded values of that kind
        for name, param in with_adapter.denoising_unet.named_parameters():
            if ".lora_B." in name:
                param.normal_(std=0.01)
    merged = copy.deepcopy(with_adapter)
    merge_adapters(merged, ["defense"], [1.0], PARTS)
    return {
        "original": original,
        "original (control copy)": copy.deepcopy(original),
        "LoRA merged": merged,
        "LoRA unmerged": with_adapter,
    }


def denoiser_step(model, reference: torch.Tensor, poses: torch.Tensor, seed: int):
    """A call that runs ``model``'s motion UNet once on one noisy window (inputs prepared here, untimed)."""
    video_unet = model.video_unet()
    conditions = model.reference_conditions(reference[None])
    features = model.pose_features(poses)
    channels = model.denoising_unet.config.in_channels
    height, width = (side // model.downscale for side in poses.shape[-2:])
    noisy = torch.randn((1, channels, len(poses), height, width), generator=torch.Generator().manual_seed(seed))
    noisy = noisy.to(model.device)
    timesteps = torch.full((1,), model.scheduler.config.num_train_timesteps // 2, dtype=torch.long, device=model.device)

    def step():
        model.denoise(noisy, timesteps, conditions, features, video_unet=video_unet)

    return step


def summarise(ratios: np.ndarray, seed: int) -> dict:
    interval = bootstrap((ratios,), np.median, confidence_level=0.95, n_resamples=10_000,
                         random_state=np.random.default_rng(seed)).confidence_interval
    return {"median_relative_to_original": float(np.median(ratios)),
            "ci95_low": float(interval.low), "ci95_high": float(interval.high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (one warm-up round precedes them)")
    parser.add_argument("--unit", choices=("generation", "denoiser-step"), default="generation",
                        help="what one timed run is: a whole generation, or one denoising step of it")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per generation (unit generation)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="the models' weights")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_profile(args.profile)
    sampling = cfg.sampling.model_copy(update={"num_inference_steps": args.steps})
    models = candidate_models(cfg, cfg.seed, device, getattr(torch, args.dtype))
    generator = torch.Generator().manual_seed(cfg.seed)
    reference = torch.rand(3, cfg.data.height, cfg.data.width, generator=generator)
    poses = torch.rand(sampling.context_frames, 3, cfg.data.height, cfg.data.width, generator=generator)

    if args.unit == "generation":
        timed = models

        def run(model):  # the video comes back on the CPU, which waits for the GPU
            generate_video(model, reference, poses, sampling, seed=cfg.seed, progress=False)
    else:
        with torch.no_grad():
            timed = {name: denoiser_step(model, reference, poses, cfg.seed) for name, model in models.items()}

        def run(step):
            with torch.no_grad():
                step()
            if device.type == "cuda":  # the step's output stays on the GPU: wait for it
                torch.cuda.synchronize(device)

    with grad_flags_like(models.values(), models["original"]):  # adding the adapter froze the base weights
        per_frame = timed_rounds(timed, run, args.rounds, seed=cfg.seed) / len(poses)
    ratios = per_round_ratios(per_frame)
    results = []
    for name in per_frame.columns:
        row = {"model": name, "median_seconds_per_frame": float(per_frame[name].median())}
        if name != per_frame.columns[0]:
            row |= summarise(ratios[name].to_numpy(), cfg.seed)
        results.append(row)
        print(row)
    write_json(args.output, {
        "what": f"{args.unit} time relative to the original, same round; models with random weights in "
                f"the {args.profile} profile's layout (speed does not depend on weight values)",
        "unit": args.unit,
        "profile": args.profile,
        "device": device_description(device),
        "dtype": args.dtype,
        "processor": platform.processor() or platform.machine(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "rounds": args.rounds,
        "num_inference_steps": args.steps if args.unit == "generation" else None,
        "video_frames": len(poses),
        "lora_rank": cfg.defense.lora_rank,
        "results": results,
        "seconds_per_frame_by_round": per_frame.to_dict(orient="list"),
    })


if __name__ == "__main__":
    main()
