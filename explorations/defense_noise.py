"""The defenses' noise: does sampling's grid fix or training's noise offset change them? (small profile)

`subpixel_speckle.py` found that starting from noise with equal means at the four pixel-patch positions
(`balanced_subpixel_noise`) raises the base's benign SSIM from 0.752 to 0.783. Notebook 03's defenses
were all sampled from plain noise, and trained with a noise offset drawn per colour and pixel-patch
position (`per_position_noise_offset`), where the base's training shares one value among a colour's four
positions. This trains (or loads from notebook 03's cache) the profile's Full-FT defenses for
``--n-poses`` with the settings notebook 03 chose, both with notebook 03's offset and with the base's,
and samples each model, undefended first, both ways: benign quality on the first ``--videos`` held-out
videos (SSIM against the ground truth, split between the wall and the figure, the 2×2 grid's size and
the part of it that every frame shares, and SSIM to the undefended model's outputs from the same noise),
and SSIM* on the trained and the never-trained unsafe poses against the undefended model sampled the
same way. So it answers whether the sampling fix keeps the defenses' suppression and their benign drop,
and what the defense's offset does. The two offsets also draw different timesteps and condition drops
from the same seed, so ``--seed-control`` trains each pose count's pair again with another defense
seed: the spread between two draws is the yardstick for the difference between the offsets.
Writes its table after each model, and SSIM* pose by pose beside it (``defense_noise_per_pose.csv``). On
a 2-core CPU: the base, if not cached, over an hour; each Full-FT-1 8 minutes, each Full-FT-4 about half
an hour; sampling about four minutes per model and noise.

    .venv/bin/python explorations/defense_noise.py --n-poses 1 4 --seed-control 1
"""

import argparse

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.reporting import BASELINE_METHOD, table1_method
from poseguard_lib.study import (
    NOISE_OFFSETS, benign_eval_set, chosen_defense_settings, defense_study, generate_benign, generate_unsafe,
    sampled_defense_summary, unsafe_eval_set,
)

RESULTS = "results/small/effectiveness"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n-poses", type=int, nargs="+", default=[1, 4], help="Full-FT pose counts to defend")
parser.add_argument("--videos", type=int, default=4, help="held-out benign videos to sample (16 frames each)")
parser.add_argument("--seed-control", type=int, help="also train each pose count's defenses with this defense seed, "
                    "both offsets: how far two trainings that differ only in their random draws fall apart")
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


def defended_model(n: int, per_position_offset: bool, seed: int):
    """Full-FT against the first ``n`` trained poses with notebook 03's chosen settings, its noise offset
    drawn per pixel-patch position (as notebook 03's cached defenses were) or as the base's training
    draws it, and its random draws from ``seed``; loaded from the cache or trained now."""
    chosen = settings.model_copy(update={"per_position_noise_offset": per_position_offset})
    out_dir = study.defense_dir("full", n, seed, per_position_offset)
    return load_or_defend(study.base, pairs.subset(n), study.benign_pairs, chosen, config.train, strategy="full",
                          seed=seed, out_dir=out_dir, progress=False).model


undefended = outputs_of(study.base)
seeds = [config.seed] if args.seed_control is None else [config.seed, args.seed_control]
models = [(0, None, None),
          *((n, per_position, seed) for seed in seeds for n in args.n_poses for per_position in (True, False))]
rows, per_pose = [], []
for n, per_position, seed in models:
    name = table1_method("full", n) if n else BASELINE_METHOD
    outputs = outputs_of(defended_model(n, per_position, seed)) if n else undefended
    trained = unsafe_set.items_of([pose.id for pose in study.trained_pool[:n]])
    roles = {"trained": study.trained_pool[:n], "never trained": study.untrained}
    offset = NOISE_OFFSETS.get(per_position, "not defended")
    for balanced, (benign, unsafe) in outputs.items():
        labels = {"method": name, "n_poses": n, "defense_noise_offset": offset, "defense_seed": seed,
                  "balanced_subpixel_noise": balanced}
        rows.append(labels | sampled_defense_summary(benign, unsafe, undefended[balanced], truth, trained, never_trained,
                                                     study.base.downscale))
        per_pose.append(unsafe_set.per_pose(unsafe, undefended[balanced][1], roles).assign(**labels))
    table = pd.DataFrame(rows).astype({"defense_seed": "Int64"}).assign(benign_frames=len(truth), profile=config.profile)
    write_csv(f"{RESULTS}/defense_noise.csv", table)
    write_csv(f"{RESULTS}/defense_noise_per_pose.csv",
              pd.concat(per_pose, ignore_index=True).astype({"defense_seed": "Int64"}).assign(profile=config.profile))
    print(table.round(4).to_string(index=False), flush=True)
