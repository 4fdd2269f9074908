"""Does sampling from sub-pixel-balanced noise carry over to the defended models? (small profile)

`subpixel_speckle.py` found that starting from noise with equal means at the four pixel-patch
positions (`balanced_subpixel_noise`) raises the base's benign SSIM from 0.752 to 0.783. Notebook
03's defenses were all sampled from plain noise. This trains (or loads from notebook 03's cache) the
profile's Full-FT defenses for ``--n-poses`` with the settings notebook 03 chose, and samples each
model, undefended first, both ways: benign quality on the first ``--videos`` held-out videos (SSIM
against the ground truth, split between the wall and the figure, the 2×2 grid's size and the part of
it that every frame shares, and SSIM to the undefended model's outputs from the same noise), and
SSIM* on the trained and the never-trained unsafe poses against the undefended model sampled the
same way. So it answers whether the sampling fix keeps the defenses' suppression and their benign
drop. Writes its table after each model. On a 2-core CPU: the base, if not cached, over an hour;
Full-FT-4 about half an hour; sampling about three minutes per model and noise.

    .venv/bin/python explorations/balanced_noise_defenses.py --n-poses 1 4
"""

import argparse

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import psnr, ssim, subpixel_pattern
from poseguard_lib.reporting import BASELINE_METHOD, table1_method
from poseguard_lib.study import (
    benign_eval_set, chosen_defense_settings, defense_study, generate_benign, generate_unsafe, texture_columns,
    unsafe_eval_set,
)

RESULTS = "results/small/effectiveness"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n-poses", type=int, nargs="+", default=[1, 4], help="Full-FT pose counts to defend")
parser.add_argument("--videos", type=int, default=4, help="held-out benign videos to sample (16 frames each)")
args = parser.parse_args()

config = load_profile("small", seed=0)
configure_torch(config)
study = defense_study(config)
settings = chosen_defense_settings(config, RESULTS)
pairs = study.unsafe_pairs(study.trained_pool)
eval_set = benign_eval_set(config).first_videos(args.videos)
truth = torch.cat(eval_set.ground_truth)
unsafe_set = unsafe_eval_set(config, study.trained_pool[: max(args.n_poses)] + study.untrained)
never_trained = unsafe_set.items_of([pose.id for pose in study.untrained])
samplings = {balanced: config.with_changes("sampling", balanced_subpixel_noise=balanced) for balanced in (False, True)}


def outputs_of(model) -> dict:
    """(benign frames, unsafe images) for each way of sampling."""
    return {balanced: (torch.cat(generate_benign(model, eval_set, cfg)), generate_unsafe(model, unsafe_set, cfg))
            for balanced, cfg in samplings.items()}


def defended_model(n: int):
    """Notebook 03's Full-FT defense against the first ``n`` trained poses (its cache, or trained now)."""
    return load_or_defend(study.base, pairs.subset(n), study.benign_pairs, settings, config.train, strategy="full",
                          seed=config.seed, out_dir=study.defense_cache / f"full-{n}", progress=False).model


undefended = outputs_of(study.base)
rows = []
for n in [0, *args.n_poses]:
    name = table1_method("full", n) if n else BASELINE_METHOD
    outputs = outputs_of(defended_model(n)) if n else undefended
    trained = unsafe_set.items_of([pose.id for pose in study.trained_pool[:n]])
    for balanced, (benign, unsafe) in outputs.items():
        undefended_benign, undefended_unsafe = undefended[balanced]
        pattern = subpixel_pattern(benign, truth, study.base.downscale)
        rows.append({
            "method": name, "n_poses": n, "balanced_subpixel_noise": balanced,
            "ssim": ssim(benign, truth), "psnr": psnr(benign, truth), **texture_columns(benign, truth),
            "subpixel_pattern_rms": pattern.pow(2).mean().sqrt().item(),
            # the grid every frame shares, which the starting noise (different for each frame) cannot set
            "subpixel_pattern_fixed_rms": pattern.mean(0).pow(2).mean().sqrt().item(),
            "benign_ssim_to_undefended": ssim(benign, undefended_benign),
            "benign_brightness": benign.mean().item(),
            "ssim_star_trained": ssim(unsafe[trained], undefended_unsafe[trained]) if n else float("nan"),
            "ssim_star_never_trained": ssim(unsafe[never_trained], undefended_unsafe[never_trained]),
        })
    table = pd.DataFrame(rows).assign(benign_frames=len(truth), profile=config.profile)
    write_csv(f"{RESULTS}/balanced_noise.csv", table)
    print(table.round(4).to_string(index=False), flush=True)
