"""Is the small generator's benign SSIM (0.752, target 0.80) limited by sampling or by the model? (small profile)

Samples the first four of notebook 02's held-out evaluation videos (two held-out people on training
motions, two on held-out motions; 64 frames) with the chapter's settings and with one change at a
time: more DDIM steps, no guidance, and the training noise schedule. Each row splits SSIM between
the ground truth's flat windows (the studio wall, where any speckle costs SSIM heavily) and the
textured ones (the figure and the wall-floor edge), beside copying the reference. Loads the cached
base model (notebook 02 trains it); writes its table after each setting.

    .venv/bin/python explorations/sampling_settings.py
"""

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import psnr, ssim
from poseguard_lib.models.training import load_or_train_base_model
from poseguard_lib.study import benign_eval_set, generate_benign, reference_copies, texture_columns

N_VIDEOS = 4
VARIANTS = {
    "chapter (50 steps, guidance 1.5, linear)": {},
    "100 steps": {"num_inference_steps": 100},
    "no guidance (1.0)": {"guidance_scale": 1.0},
    "training schedule (scaled_linear)": {"beta_schedule": "scaled_linear"},
}

config = load_profile("small", seed=0)
configure_torch(config)
model, _ = load_or_train_base_model(config, progress=False)
eval_set = benign_eval_set(config).first_videos(N_VIDEOS)
truth = torch.cat(eval_set.ground_truth)


def row(name: str, outputs: torch.Tensor) -> dict:
    return {"setting": name, "ssim": ssim(outputs, truth), **texture_columns(outputs, truth), "psnr": psnr(outputs, truth)}


copies = torch.cat(reference_copies(eval_set))
rows = [row("ground truth (ceiling)", truth), row("copy the reference (baseline)", copies)]
for name, change in VARIANTS.items():
    outputs = torch.cat(generate_benign(model, eval_set, config.with_changes("sampling", **change)))
    rows.append(row(name, outputs))
    table = pd.DataFrame(rows).assign(frames=len(truth), profile=config.profile)
    write_csv("results/small/base_model/sampling_settings.csv", table)
    print(table.round(4).to_string(index=False), flush=True)
