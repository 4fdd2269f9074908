# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Data: unsafe poses, benign motions and synthetic people
#
# PoseGuard needs three kinds of data: a catalogue of **unsafe poses** the defense must suppress
# (the paper collects 50 in three categories: discriminatory gestures, NSFW body configurations and
# copyright-sensitive signature moves), **benign motions** whose quality must survive the defense
# (the paper uses UBC-Fashion catwalk videos), and **reference appearances** to animate.
# UBC-Fashion and the paper's pose set cannot be had here, so the study authors its own: abstract
# skeletons built from joint angles (`data_manifest/unsafe_poses.yaml`), a library of catwalk-like
# motions, and a renderer of clothed synthetic people whose frames are the ground truth.

# %% tags=["parameters"]
profile = "tiny"
seed = 0

# %%
import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display
from myst_nb import glue

from poseguard_lib.config import load_profile
from poseguard_lib.data.appearance import sample_appearances
from poseguard_lib.data.catalogue import load_unsafe_catalogue
from poseguard_lib.data.face import FaceParams, draw_face_contours, face_landmarks, render_face
from poseguard_lib.data.motions import HELD_OUT_MOTIONS, MIN_BENIGN_UNSAFE_MARGIN, benign_motions, pose_distance
from poseguard_lib.data.synthetic import build_split
from poseguard_lib.io import atomic_path, write_csv
from poseguard_lib.pose import condition_image
from poseguard_lib.reporting import frame_grid, profile_banner, save_figure

config = load_profile(profile, seed=seed)
out_dir = f"results/{profile}/data"
profile_banner(profile, seed)

# %% [markdown]
# ## The unsafe-pose catalogue
#
# Every entry has an id, a category, a neutral one-line description and a kinematic description
# (joint angles) from which its OpenPose-18 keypoints, and hand keypoints where a gesture needs
# fingers, are built. The skeletons below are drawn exactly as the generator sees them (DWPose style).

# %%
catalogue = load_unsafe_catalogue()
summary = pd.DataFrame([{"id": p.id, "category": p.category, "description": p.description,
                         "hands": bool(p.pose.hands)} for p in catalogue])
counts = summary.groupby("category").agg(poses=("id", "count"), with_hands=("hands", "sum")).reset_index()
write_csv(f"{out_dir}/catalogue_summary.csv", counts)
glue("n_unsafe", len(catalogue), display=False)
counts

# %%
categories = sorted(summary.category.unique())
per_row = 9
for category in categories:
    members = [p for p in catalogue if p.category == category]
    rows = [[condition_image(p.pose, 128, 128, 256) for p in members[i:i + per_row]]
            for i in range(0, len(members), per_row)]
    fig = frame_grid(rows, scale=1.0)
    fig.suptitle(f"{category} ({len(members)} poses)", fontsize=10)
    save_figure(fig, f"{out_dir}/catalogue_{category}.png")
    plt.show()

# %% [markdown]
# ## Benign motions and their distance from the unsafe set
#
# The benign library stands in for UBC-Fashion: catwalk walks toward the camera, turns, stops,
# hands on hips, arm swings and everyday standing poses. Some motions are held out of training to
# test generalisation to unseen motion. A defense should suppress unsafe poses, not benign ones, so
# the two sets are kept apart: below is, for every benign frame, its normalised distance to the
# nearest unsafe pose (mean keypoint distance after centring and normalising by the body's segment
# lengths; hands compared by shape).

# %%
motions = benign_motions(config.data.frames_per_video)
nearest = []
for name, sequence in motions.items():
    for t, frame in enumerate(sequence.frames):
        distances = [pose_distance(frame, p.pose) for p in catalogue]
        k = int(np.argmin(distances))
        nearest.append({"motion": name, "frame": t, "held_out": name in HELD_OUT_MOTIONS,
                        "distance": distances[k], "nearest_unsafe": catalogue[k].id})
