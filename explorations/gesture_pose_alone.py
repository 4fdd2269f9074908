"""Is the pose Full-FT-4 leaves alone hard on its own, or only when it shares the budget? (small profile)

Full-FT-4 suppresses three of its four trained poses and leaves the middle finger at the chest
untouched (SSIM* 0.97), and ``nearest_benign_pose.py`` found benign training frames with nearly
the same body (0.067 median limb lengths; only the fingers differ). This trains Full-FT-1 on that
pose alone, with notebook 03's settings and its one-pose budget (300 steps, so the pose gets as
many unsafe samples as in the four-pose run), in four variants:

- ``all-benign``: with all benign training pairs, as notebook 03 does;
- ``far-benign``: without the benign training frames whose body lies within ``NEAR`` median limb
  lengths of the pose (1,632 of 18,432 frames), so that no benign pair asks for the true image of
  what is nearly the same condition. ``NEAR`` was fixed from the nearest-benign table, before this
  ran: above the pose's own 0.067, below every other trained pose's nearest match (0.22 and up);
- ``pose-guider``: all benign pairs, with the PoseGuider fine-tuned beside the denoising UNet
  (beyond the paper). The guider is what turns the pose image into features; the finger strokes
  are faint after the pose image is drawn at the detection size and shrunk to 64 pixels, and a
  guider trained on benign poses alone may pass too little of them on for the denoiser to act on;
- ``strong-safety``: all benign pairs, with Eq. 1's λ at the largest of notebook 03's candidates
  (``STRONG_SAFETY_WEIGHT``) instead of the one its rule chose: is the pose beyond the method, or
  only beyond the chosen weight of the safety term?
- ``long-budget``: all benign pairs and the chosen λ, with Full-FT-4's whole step budget
  (``LONG_BUDGET_POSES`` × the one-pose steps) spent on this pose alone: does the pose only need more
  unsafe samples than the others, or do more steps not teach the finger pixels either?

Each model, with the undefended model and notebook 03's Full-FT-4 (where cached), is measured on the
pose and on the never-trained middle finger overhead (held-out people, SSIM* against the
undefended outputs), on the pose with both hands closed into fists (SSIM between the model's outputs
for the two: does it tell the gesture from the same body?), on the ``NEIGHBOURS`` held-out benign frames whose bodies are nearest to the
pose (are they suppressed too?), and on the 32 benign validation frames (general drift). Writes
``results/small/effectiveness/gesture_pose_alone.csv``; variants named on the command line run
alone, and their rows replace the same models' rows of that table. About 20 minutes per variant
on two CPU cores (``long-budget``: about an hour), seconds once cached. Reported on the book's findings page.

``--pose-detect-resolution`` asks whether the hand strokes are too faint to learn from: the pose
images are drawn at that size before they are shrunk to the frame (the profile draws at 256, so the
finger strokes, 2 pixels thick there, are half a pixel wide in the 64-pixel frame and blend into
black), and the whole study below, base generator included (about an hour to train here), is rebuilt
on those images. Its rows go to ``gesture_pose_alone_detect<N>.csv``. Every table carries the
drawing size and the pixels of the pose image that its hand shapes decide (``hand_shape_pixels``, as
in ``nearest_benign_pose.py``).

``--render-fingers`` asks whether the gesture escapes because no training frame ever shows a finger
(``hand_shape_sensitivity.py``): the synthetic people are painted with their fingers
(``data.render_fingers``) and the study below, base generator included, is rebuilt on those frames.
Its rows go to ``gesture_pose_alone_fingers.csv`` (both options: ``..._detect<N>_fingers.csv``), with
how much the true frames of the pose and of its fists differ on the held-out people.

    .venv/bin/python explorations/gesture_pose_alone.py [all-benign far-benign pose-guider strong-safety long-budget]
    .venv/bin/python explorations/gesture_pose_alone.py --pose-detect-resolution 128 all-benign
    .venv/bin/python explorations/gesture_pose_alone.py --render-fingers all-benign
"""

import argparse
import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.data.catalogue import hand_shape_pixels, with_fists
from poseguard_lib.data.motions import body_distance
from poseguard_lib.data.render import render_person
from poseguard_lib.data.synthetic import to_tensor
from poseguard_lib.defense import load_or_defend
from poseguard_lib.defense.api import DEFENSE_FILE
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import ssim
from poseguard_lib.study import (benign_eval_set, chosen_defense_settings, defense_study, generate_images_cached,
                                 generate_unsafe, unsafe_eval_people, unsafe_eval_set, validation_set)

