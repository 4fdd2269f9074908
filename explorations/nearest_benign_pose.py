"""How close is each unsafe pose to a benign pose the generator was trained on? (small profile)

Eq. 1 pulls benign outputs towards the truth while it pushes unsafe ones to black, so an unsafe
pose whose body matches a benign training pose can only be told apart by what differs: for a
rude gesture, the fingers. For every unsafe pose of notebook 03 this finds the nearest benign
training pose by body keypoints (``body_distance``: median limb lengths, position and size
removed) and the median distance to all of them (is the body a common one?), and at the nearest
pose the larger of the two hands' shape distances (``hand_shape_distance``: palm lengths). Every
second training frame is searched (neighbouring frames are nearly the same pose). How much of the
generator's pose image the hand shape is: the pixels of the condition image (drawn at the
detection size and shrunk to the frame, as in training) that change by more than ``VISIBLE`` when
every hand is drawn as a fist instead, beside the pixels the whole pose lights up. Full-FT's
per-pose SSIM* at the largest pose count is joined from ``per_pose_ssim_star.csv``, so run
``per_pose_suppression.py`` first; its rank correlation with both distances over the trained poses is
printed. Trains and generates nothing; about three minutes. Reported on the book's findings page.

    .venv/bin/python explorations/nearest_benign_pose.py
"""

import numpy as np
import pandas as pd

from poseguard_lib.config import load_profile
from poseguard_lib.data.catalogue import hand_shape_pixels, load_unsafe_catalogue
from poseguard_lib.data.motions import body_distance, hand_shape_distance
from poseguard_lib.data.synthetic import build_split
from poseguard_lib.io import write_csv
from poseguard_lib.study import pose_roles, unsafe_order

results = "results/small/effectiveness"
VISIBLE = 0.1  # change of a pixel's largest channel, in [0, 1]
per_pose = pd.read_csv(f"{results}/per_pose_ssim_star.csv")
largest_full = per_pose.model[per_pose.model.str.startswith("full-")].str.removeprefix("full-").astype(int).max()
full = per_pose[per_pose.model == f"full-{largest_full}"].set_index("pose")

config = load_profile("small", seed=0)
aspect = config.data.width / config.data.height
trained_pool, validation_poses, untrained = pose_roles(unsafe_order(load_unsafe_catalogue(), config.seed), config)
benign = [video.poses[i] for video in build_split(config.data, config.seed)["train"] for i in range(0, len(video), 2)]
rows = []
for pose, role in ([(p, "trained") for p in trained_pool[:largest_full]] + [(p, "validation") for p in validation_poses]
                   + [(p, "never trained") for p in untrained]):
    distances = np.array([body_distance(pose.pose, other, aspect) for other in benign])
    nearest = benign[int(distances.argmin())]
    hand_pixels, lit_pixels = hand_shape_pixels(pose, config.data.height, config.data.width,
                                                config.data.pose_detect_resolution, VISIBLE)
    rows.append({
        "pose": pose.id, "category": pose.category, "role": role,
        "nearest_benign_body_distance": float(distances.min()),
        "median_benign_body_distance": float(np.median(distances)),
        "hand_shape_distance_at_nearest": max((hand_shape_distance(a, b, aspect)  # none: a pose drawn without hands
                                               for a, b in zip(pose.pose.hands, nearest.hands)), default=np.nan),
        f"full_ft_{largest_full}_ssim_star": full.ssim_star.get(pose.id, np.nan),
        "hand_shape_pixels": hand_pixels, "pose_image_pixels": lit_pixels,
    })
table = pd.DataFrame(rows).assign(profile=config.profile)
write_csv(f"{results}/nearest_benign_pose.csv", table)
print(table.round(3).to_string(index=False))
trained = table[table.role == "trained"]
distance_columns = ["nearest_benign_body_distance", "median_benign_body_distance"]
rank_correlation = trained[distance_columns].corrwith(trained[f"full_ft_{largest_full}_ssim_star"], method="spearman")
print(f"Spearman rank correlation with Full-FT-{largest_full}'s SSIM* over its {len(trained)} trained poses:")
print(rank_correlation.round(3).to_string())