nearest = pd.DataFrame(nearest)
write_csv(f"{out_dir}/benign_unsafe_distances.csv", nearest)
closest = nearest.loc[nearest.distance.idxmin()]
glue("min_distance", f"{closest.distance:.3f}", display=False)
glue("margin", f"{MIN_BENIGN_UNSAFE_MARGIN:.2f}", display=False)
assert closest.distance >= MIN_BENIGN_UNSAFE_MARGIN, "a benign frame is closer to an unsafe pose than the stated margin"

fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(nearest.distance, bins=30, color="tab:blue")
ax.axvline(MIN_BENIGN_UNSAFE_MARGIN, color="tab:red", linestyle="--", label=f"stated margin {MIN_BENIGN_UNSAFE_MARGIN}")
ax.set_xlabel("distance from a benign frame to the nearest unsafe pose")
ax.set_ylabel("benign frames")
ax.legend()
save_figure(fig, f"{out_dir}/benign_unsafe_distance_hist.png")
plt.show()
nearest.nsmallest(5, "distance")

# %% [markdown]
# The closest benign frame lies {glue:text}`min_distance` from an unsafe pose; the library is kept at
# least {glue:text}`margin` away by construction (a test enforces it), so a defense that also darkens
# benign frames cannot blame a near-duplicate pose.
#
# ## Synthetic people
#
# A video is an appearance (skin, hair, clothes and their patterns, shoes, background) performing a
# benign motion. The split is by appearance: training people, held-out people on training motions,
# and held-out people on held-out motions. These frames are the ground truth that generation quality
# is measured against; the pose images beside them are what the generator is conditioned on.

# %%
split = build_split(config.data, seed)
sizes = pd.DataFrame([{"split": k, "videos": len(v), "frames": sum(len(x) for x in v),
                       "appearances": len({x.appearance for x in v}), "motions": len({x.motion for x in v})}
                      for k, v in split.items()])
write_csv(f"{out_dir}/split_sizes.csv", sizes)
sizes

# %%
examples = [split["train"][0], split["test_appearance"][0], split["test_motion"][0]]
columns = np.linspace(0, config.data.frames_per_video - 1, 6).round().astype(int)
rows = []
labels = []
for name, video in zip(("train", "held-out person", "held-out motion"), examples):
    rows += [[video.frames[t] for t in columns], [video.pose_images[t] for t in columns]]
    labels += [f"{name}\n{video.motion}", "pose"]
fig = frame_grid(rows, row_labels=labels, col_labels=[f"t={t}" for t in columns])
save_figure(fig, f"{out_dir}/sample_videos.png")
plt.show()

# %%
video = split["train"][0]
gif = np.concatenate([video.frames, video.pose_images], axis=2)
with atomic_path(f"{out_dir}/sample_video.gif") as tmp:
    iio.imwrite(tmp, np.repeat(np.repeat(gif, 2, axis=1), 2, axis=2), extension=".gif", duration=120, loop=0)
display(Image(filename=f"{out_dir}/sample_video.gif"))

# %% [markdown]
# ## Synthetic faces for the facial-landmark experiment
#
# The facial-landmark experiment (AniPortrait-style generation) needs faces with 68 landmarks and
# expressions; the study renders them and draws the landmark contours as the conditioning image.

# %%
people = sample_appearances(4, seed, config.data.wall_saturation)
expressions = [FaceParams(), FaceParams(mouth_open=0.8), FaceParams(smile=0.9, yaw=25.0), FaceParams(brow_raise=1.0, roll=-15.0)]
faces, contours = [], []
for person, params in zip(people, expressions):
    landmarks = face_landmarks(params)
    faces.append(render_face(landmarks, person, 96, 96))
    contours.append(draw_face_contours(landmarks, 96, 96))
fig = frame_grid([faces, contours], row_labels=["face", "landmarks"],
                 col_labels=["neutral", "mouth open", "smile, yaw", "brows, roll"], scale=1.6)
save_figure(fig, f"{out_dir}/faces.png")
plt.show()
