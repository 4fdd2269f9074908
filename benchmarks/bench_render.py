"""How fast the synthetic data renders on one CPU core.

Renders every frame of every benign motion for a handful of people at 64 x 64 and reports
frames per second of ``render_person`` (the target is >= 500), of the DWPose-style pose
drawing, and the time to build the small profile's whole split. CPU time is reported next
to wall time because other work on a shared machine slows the wall clock but not the
process's own CPU time. Writes ``benchmarks/results/render.json`` and prints it.

    .venv/bin/python benchmarks/bench_render.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before numpy and torch load their thread pools

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from poseguard_lib.config import load_profile  # noqa: E402
from poseguard_lib.data.appearance import sample_appearances  # noqa: E402
from poseguard_lib.data.motions import benign_motions  # noqa: E402
from poseguard_lib.data.render import SUPERSAMPLE, render_person  # noqa: E402
from poseguard_lib.data.synthetic import build_split  # noqa: E402
from poseguard_lib.io import write_json  # noqa: E402
from poseguard_lib.pose.draw import draw  # noqa: E402

SIZE = 64
RESULT = Path(__file__).resolve().parent / "results" / "render.json"


def _hardware() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "load_average_1min_at_start": os.getloadavg()[0],
        "threads_used": 1,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
    }


def _rate(work, items: int, repeats: int) -> dict:
    """Frames per second of ``work`` (which handles ``items`` frames), best of ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {
        "frames": items,
        "frames_per_s_wall": round(items / min(wall), 1),
        "frames_per_s_cpu": round(items / min(cpu), 1),
    }


def main() -> dict:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    hardware = _hardware()
    people = sample_appearances(8, seed=0)
    poses = [pose for sequence in benign_motions(16).values() for pose in sequence.frames]
    render_person(poses[0], people[0], SIZE, SIZE)  # warm the background and pattern caches

    def render_all() -> None:
        for look in people:
            for pose in poses:
                render_person(pose, look, SIZE, SIZE)

    def draw_all() -> None:
        for pose in poses:
            draw(pose, SIZE, SIZE)

    small = load_profile("small").data
    start = time.perf_counter()
    split = build_split(small, seed=0)
    split_seconds = time.perf_counter() - start
    result = {
        "benchmark": "synthetic data rendering",
        "image_size": [SIZE, SIZE],
        "supersample": SUPERSAMPLE,
        "render_person": _rate(render_all, len(people) * len(poses), repeats=3),
        "target_frames_per_s": 500,
        "pose_draw": _rate(draw_all, len(poses), repeats=3),
        "small_profile_split": {
            "videos": {name: len(videos) for name, videos in split.items()},
            "frames": sum(len(v) for videos in split.values() for v in videos),
            "seconds_wall": round(split_seconds, 2),
        },
        "hardware": hardware,
    }
    write_json(RESULT, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
