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
# # 2. The undefended generator
#
# PoseGuard defends Moore-AnimateAnyone: a ReferenceNet that encodes the reference image into
# the denoiser's self-attention, a PoseGuider that adds pose features after the denoiser's first
# convolution, a CLIP image embedding as cross-attention context, and motion modules for video.
# Pretrained weights cannot be had here, so on the `tiny` and `small` profiles the study trains the
# same architecture (stock diffusers modules, scaled down) on its synthetic people: stage 1 on
# (reference, pose, frame) triples, stage 2 on clips with only the motion modules learning
# (Moore's recipe: v-prediction, min-SNR γ = 5, noise offset, 10% condition dropout).
#
# A defense is only meaningful on a model that works, so this chapter checks that the base model
# follows the pose and keeps the reference's appearance, against the trivial baseline of copying
# the reference and the ceiling of the ground truth itself.

# %% tags=["parameters"]
profile = "tiny"
seed = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from myst_nb import glue

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.io import write_csv
from poseguard_lib.models.training import load_or_train_base_model
from poseguard_lib.reporting import frame_grid, profile_banner, save_figure, to_uint8
from poseguard_lib.study import base_quality, benign_eval_set, generate_benign, generator_colour_transfer

config = load_profile(profile, seed=seed)
configure_torch(config)
out_dir = f"results/{profile}/base_model"
profile_banner(profile, seed)

# %% [markdown]
# ## Training (or the cached model)
#
# The trained model is cached under `~/.cache/poseguard/models/` (or `$POSEGUARD_CACHE/models/`) by
# the hash of everything that shapes its weights (data, model, training settings, seed); an
# interrupted training resumes from its last checkpoint.

# %%
model, history = load_or_train_base_model(config, progress=False)
parameters = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("reference_unet", "denoising_unet", "pose_guider", "image_encoder")}
if model.motion_adapter is not None:
    parameters["motion_modules"] = sum(p.numel() for p in model.motion_adapter.parameters())
sizes = pd.DataFrame({"module": list(parameters), "parameters": list(parameters.values())})
write_csv(f"{out_dir}/parameters.csv", sizes)
glue("total_parameters", f"{sum(parameters.values()) / 1e6:.2f}M", display=False)
sizes

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, (stage, part) in zip(axes, history.groupby("stage")):
    ax.plot(part.step, part.loss, alpha=0.3, color="tab:blue")
    ax.plot(part.step, part.loss.rolling(max(1, len(part) // 20), min_periods=1).mean(), color="tab:blue")
    ax.set_title(f"stage {stage}: {'image (denoiser, ReferenceNet, PoseGuider)' if stage == 1 else 'video (motion modules)'}", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("min-SNR weighted v-loss")
save_figure(fig, f"{out_dir}/loss_curves.png")
plt.show()
write_csv(f"{out_dir}/loss_history.csv", history)

# %% [markdown]
# ## Benign quality on held-out people and held-out motions
#
# Each evaluation video pairs a held-out person with a training motion or a held-out motion; the
# reference is a frame of the same person from another of their videos. Two checks guard against
# a model that merely reproduces the reference or an average person:
#
# - `pose_gap` = SSIM(output for pose *i*, truth *i*) − SSIM(output for pose *i*, truth of another
#   pose *j* of the same video): positive only if the output follows the pose;
# - `appearance_gap` = SSIM(output, truth) − SSIM(output, the same pose worn by another held-out
#   person): positive only if the output keeps the reference's appearance.

# %%
eval_set = benign_eval_set(config)
generated = generate_benign(model, eval_set, config)
quality = base_quality(generated, eval_set, name="undefended generator").assign(profile=profile)
write_csv(f"{out_dir}/metrics.csv", quality)
model_row, copy_row = quality.iloc[0], quality.iloc[1]
glue("ssim", f"{model_row.ssim:.3f}", display=False)
glue("copy_ssim", f"{copy_row.ssim:.3f}", display=False)
glue("pose_gap", f"{model_row.pose_gap:.3f}", display=False)
glue("appearance_gap", f"{model_row.appearance_gap:.3f}", display=False)
quality.round(4)

# %% [markdown]
# On this profile the generator reaches SSIM {glue:text}`ssim` against the ground truth, where
# copying the reference reaches {glue:text}`copy_ssim`; its pose gap is {glue:text}`pose_gap` and its
# appearance gap {glue:text}`appearance_gap`. On flat-background synthetic frames the background
# dominates SSIM, which is why copying the reference already scores high and why the two gaps,
# not the absolute SSIM, show whether the model does its job.

# %% [markdown]
# ### Does the reference's colour reach the output?
#
# The appearance gap stays small if the generator reads only the reference's brightness. Each
# held-out reference is given again with its hue turned by 120° and 240° (brightness kept), for the
# same first pose and the same noise: colour transfer is the shift of the output's mean colour
# divided by the shift of the reference's (1: the colours follow the reference; 0: they ignore it).

# %%
transfer = generator_colour_transfer(model, eval_set, config)
write_csv(f"{out_dir}/colour_transfer.csv",
          pd.DataFrame([{"model": "undefended generator", "colour_transfer": transfer, "profile": profile}]))
print(f"colour transfer ({profile}): {transfer:.3f}")

# %%
shown = range(min(3, len(eval_set.videos)))
frames = torch.linspace(0, eval_set.poses[0].shape[0] - 1, 4).round().long()
rows, labels = [], []
for i in shown:
    video = eval_set.videos[i]
    rows += [
        [to_uint8(eval_set.references[i : i + 1])[0]] + list(to_uint8(eval_set.poses[i][frames])),
        [to_uint8(eval_set.references[i : i + 1])[0]] + list(to_uint8(generated[i][frames])),
        [to_uint8(eval_set.references[i : i + 1])[0]] + list(to_uint8(eval_set.ground_truth[i][frames])),
    ]
    labels += [f"{video.motion}\npose", "generated", "ground truth"]
fig = frame_grid(rows, row_labels=labels, col_labels=["reference"] + [f"t={int(t)}" for t in frames])
save_figure(fig, f"{out_dir}/samples.png")
plt.show()
