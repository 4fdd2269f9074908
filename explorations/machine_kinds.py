"""How far does the small base move when it is trained on another kind of machine? (small profile)

One machine kind gives the same numbers bit for bit for the same seed and profile (the findings'
Determinism section); another CPU sums in another order, so its base drifts from the committed
one. This loads the profile's base from this machine's cache (training it, about 75 minutes on two
cores, if there is none), compares its loss curve with the committed one (notebook 02's base,
``results/small/base_model/loss_history.csv``) and measures it as notebook 02 does, on the same 256
held-out frames. Beside it: notebook 02's base, and the SSIM and PSNR of the base retrained on a
second machine kind that Table 1 defends (its baseline row). One row per machine a base was trained
on, in ``results/small/base_model/machine_kinds.csv``; a rerun replaces its machine's row.

    .venv/bin/python explorations/machine_kinds.py
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.io import cache_dir, replace_rows
from poseguard_lib.models.training import load_or_train_base_model, training_key
from poseguard_lib.reporting import BASELINE_METHOD
from poseguard_lib.study import base_quality, benign_eval_set, generate_benign

base_results = Path("results/small/base_model")
TABLE = base_results / "machine_kinds.csv"
SAME_LOSS = 1e-6  # a loss this close to the committed one counts as the same step

config = load_profile("small", seed=0)
configure_torch(config)
model, history = load_or_train_base_model(config, progress=False)
machine = json.loads((cache_dir("models", training_key(config)) / "training.json").read_text()).get("machine")
if machine is None:
    raise SystemExit("this base's training.json does not name the machine it trained on (a cache from before it did); "
                     "delete the cached base and run again to train it here")

committed = pd.read_csv(base_results / "loss_history.csv")
if not committed[["stage", "step"]].equals(history[["stage", "step"]]):
    raise ValueError("the cached base's loss history covers other steps than the committed one: another budget?")
difference = np.abs(history.loss.to_numpy() - committed.loss.to_numpy())
stage1 = (history.stage == 1).to_numpy()
loss_columns = {
    "steps_matching_committed_losses": int(np.argmax(difference > SAME_LOSS)) if (difference > SAME_LOSS).any()
    else len(difference),
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
rows = pd.concat([references, ours], ignore_index=True)[columns].assign(profile=config.profile).astype(
    {"steps_matching_committed_losses": "Int64"})
table = replace_rows(TABLE, rows, key="base", sort_by=["base"])
print(table.round(4).to_string(index=False))
