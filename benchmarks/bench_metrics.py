"""Speed target: every image metric over 1,000 frames of 64×64 on a CPU in at most 60 s.

"Every image metric" is what the evaluation computes per frame pair or frame set: SSIM, PSNR,
LPIPS, and FID (features of both sets plus the Fréchet distance), with the small profile's
synthetic-domain image network (random weights: the speed does not depend on them). The figure,
the hardware and the machine's load when it ran go to ``benchmarks/results/metrics.json``
(written atomically); the script exits non-zero when the target is missed.

    python benchmarks/bench_metrics.py [--frames 1000] [--size 64] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from poseguard_lib.config import load_profile
from poseguard_lib.io import write_json
from poseguard_lib.metrics import feature_statistics, frechet_distance, lpips, psnr, ssim
from poseguard_lib.metrics.synthetic import ImageNetwork

TARGET_SECONDS = 60.0
RESULT = Path(__file__).resolve().parent / "results" / "metrics.json"
FEATURE_BATCH = 128


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@torch.no_grad()
def image_features(network: ImageNetwork, frames: torch.Tensor) -> torch.Tensor:
    batches = [frames[i : i + FEATURE_BATCH] for i in range(0, len(frames), FEATURE_BATCH)]
    return torch.cat([network(batch)["embedding"] for batch in batches])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = load_profile("small").metrics
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(args.frames, 3, args.size, args.size, generator=generator)
    pred = (target + 0.05 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    torch.manual_seed(0)
    network = ImageNetwork(settings.extractor_width, n_attributes=38).eval()

    timings: dict[str, float] = {}
    load_before = os.getloadavg()
    for name, run in (
        ("ssim", lambda: ssim(pred, target)),
        ("psnr", lambda: psnr(pred, target)),
        ("lpips", lambda: lpips(pred, target, network)),
        (
            "fid",
            lambda: frechet_distance(
                feature_statistics(image_features(network, pred)), feature_statistics(image_features(network, target))
            ),
        ),
    ):
        started = time.perf_counter()
        run()
        timings[name] = round(time.perf_counter() - started, 3)
    total = round(sum(timings.values()), 3)

    record = {
        "benchmark": "all image metrics (SSIM, PSNR, LPIPS, FID) on one CPU process",
        "frames": args.frames,
        "frame_size": [args.size, args.size],
        "seconds": timings,
        "total_seconds": total,
        "target_seconds": TARGET_SECONDS,
        "met": total <= TARGET_SECONDS,
        "extractor": (
            f"synthetic-domain image network, width {settings.extractor_width} (small profile), random weights"
        ),
        "hardware": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(),
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(RESULT, record)
    print(f"image metrics over {args.frames} frames of {args.size}x{args.size}: {total:.1f} s {timings} -> {RESULT}")
    return 0 if record["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