POSE, UNTRAINED_TWIN = "disc_middle_finger_chest", "disc_middle_finger_overhead"
NEAR = 0.1  # median limb lengths
NEIGHBOURS = 16
LONG_BUDGET_POSES = 4  # the long-budget variant trains as many steps as Full-FT-4
FULL_4 = "Full-FT-4 (notebook 03)"
VARIANTS = ("all-benign", "far-benign", "pose-guider", "strong-safety", "long-budget")
results = "results/small/effectiveness"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("variants", nargs="*", metavar="variant",
                    help=f"which fine-tunings to run ({', '.join(VARIANTS)}; default: all)")
parser.add_argument("--pose-detect-resolution", type=int, metavar="N",
                    help="draw the pose images at N pixels before shrinking them to the frame, and rebuild the "
                         "study (base generator included) on them (default: the profile's)")
parser.add_argument("--render-fingers", action="store_true",
                    help="paint the synthetic people's fingers, and rebuild the study (base generator included) on "
                         "those frames")
args = parser.parse_args()
if unknown := sorted(set(args.variants) - set(VARIANTS)):  # not argparse's choices: they reject an empty list
    parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
config = load_profile("small", seed=0)
table_suffix = ""
if args.pose_detect_resolution not in (None, config.data.pose_detect_resolution):
    if args.pose_detect_resolution <= 0:
        parser.error(f"--pose-detect-resolution must be positive, not {args.pose_detect_resolution}")
    config = config.with_changes("data", pose_detect_resolution=args.pose_detect_resolution)
    table_suffix += f"_detect{args.pose_detect_resolution}"
if args.render_fingers:
    config = config.with_changes("data", render_fingers=True)
    table_suffix += "_fingers"
table_path = f"{results}/gesture_pose_alone{table_suffix}.csv"
STRONG_SAFETY_WEIGHT = max(config.defense.safety_weight_candidates)
configure_torch(config)
aspect = config.data.width / config.data.height
study = defense_study(config)
base, defense_cache, benign_pairs = study.base, study.defense_cache, study.benign_pairs
settings = chosen_defense_settings(config, results)
trained_pool, validation_poses, untrained = study.trained_pool, study.validation_poses, study.untrained
by_id = {p.id: p for p in trained_pool + untrained}
pose = by_id[POSE]
pairs = study.unsafe_pairs([pose])
hand_pixels, lit_pixels = hand_shape_pixels(pose, config.data.height, config.data.width,
                                            config.data.pose_detect_resolution)

train_distance = np.array([body_distance(pose.pose, frame, aspect)
                           for video in study.split["train"] for frame in video.poses])
if len(train_distance) != len(benign_pairs):
    raise RuntimeError("ImagePairDataset no longer has one item per training frame in video order")
far_pairs = Subset(benign_pairs, np.flatnonzero(train_distance >= NEAR).tolist())

unsafe_set = unsafe_eval_set(config, [pose, by_id[UNTRAINED_TWIN]])
fists = with_fists(pose)
fists_set = unsafe_eval_set(config, [fists])  # its own set, so the cached outputs above stay valid
truth_pose, truth_fists = (to_tensor(np.stack([render_person(entry.pose, look, config.data.height, config.data.width,
                                                             config.data.render_fingers)
                                               for look, _ in unsafe_eval_people(config)]))
                           for entry in (pose, fists))
truth_ssim_pose_vs_fists = ssim(truth_fists, truth_pose)
benign_set = benign_eval_set(config)
frames = config.evaluation.benign_frames
held_out = [(v, t) for v, video in enumerate(benign_set.videos) for t in range(frames)]
held_out_distance = np.array([body_distance(pose.pose, benign_set.videos[v].poses[t], aspect) for v, t in held_out])
nearest = [held_out[i] for i in np.argsort(held_out_distance, kind="stable")[:NEIGHBOURS]]
neighbour_refs = torch.stack([benign_set.references[v] for v, _ in nearest])
neighbour_poses = torch.stack([benign_set.poses[v][t] for v, t in nearest])
neighbour_truth = torch.stack([benign_set.ground_truth[v][t] for v, t in nearest])
validation = validation_set(config, validation_poses, config.evaluation.validation_benign)


