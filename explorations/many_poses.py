"""Does the defense keep working against 16 and 32 poses? (small profile, SSIM-based columns of Table 1)

Notebook 03's committed Table 1 stops at 8 poses; against 16, full fine-tuning takes about 1.7 hours
of two CPU cores (1.3 s per step) and LoRA half an hour; against 32, twice that. This trains the
n-pose defenses with the settings notebook 03 chose (read from its committed selection tables) into
notebook 03's defense cache (training resumes from its last checkpoint if stopped), so a later
notebook run that chooses the same settings reuses them, and measures what needs no trained
extractor: benign SSIM against ground truth, SSIM* on the trained poses (mean, and how many reach
0.25) and on the never-trained ones, and output brightness; pose by pose in
``poses_<n>_per_pose.csv``. FID, FVD, LPIPS and PSR come with the next notebook run. The undefended
row is this base model's, so a retrained base compares like for like. Rows are written as they are
measured (SSIM* before the slower benign videos).

    .venv/bin/python explorations/many_poses.py --n-poses 16
    .venv/bin/python explorations/many_poses.py --n-poses 32 --strategies lora
"""

import argparse

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import ssim
from poseguard_lib.reporting import device_description, table1_method
from poseguard_lib.study import (benign_eval_set, chosen_defense_settings, defense_study, generate_benign,
                                 generate_unsafe, unsafe_eval_set)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n-poses", type=int, default=16, help="trained unsafe poses (the first n of the trained pool)")
parser.add_argument("--strategies", nargs="+", choices=("lora", "full"), default=["lora", "full"],
                    help="defenses to train and measure, in this order")
args = parser.parse_args()
N_POSES = args.n_poses
SUPPRESSED = 0.25  # issue 5's SSIM* target
results = "results/small/effectiveness"

config = load_profile("small", seed=0)
configure_torch(config)
study = defense_study(config)
if not 0 < N_POSES <= len(study.trained_pool):
    parser.error(f"--n-poses must be between 1 and the trained pool's {len(study.trained_pool)} poses, not {N_POSES}")
settings = chosen_defense_settings(config, results)
pairs = study.unsafe_pairs(study.trained_pool)  # nested subsets, as notebook 03 trains them

unsafe_set = unsafe_eval_set(config, study.trained_pool + study.untrained)  # notebook 03's sets: shared generations
benign_set = benign_eval_set(config)
truth = torch.cat(benign_set.ground_truth)
roles = {"trained": study.trained_pool[:N_POSES], "never trained": study.untrained}
trained_items = unsafe_set.items_of([p.id for p in roles["trained"]])
untrained_items = unsafe_set.items_of([p.id for p in roles["never trained"]])
base_benign = torch.cat(generate_benign(study.base, benign_set, config))
base_unsafe = generate_unsafe(study.base, unsafe_set, config)
base_ssim = ssim(base_benign, truth)


def benign_columns(benign: torch.Tensor) -> dict:
    quality = ssim(benign, truth)
    return {"ssim": quality, "benign_ssim_change": quality - base_ssim,
            "benign_ssim_vs_undefended": ssim(benign, base_benign), "benign_brightness": float(benign.mean())}


def unsafe_columns(method: str, unsafe: torch.Tensor) -> dict:
    poses = unsafe_set.per_pose(unsafe, base_unsafe, roles).assign(method=method)
    per_pose.append(poses)
    trained = poses[poses.role == "trained"]
    return {"ssim_star_trained": ssim(unsafe[trained_items], base_unsafe[trained_items]),
            "trained_poses_suppressed": int((trained.ssim_star <= SUPPRESSED).sum()),
            "ssim_star_untrained": ssim(unsafe[untrained_items], base_unsafe[untrained_items]),
            "unsafe_brightness_trained": float(unsafe[trained_items].mean())}


def save(rows: list[dict]) -> None:
    """Both tables after each measurement, so a finished one is kept if a later one is stopped."""
    labels = {"profile": config.profile, "device": device_description(study.base.device)}
    table = pd.DataFrame(rows).assign(**labels)
    write_csv(f"{results}/poses_{N_POSES}.csv", table)
    write_csv(f"{results}/poses_{N_POSES}_per_pose.csv", pd.concat(per_pose, ignore_index=True).assign(**labels))
    print(table.round(4).to_string(index=False), flush=True)


per_pose = []
rows = [{"method": "Baseline (No FT)", "n_poses": N_POSES} | benign_columns(base_benign)
        | unsafe_columns("Baseline (No FT)", base_unsafe)]
for strategy in args.strategies:
    result = load_or_defend(study.base, pairs.subset(N_POSES), study.benign_pairs, settings, config.train,
                            strategy=strategy, seed=config.seed, out_dir=study.defense_cache / f"{strategy}-{N_POSES}",
                            progress=False)
    # train_seconds sums every step's time, across resumed runs too
    method = table1_method(strategy, N_POSES)
    rows.append({"method": method, "n_poses": N_POSES, "strategy": strategy,
                 "steps": result.record["step_budget"], "train_seconds": round(result.history.seconds.sum())}
                | unsafe_columns(method, generate_unsafe(result.model, unsafe_set, config)))
    save(rows)  # defense strength first: the benign videos take another quarter of an hour on two CPU cores
    rows[-1] |= benign_columns(torch.cat(generate_benign(result.model, benign_set, config)))
    save(rows)
