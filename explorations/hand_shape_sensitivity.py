"""Does anything in the small study depend on a pose's hand shapes? (small profile)

The middle finger at the chest escapes every full fine-tuning tried (``gesture_pose_alone.py``), and
only its fingers tell it apart from benign bodies (``nearest_benign_pose.py``). The fingers are in the
condition image; this asks whether the study ever gave the generator a reason to read them. For every
pose Full-FT-32 trained on and every never-trained pose, each as in the catalogue and with every hand
closed into a fist (``with_fists``), on notebook 03's held-out people:

- the training frames: how much the synthetic person, rendered in the two versions, differs (largest
  change of any pixel channel, 0-255; the renderer draws a hand as a skin ellipse at the wrist), and
  how much they change when the forearm turns (SSIM, for the turn below);
- the undefended generator: SSIM between its outputs for the two versions (same noise), beside the
  SSIM between its outputs for the same pose under two noise seeds (how much sampling alone varies)
  and for the pose with its right forearm turned by ``TURN`` degrees (a change of the body, with the
  pose-image pixels it changes beside the hand shapes' own);
- the defended models of notebook 03 that are cached (Full-FT-4, Full-FT-32): SSIM* on each version,
  against the undefended output for that version. A defense that read the fingers would treat a
  gesture and its fists differently; one that reads the body treats them alike.

Writes ``results/small/effectiveness/hand_shape_sensitivity.csv``. Trains nothing (run notebook 03
first for the defended columns); about 25 minutes of sampling on two CPU cores, seconds once cached.
Reported on the book's findings page.

    .venv/bin/python explorations/hand_shape_sensitivity.py
"""

import dataclasses

import numpy as np
import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.data.catalogue import hand_shape_pixels, with_fists
from poseguard_lib.data.render import render_person
from poseguard_lib.data.synthetic import to_tensor
from poseguard_lib.defense import load_or_defend
from poseguard_lib.defense.api import DEFENSE_FILE
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import ssim
from poseguard_lib.pose import perturb_limb
from poseguard_lib.pose.draw import changed_pixels
from poseguard_lib.study import (chosen_defense_settings, defense_study, generate_unsafe, unsafe_eval_people,
                                 unsafe_eval_set)

TURN = 10.0  # degrees, about the right elbow
DEFENDED_POSE_COUNTS = (4, 32)
VISIBLE = 0.1  # as in hand_shape_pixels: a pose-image pixel counts as changed above this
results = "results/small/effectiveness"

config = load_profile("small", seed=0)
configure_torch(config)
h, w, detect = config.data.height, config.data.width, config.data.pose_detect_resolution
study = defense_study(config)
settings = chosen_defense_settings(config, results)
largest = max(DEFENDED_POSE_COUNTS)
poses = study.trained_pool[:largest] + study.untrained
trained_by = {p.id: ", ".join(f"Full-FT-{n}" for n in DEFENDED_POSE_COUNTS if p in study.trained_pool[:n]) or "none"
              for p in poses}


def turned(entry):
    return dataclasses.replace(entry, pose=perturb_limb(entry.pose, "r_elbow", "r_wrist", TURN))


versions = {"pose": poses, "fists": [with_fists(p) for p in poses], "turned": [turned(p) for p in poses]}
eval_sets = {name: unsafe_eval_set(config, entries) for name, entries in versions.items()}
people = [look for look, _ in unsafe_eval_people(config)]

undefended = {name: generate_unsafe(study.base, eval_set, config, progress=True) for name, eval_set in eval_sets.items()}
other_seed = generate_unsafe(study.base, eval_sets["pose"], config.model_copy(update={"seed": config.seed + 1}),
                             progress=True)
defended = {}
for n in DEFENDED_POSE_COUNTS:
    cache = study.defense_dir("full", n)
    if not (cache / DEFENSE_FILE).is_file():
        print(f"no cached Full-FT-{n} under {cache}: its columns are left out (run notebook 03 first)")
        continue
    model = load_or_defend(study.base, study.unsafe_pairs(study.trained_pool).subset(n), study.benign_pairs, settings,
                           config.train, strategy="full", seed=config.seed, out_dir=cache, progress=False).model
    defended[n] = {name: generate_unsafe(model, eval_sets[name], config, progress=True) for name in ("pose", "fists")}

rows = []
for entry, fists, turn in zip(*versions.values()):
    items = eval_sets["pose"].items_of([entry.id])
    hand_pixels, lit_pixels = hand_shape_pixels(entry, h, w, detect, VISIBLE)
    truth = {name: np.stack([render_person(version.pose, look, h, w) for look in people])
             for name, version in (("pose", entry), ("fists", fists), ("turned", turn))}
    row = {
        "pose": entry.id, "category": entry.category, "trained_by": trained_by[entry.id],
        "hand_shape_pixels": hand_pixels, "turn_pixels": changed_pixels(entry.pose, turn.pose, h, w, detect, VISIBLE), "pose_image_pixels": lit_pixels,
        "truth_max_change_fists": int(np.abs(truth["fists"].astype(np.int16) - truth["pose"]).max()),
        "truth_ssim_turned": ssim(to_tensor(truth["turned"]), to_tensor(truth["pose"])),
        "undefended_ssim_fists": ssim(undefended["fists"][items], undefended["pose"][items]),
        "undefended_ssim_turned": ssim(undefended["turned"][items], undefended["pose"][items]),
        "undefended_ssim_other_seed": ssim(other_seed[items], undefended["pose"][items]),
    }
    for n, outputs in defended.items():
        row[f"full_ft_{n}_ssim_star"] = ssim(outputs["pose"][items], undefended["pose"][items])
        row[f"full_ft_{n}_ssim_star_fists"] = ssim(outputs["fists"][items], undefended["fists"][items])
    rows.append(row)
table = pd.DataFrame(rows).assign(profile=config.profile, turn_degrees=TURN)
write_csv(f"{results}/hand_shape_sensitivity.csv", table)
print(table.drop(columns=["category", "profile", "turn_degrees"]).round(3).to_string(index=False))
with_hands = table[table.hand_shape_pixels > 0]
print(f"\n{len(with_hands)} of {len(table)} poses draw hand shapes that fists change; over them, means:")
print(with_hands.select_dtypes("number").drop(columns="turn_degrees").mean().round(3).to_string())
for n in defended:
    difference = (with_hands[f"full_ft_{n}_ssim_star"] - with_hands[f"full_ft_{n}_ssim_star_fists"]).abs()
    print(f"Full-FT-{n}: |SSIM* with hands − SSIM* with fists| median {difference.median():.3f}, "
          f"largest {difference.max():.3f} ({with_hands.pose[difference.idxmax()]})")
