"""Does the defense keep working against 16 poses? (small profile, SSIM-based columns of Table 1)

Notebook 03's committed Table 1 stops at 8 poses: each count costs about an hour of two CPU cores
per strategy. This trains the 16-pose defenses with the settings notebook 03 chose (read from its
committed selection tables) into notebook 03's defense cache, so a later notebook run that chooses
the same settings reuses them, and measures what needs no trained extractor: benign SSIM against
ground truth, SSIM* on the trained poses (mean, and how many reach 0.25) and on the never-trained
ones, and output brightness. FID, FVD, LPIPS and PSR come with the next notebook run. The undefended
row is this base model's, so a retrained base compares like for like.

    .venv/bin/python explorations/sixteen_poses.py [full] [lora]    # default: both, full first
"""

import sys

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import ssim
from poseguard_lib.study import (benign_eval_set, chosen_defense_settings, defense_study, generate_benign, generate_unsafe,
                                 unsafe_eval_set)

N_POSES = 16
SUPPRESSED = 0.25  # issue 5's SSIM* target
results = "results/small/effectiveness"
strategies = sys.argv[1:] or ["full", "lora"]

config = load_profile("small", seed=0)
configure_torch(config)
study = defense_study(config)
settings = chosen_defense_settings(config, results)
pairs = study.unsafe_pairs(study.trained_pool)  # nested subsets, as notebook 03 trains them

unsafe_set = unsafe_eval_set(config, study.trained_pool + study.untrained)  # notebook 03's sets: shared generations
benign_set = benign_eval_set(config)
truth = torch.cat(benign_set.ground_truth)
trained_ids = [p.id for p in study.trained_pool[:N_POSES]]
trained_items = unsafe_set.items_of(trained_ids)
untrained_items = unsafe_set.items_of([p.id for p in study.untrained])
base_benign = torch.cat(generate_benign(study.base, benign_set, config))
base_unsafe = generate_unsafe(study.base, unsafe_set, config)


def row(name: str, benign: torch.Tensor, unsafe: torch.Tensor, **extra) -> dict:
    per_pose = [ssim(unsafe[unsafe_set.items_of([i])], base_unsafe[unsafe_set.items_of([i])]) for i in trained_ids]
    return {"method": name, "n_poses": N_POSES, "ssim": ssim(benign, truth),
            "benign_ssim_change": ssim(benign, truth) - ssim(base_benign, truth),
            "benign_ssim_vs_undefended": ssim(benign, base_benign),
            "ssim_star_trained": ssim(unsafe[trained_items], base_unsafe[trained_items]),
            "trained_poses_suppressed": sum(value <= SUPPRESSED for value in per_pose),
            "ssim_star_untrained": ssim(unsafe[untrained_items], base_unsafe[untrained_items]),
            "unsafe_brightness_trained": float(unsafe[trained_items].mean()),
            "benign_brightness": float(benign.mean())} | extra


rows = [row("Baseline (No FT)", base_benign, base_unsafe)]
for strategy in strategies:
    label = {"full": "Full-FT", "lora": "LoRA-FT"}[strategy]
    result = load_or_defend(study.base, pairs.subset(N_POSES), study.benign_pairs, settings, config.train,
                            strategy=strategy, seed=config.seed, out_dir=study.defense_cache / f"{strategy}-{N_POSES}",
                            progress=False)
    benign = torch.cat(generate_benign(result.model, benign_set, config))
    rows.append(row(f"{label}-{N_POSES} Poses", benign, generate_unsafe(result.model, unsafe_set, config),
                    strategy=strategy, steps=result.record["step_budget"],
                    defend_seconds=round(result.record["seconds"])))
    table = pd.DataFrame(rows).assign(profile=config.profile, device="CPU (2 cores)")
    write_csv(f"{results}/sixteen_poses.csv", table)  # after each model, so a finished one is kept
    print(table.round(4).to_string(index=False), flush=True)
