"""How far does the small base move when it is trained on another kind of machine? (small profile)

One machine kind gives the same numbers bit for bit for the same seed and profile (the findings'
Determinism section); another CPU sums in another order, so its base drifts from the committed
one. This loads the profile's base from this machine's cache (training it, about 75 minutes on two
cores, if there is none), compares its loss curve with the committed one (notebook 02's base,
``results/small/base_model/loss_history.csv``) and measures it as notebook 02 does, on the same 256
held-out frames. Beside it: notebook 02's base, and the SSIM and PSNR of the base retrained on a
second machine kind that Table 1 defends (its baseline row). One row per machine a base was trained
on, in ``results/small/base_model/machine_kinds.csv``; a rerun replaces its machine's row.

``--defend-poses N`` also defends this machine's base with Full-FT against the first N trained poses
(notebook 03's chosen settings and defense seed; about half an hour for four poses) and measures it
as ``defense_noise.py`` measures Table 1's, whose rows (plain sampling noise, notebook 03's offset
and seed) it copies beside this machine's: benign frames of the first four held-out videos, SSIM*
on the trained and never-trained poses, pose by pose. Written to
``results/small/effectiveness/machine_kinds_defense.csv`` and ``..._per_pose.csv``.

    .venv/bin/python explorations/machine_kinds.py
    .venv/bin/python explorations/machine_kinds.py --defend-poses 4
"""

import argparse

import json
from pathlib import Path

import numpy as np
import pandas as pd

import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import replace_rows, write_csv
from poseguard_lib.models.training import load_or_train_base_model, trained_on
from poseguard_lib.reporting import BASELINE_METHOD, table1_method
from poseguard_lib.study import (base_quality, benign_eval_set, chosen_defense_settings, defense_study, generate_benign,
                                 generate_unsafe, sampled_defense_summary, unsafe_eval_set)

base_results = Path("results/small/base_model")
TABLE = base_results / "machine_kinds.csv"
SAME_LOSS = 1e-6  # a loss this close to the committed one counts as the same step

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--defend-poses", type=int,
                    help="also defend this machine's base with Full-FT against this many trained poses")
args = parser.parse_args()

config = load_profile("small", seed=0)
configure_torch(config)
model, history = load_or_train_base_model(config, progress=False)
machine = trained_on(config)
if machine is None:
    raise SystemExit("this base's training.json does not name the machine it trained on (a cache from before it did); "
                     "delete the cached base and run again to train it here")

committed = pd.read_csv(base_results / "loss_history.csv")
if not committed[["stage", "step"]].equals(history[["stage", "step"]]):
    raise ValueError("the cached base's loss history covers other steps than the committed one: another budget?")
difference = np.abs(history.loss.to_numpy() - committed.loss.to_numpy())
stage1 = (history.stage == 1).to_numpy()
first_apart = np.flatnonzero(difference > SAME_LOSS)
loss_columns = {
    "steps_matching_committed_losses": int(first_apart[0]) if first_apart.size else len(difference),
    "max_stage1_loss_difference": float(difference[stage1].max()),
    "final_stage1_loss": float(history.loss[stage1].tail(250).mean()),
}

eval_set = benign_eval_set(config)
quality = base_quality(generate_benign(model, eval_set, config), eval_set, name="generator").iloc[[0]]
ours = quality.assign(base=f"trained on {machine}", **loss_columns)

notebook02 = pd.read_csv(base_results / "metrics.csv").iloc[[0]]  # its generator row
notebook02_machine = json.loads((base_results / "provenance.json").read_text())["device"]
table1 = pd.read_csv("results/small/effectiveness/metrics.csv").set_index("method")
table1 = table1.loc[[BASELINE_METHOD], ["ssim", "psnr"]]
references = pd.concat([
    notebook02.assign(base=f"notebook 02's base ({notebook02_machine})", steps_matching_committed_losses=len(committed),
                      max_stage1_loss_difference=0.0,
                      final_stage1_loss=committed.loss[committed.stage == 1].tail(250).mean()),
    table1.reset_index(drop=True).assign(base="Table 1's retrained base (a second machine kind)"),
])
columns = ["base", "ssim", "psnr", "pose_gap", "appearance_gap", *loss_columns]
rows = pd.concat([references, ours], ignore_index=True)[columns].astype(
    {"steps_matching_committed_losses": "Int64"}).assign(profile=config.profile)
table = replace_rows(TABLE, rows, key="base", sort_by=["base"])
print(table.round(4).to_string(index=False))

if args.defend_poses:
    effectiveness = Path("results/small/effectiveness")
    n = args.defend_poses
    study = defense_study(config)  # this machine's base, from the cache
    eval_set = benign_eval_set(config).first_videos(4)  # as defense_noise.py samples
    unsafe_set = unsafe_eval_set(config, study.trained_pool[: max(n, 4)] + study.untrained)
    defended = load_or_defend(study.base, study.unsafe_pairs(study.trained_pool).subset(n), study.benign_pairs,
                              chosen_defense_settings(config, effectiveness), config.train, strategy="full",
                              seed=config.seed, out_dir=study.defense_dir("full", n), progress=False).model
    outputs = {k: (torch.cat(generate_benign(model, eval_set, config)), generate_unsafe(model, unsafe_set, config))
               for k, model in ((0, study.base), (n, defended))}
    here = f"trained on {machine}"
    never_trained = unsafe_set.items_of([pose.id for pose in study.untrained])
    summary = pd.DataFrame([
        {"method": table1_method("full", k) if k else BASELINE_METHOD, "n_poses": k, "base": here}
        | sampled_defense_summary(benign, unsafe, outputs[0], torch.cat(eval_set.ground_truth),
                                  unsafe_set.items_of([pose.id for pose in study.trained_pool[:k]]), never_trained,
                                  study.base.downscale)
        for k, (benign, unsafe) in outputs.items()])
    roles = {"trained": study.trained_pool[:n], "never trained": study.untrained}
    per_pose = unsafe_set.per_pose(outputs[n][1], outputs[0][1], roles).assign(
        method=table1_method("full", n), n_poses=n, base=here)

    for measured, reference_table, name in ((summary, "defense_noise", "machine_kinds_defense"),
                                            (per_pose, "defense_noise_per_pose", "machine_kinds_defense_per_pose")):
        # defense_noise.py's rows for Table 1's base, for the same models sampled and trained as here
        reference = pd.read_csv(effectiveness / f"{reference_table}.csv")
        reference = reference[~reference.balanced_subpixel_noise & reference.n_poses.isin(measured.n_poses)
                              & reference.defense_noise_offset.isin(["not defended", "per-position"])
                              & (reference.defense_seed.isna() | (reference.defense_seed == config.seed))]
        reference = reference.assign(base="Table 1's retrained base")[measured.columns]
        write_csv(effectiveness / f"{name}.csv", pd.concat([reference, measured]).assign(profile=config.profile))
    print(pd.read_csv(effectiveness / "machine_kinds_defense.csv").round(3).to_string(index=False))
