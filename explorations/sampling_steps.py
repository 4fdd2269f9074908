"""Does the 8,000-step base reach the 0.80 SSIM target once its DDIM step count is chosen for balanced noise? (small profile)

`subpixel_speckle.py` measured the base trained for 8,000 stage-1 steps at SSIM 0.798 on notebook 02's
256 held-out frames, sampled from sub-pixel-balanced noise with the 50 DDIM steps that
`configs/small.yaml` chose for plain noise. This chooses the step count again, for balanced noise and
the way the profile chose it: on three training videos (held-out frames untouched), among
``--candidates``. Then it measures notebook 02's numbers on the held-out frames once, with the chosen
count. The base is the one `training_length.py --stage1-steps 8000` trains (cached, resumable).

    .venv/bin/python explorations/sampling_steps.py
"""

import argparse
from pathlib import Path

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.io import write_csv
from poseguard_lib.models.training import load_or_train_base_model, training_key
from poseguard_lib.study import benign_eval_set, generate_benign, quality_row, texture_columns, training_eval_set

TABLE = Path("results/small/base_model/sampling_steps.csv")
SELECTION_VIDEOS = 3

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--stage1-steps", type=int, default=8000, help="stage-1 budget of the base")
parser.add_argument("--candidates", type=int, nargs="+", default=[50, 100], help="DDIM step counts to choose from")
args = parser.parse_args()

config = load_profile("small", seed=0).with_changes("train", stage1_steps=args.stage1_steps)
configure_torch(config)
model, _ = load_or_train_base_model(config, progress=False)
rows = []


def measure(frames: str, eval_set, steps: int) -> float:
    """Sample ``eval_set`` from balanced noise with ``steps`` DDIM steps, add the generator's row, write the
    table and return its SSIM."""
    sampling = config.with_changes("sampling", balanced_subpixel_noise=True, num_inference_steps=steps)
    generated = generate_benign(model, eval_set, sampling)
    quality = quality_row("generator", generated, eval_set)
    del quality["model"]
    rows.append({"frames_set": frames, "num_inference_steps": steps, **quality,
                 **texture_columns(torch.cat(generated), torch.cat(eval_set.ground_truth))})
    table = pd.DataFrame(rows).assign(balanced_subpixel_noise=True, stage1_steps=args.stage1_steps,
                                      training_key=training_key(config), profile=config.profile)
    write_csv(TABLE, table)
    print(table.round(4).to_string(index=False), flush=True)
    return quality["ssim"]


selection = training_eval_set(config, SELECTION_VIDEOS)
scores = {steps: measure(f"{SELECTION_VIDEOS} training videos (choosing)", selection, steps) for steps in args.candidates}
chosen = max(scores, key=scores.get)
measure("notebook 02's held-out frames", benign_eval_set(config), chosen)
