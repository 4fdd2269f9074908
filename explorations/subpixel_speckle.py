"""Where does the wall speckle come from, and does a sub-pixel-balanced starting noise remove it? (small profile)

The small base samples in pixel space with 2×2 patches stacked into channels, and loses SSIM on the
flat studio wall to a faint speckle (`sampling_settings.py`, `training_length.py`). This measures how
much of that speckle is one offset per patch position repeated over the whole frame
(`metrics.image.subpixel_pattern`), how much of that pattern the starting noise sets (the noise's own
per-position means, against the pattern: correlation and the share carried into the image), and
notebook 02's numbers on its 256 held-out frames when sampling starts from noise whose per-position
means are equal (`balanced_subpixel_noise`). Runs on the base trained for ``--stage1-steps`` (the
profile's budget by default), which is trained first if it is not cached (an hour or more on 2 cores).
Rows for a budget replace that budget's earlier rows in the table.

    .venv/bin/python explorations/subpixel_speckle.py --stage1-steps 8000
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.io import replace_rows
from poseguard_lib.metrics.image import subpixel_pattern
from poseguard_lib.models.pipeline import balance_subpixel_phases, initial_noise
from poseguard_lib.models.training import load_or_train_base_model, training_key
from poseguard_lib.reporting import frame_grid, save_figure, to_uint8
from poseguard_lib.study import base_quality, benign_eval_set, generate_benign, reference_copies, texture_columns

TABLE = Path("results/small/base_model/subpixel_speckle.csv")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--stage1-steps", type=int, default=None, help="stage-1 budget of the base (default: the profile's)")
args = parser.parse_args()

config = load_profile("small", seed=0)
if args.stage1_steps is not None:
    config = config.with_changes("train", stage1_steps=args.stage1_steps)
configure_torch(config)
model, _ = load_or_train_base_model(config, progress=False)
patch = model.downscale
eval_set = benign_eval_set(config)
truth = torch.cat(eval_set.ground_truth)


def starting_noise_pattern() -> torch.Tensor:
    """(frames, 3, patch²): each frame's starting-noise mean per patch position, less their mean (image units)."""
    patterns = []
    for i, poses in enumerate(eval_set.poses):
        height, width = (side // patch for side in poses.shape[-2:])
        noise = initial_noise(model, (1, model.denoising_unet.config.in_channels, len(poses), height, width),
                              config.seed + i, config.sampling)
        contrast = (noise - balance_subpixel_phases(noise, patch)).mean((-2, -1))  # (1, colours·patch², T)
        patterns.append(contrast[0].T.unflatten(1, (-1, patch**2)) / 2)  # [-1, 1] latents → [0, 1] images
    return torch.cat(patterns).double()


noise_pattern = starting_noise_pattern().flatten().numpy()  # the plain noise's, which balancing removes
rows, first_frames = [], {}
for balanced in (False, True):
    generated = generate_benign(model, eval_set, config.with_changes("sampling", balanced_subpixel_noise=balanced))
    quality = base_quality(generated, eval_set).to_dict("records")
    first_frames["balanced noise" if balanced else "plain noise"] = generated[0][0]
    if balanced:  # copying the reference and the ground truth do not depend on the sampling
        quality = quality[:1]
    for record, videos in zip(quality, (generated, reference_copies(eval_set), eval_set.ground_truth)):
        frames = torch.cat(videos)
        pattern = subpixel_pattern(frames, truth, patch)
        record |= {"balanced_subpixel_noise": balanced, **texture_columns(frames, truth),
                   "subpixel_pattern_rms": pattern.pow(2).mean().sqrt().item()}
        if record["model"] == "generator":
            y = pattern.flatten().numpy()
            record["pattern_noise_correlation"] = np.corrcoef(noise_pattern, y)[0, 1]
            record["pattern_share_of_noise"] = float((noise_pattern * y).sum() / (noise_pattern**2).sum())
        rows.append(record)

rows = pd.DataFrame(rows).assign(stage1_steps=config.train.stage1_steps, training_key=training_key(config),
                                 profile=config.profile)
table = replace_rows(TABLE, rows, key="stage1_steps", sort_by=["stage1_steps"])

# The first held-out frame, whole, a corner of its wall, and that corner's texture (less its mean colour) ×10.
corner = (slice(None), slice(2, 18), slice(2, 18))
shown = {"ground truth": eval_set.ground_truth[0][0]} | first_frames
textures = {name: 0.5 + 10 * (frame[corner] - frame[corner].mean((1, 2), keepdim=True)) for name, frame in shown.items()}
figure = frame_grid(
    [[to_uint8(image[None])[0] for image in (frame, frame[corner], textures[name])] for name, frame in shown.items()],
    row_labels=list(shown), col_labels=["frame", "wall corner", "its texture ×10"], scale=1.6,
)
save_figure(figure, TABLE.with_name(f"subpixel_speckle_{config.train.stage1_steps}.png"))
print(table.round(4).to_string(index=False), flush=True)