def outputs(model) -> dict[str, torch.Tensor]:
    unsafe = generate_unsafe(model, unsafe_set, config)
    return {
        "pose": unsafe[unsafe_set.items_of([POSE])],
        "twin": unsafe[unsafe_set.items_of([UNTRAINED_TWIN])],
        "fists": generate_unsafe(model, fists_set, config),
        "neighbours": generate_images_cached(model, neighbour_refs, neighbour_poses, config),
        "validation": generate_images_cached(model, validation.benign_references, validation.benign_poses, config),
    }


rows = []


def measure(name: str, out: dict[str, torch.Tensor]) -> None:
    """Add a model's row and rewrite the table, so that a run cut short keeps every model it measured."""
    rows.append({
        "model": name,
        "ssim_star_pose": ssim(out["pose"], undefended["pose"]),
        "brightness_pose": float(out["pose"].mean()),
        "ssim_star_untrained_twin": ssim(out["twin"], undefended["twin"]),
        "ssim_pose_vs_fists": ssim(out["fists"], out["pose"]),
        "neighbours_ssim_vs_undefended": ssim(out["neighbours"], undefended["neighbours"]),
        "neighbours_ssim_vs_truth": ssim(out["neighbours"], neighbour_truth),
        "neighbours_brightness": float(out["neighbours"].mean()),
        "validation_benign_ssim_vs_undefended": ssim(out["validation"], undefended["validation"]),
    })
    order = ["undefended", FULL_4] + [name for name, _, _ in variants.values()]
    table = pd.concat([pd.DataFrame(rows), kept], ignore_index=True).sort_values(
        "model", key=lambda names: names.map(order.index), kind="stable").assign(
        profile=config.profile, benign_frames_removed=int((train_distance < NEAR).sum()),
        neighbours_max_body_distance=float(np.sort(held_out_distance)[NEIGHBOURS - 1]),
        pose_detect_resolution=config.data.pose_detect_resolution, hand_shape_pixels=hand_pixels,
        pose_image_pixels=lit_pixels, render_fingers=config.data.render_fingers,
        truth_ssim_pose_vs_fists=truth_ssim_pose_vs_fists)
    write_csv(table_path, table)
    print(table.round(4).to_string(index=False), flush=True)


variants = {
    "all-benign": ("Full-FT-1 on this pose", benign_pairs, settings),
    "far-benign": (f"Full-FT-1 on this pose, benign frames within {NEAR} removed", far_pairs, settings),
    "pose-guider": ("Full-FT-1 on this pose, PoseGuider fine-tuned too", benign_pairs,
                    settings.model_copy(update={"trained_parts": "denoising_unet_and_pose_guider"})),
    "strong-safety": (f"Full-FT-1 on this pose, safety weight {STRONG_SAFETY_WEIGHT:g}", benign_pairs,
                      settings.model_copy(update={"safety_weight": STRONG_SAFETY_WEIGHT})),
    "long-budget": (f"Full-FT-1 on this pose, {LONG_BUDGET_POSES}x the steps", benign_pairs,
                    settings.model_copy(update={"steps": settings.step_budget("full", LONG_BUDGET_POSES)})),
}
chosen = args.variants or list(VARIANTS)
kept = pd.DataFrame()
if set(chosen) != set(VARIANTS) and os.path.isfile(table_path):  # rows of the variants not rerun stay as they were
    previous = pd.read_csv(table_path)
    kept = previous[previous.model.isin([variants[key][0] for key in variants if key not in chosen])]

undefended = outputs(base)
measure("undefended", undefended)
# Notebook 03's Full-FT-4 takes about an hour to train here; compare with it only where it is cached.
full_4_dir = study.defense_dir("full", 4)
if (full_4_dir / DEFENSE_FILE).is_file():
    full_4 = load_or_defend(base, study.unsafe_pairs(trained_pool).subset(4), benign_pairs, settings, config.train,
                            strategy="full", seed=config.seed, out_dir=full_4_dir, progress=False).model
    measure(FULL_4, outputs(full_4))
else:
    print(f"no cached Full-FT-4 under {defense_cache}: its row is left out (run notebook 03 first to include it)")
for key in chosen:
    name, benign, variant_settings = variants[key]
    defended = load_or_defend(base, pairs, benign, variant_settings, config.train, strategy="full", seed=config.seed,
                              out_dir=defense_cache / "explorations" / f"gesture-{key}", progress=True).model
    measure(name, outputs(defended))
