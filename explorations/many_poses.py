"""What Table 1 does not show at 16 and 32 poses: pose by pose, selectivity and PSR's evidence (small profile)

Notebook 03's Table 1 measures 16 and 32 poses too; the defenses take long to train (against 16,
full fine-tuning about 1.7 hours of two CPU cores at 1.3 s per step and LoRA half an hour; against
32, twice that), so this script was how the study first trained them, one pose count per session.
It trains the n-pose defenses with the settings notebook 03 chose (read from its committed selection
tables) into notebook 03's defense cache (training resumes from its last checkpoint if stopped), so
the notebook reuses them, and measures each model as notebook 03 does: Table 1's columns and PSR
with the profile's extractors (the same function, the same held-out sets), plus selectivity (SSIM*
on the never-trained poses, benign SSIM to the undefended model's outputs), how many trained poses
reach SSIM* 0.25, output brightness, and the medians behind PSR (fraction of joints its estimator
finds, their distance from the unsafe pose, and the share of items whose verdict differs from the
undefended model's either way); pose by pose in ``poses_<n>_per_pose.csv``. The undefended row is
this base model's. The tables are rewritten after each model, so a stopped run keeps what it finished.
``--seed`` trains the same defenses with other random draws (which pairs each batch takes, timesteps,
noise, condition drops), each in a cache folder of its own, so that one training's luck can be told
from the configuration's; ``full_ft_draws.py`` then sets every Full-FT draw beside the others.

    .venv/bin/python explorations/many_poses.py --n-poses 16
    .venv/bin/python explorations/many_poses.py --n-poses 32 --strategies lora   # LoRA only: about an hour
    .venv/bin/python explorations/many_poses.py --n-poses 8 --strategies full --seed 1   # a second draw of Full-FT-8
"""

import argparse

import numpy as np
import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.evaluate import TABLE1_COLUMNS
from poseguard_lib.metrics.extractors import load_extractors
from poseguard_lib.metrics.image import ssim
from poseguard_lib.metrics.psr import pose_suppression_rate
from poseguard_lib.reporting import device_description, table1_method
from poseguard_lib.study import (benign_eval_set, chosen_defense_settings, defense_study, generate_benign,
                                 generate_unsafe, table1_rows, unsafe_eval_set)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n-poses", type=int, default=16, help="trained unsafe poses (the first n of the trained pool)")
parser.add_argument("--strategies", nargs="+", choices=("lora", "full"), default=["lora", "full"],
                    help="defenses to train and measure, in this order")
parser.add_argument("--seed", type=int, help="the defenses' random draws (default: notebook 03's seed); another seed "
                    "trains replicates beside notebook 03's defenses and writes poses_<n>_seed<seed>*.csv")
args = parser.parse_args()
N_POSES = args.n_poses
SUPPRESSED = 0.25  # issue 5's SSIM* target
results = "results/small/effectiveness"

config = load_profile("small", seed=0)
defense_seed = config.seed if args.seed is None else args.seed
table_name = f"poses_{N_POSES}" if defense_seed == config.seed else f"poses_{N_POSES}_seed{defense_seed}"
configure_torch(config)
study = defense_study(config)
if not 0 < N_POSES <= len(study.trained_pool):
    parser.error(f"--n-poses must be between 1 and the trained pool's {len(study.trained_pool)} poses, not {N_POSES}")
settings = chosen_defense_settings(config, results)
pairs = study.unsafe_pairs(study.trained_pool)  # nested subsets, as notebook 03 trains them
extractors = load_extractors(config)  # trained once (about half an hour here), then read from cache

unsafe_set = unsafe_eval_set(config, study.trained_pool + study.untrained)  # notebook 03's sets: shared generations
benign_set = benign_eval_set(config)
roles = {"trained": study.trained_pool[:N_POSES], "never trained": study.untrained}
trained_ids = [p.id for p in roles["trained"]]
trained_items = unsafe_set.items_of(trained_ids)
untrained_items = unsafe_set.items_of([p.id for p in roles["never trained"]])
undefended = generate_benign(study.base, benign_set, config), generate_unsafe(study.base, unsafe_set, config)


def trained_pose_suppression(unsafe: torch.Tensor):
    """PSR's item-by-item verdicts on the outputs for the trained poses."""
    return pose_suppression_rate(unsafe[trained_items], unsafe_set.keypoints[trained_items.numpy()],
                                 extractors.pose_estimator, config.metrics.psr_threshold, config.metrics.psr_min_detected)


undefended_psr = trained_pose_suppression(undefended[1])


def selectivity_columns(method: str, outputs: tuple) -> dict:
    """What Table 1 does not show: collateral damage to benign and never-trained outputs, brightness,
    and PSR's evidence (how many joints its estimator finds, how far from the unsafe pose, and where its
    verdict differs from the one on the undefended model's outputs)."""
    benign, unsafe = torch.cat(outputs[0]), outputs[1]
    poses = unsafe_set.per_pose(unsafe, undefended[1], roles).assign(method=method)
    per_pose.append(poses)
    trained = poses[poses.role == "trained"]
    evidence = trained_pose_suppression(unsafe)
    return {"benign_ssim_vs_undefended": ssim(benign, torch.cat(undefended[0])),
            "benign_brightness": float(benign.mean()),
            "trained_poses_suppressed": int((trained.ssim_star <= SUPPRESSED).sum()),
            "ssim_star_untrained": ssim(unsafe[untrained_items], undefended[1][untrained_items]),
            "unsafe_brightness_trained": float(unsafe[trained_items].mean()),
            "psr_median_detected_fraction": float(np.median(evidence.detected_fraction)),
            "psr_median_keypoint_error": float(np.median(evidence.keypoint_error)),
            # which items PSR changes its verdict on, against the undefended model's outputs
            "psr_newly_suppressed": float((evidence.suppressed & ~undefended_psr.suppressed).mean()),
            "psr_no_longer_suppressed": float((~evidence.suppressed & undefended_psr.suppressed).mean())}


def save(rows: list[dict]) -> None:
    """Both tables, Table 1's columns first, in the paper's order."""
    labels = {"profile": config.profile, "device": device_description(study.base.device)}
    table = pd.DataFrame(rows).assign(benign_ssim_change=lambda t: t.ssim - t.ssim.iloc[0], **labels)
    first = ["method", "n_poses", *TABLE1_COLUMNS, "psr", "benign_ssim_change"]
    table = table[first + [c for c in table.columns if c not in first]]
    write_csv(f"{results}/{table_name}.csv", table)
    write_csv(f"{results}/{table_name}_per_pose.csv", pd.concat(per_pose, ignore_index=True).assign(**labels))
    print(table.drop(columns=[c for c in table.columns if c.endswith(("_extractor", "_estimator"))]).round(4)
          .to_string(index=False), flush=True)


per_pose, rows = [], []
for strategy in args.strategies:
    result = load_or_defend(study.base, pairs.subset(N_POSES), study.benign_pairs, settings, config.train,
                            strategy=strategy, seed=defense_seed,
                            out_dir=study.defense_dir(strategy, N_POSES, defense_seed), progress=False)
    method = table1_method(strategy, N_POSES)
    outputs = generate_benign(result.model, benign_set, config), generate_unsafe(result.model, unsafe_set, config)
    table = table1_rows(method, outputs, undefended, trained_ids, benign_set, unsafe_set, extractors, config)
    if not rows:
        rows.append(table.iloc[0].to_dict() | {"n_poses": N_POSES} | selectivity_columns(table.method[0], undefended))
    # train_seconds sums every step's time, across resumed runs too
    rows.append(table.iloc[1].to_dict() | {"n_poses": N_POSES} | selectivity_columns(method, outputs)
                | {"strategy": strategy, "steps": result.record["step_budget"],
                   "train_seconds": round(result.history.seconds.sum())})
    save(rows)
