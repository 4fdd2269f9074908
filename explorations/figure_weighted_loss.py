"""Does counting the person more in the training loss make the generator keep more of the appearance? (small profile)

The studio wall is about nine tenths of every frame, while the appearance gap lies in the person: the top's
fine patterns and the trousers' colour (``appearance_gap_parts.py``). If the wall made most of stage 1's
denoising loss, the generator would have little reason to learn the clothes. A base trained with
``train.figure_loss_boost`` B counts each diffusion-space position that touches the person (or its shadow)
1 + B times in stage 1's loss, everything else as the profile trains. This measures each base as notebook 02
does (SSIM, PSNR, pose gap, appearance gap, SSIM split between the flat wall and the textured figure) with
the appearance gap split by part of the person, on notebook 02's held-out frames and on three training
videos (people the generator has seen), beside copying the reference and the ground truth. For each base it
also measures stage 1's loss, the plain mean, on the person's positions and on the rest apart
(``loss_figure``, ``loss_wall``: 128 pairs of the frame set's people, conditions kept, noise and timesteps
drawn alike for every base). Bases that are not cached are trained first (about 75 minutes each on 2 cores);
sampling a base takes about 18 minutes for both frame sets. Each model's rows replace its earlier rows.

    .venv/bin/python explorations/figure_weighted_loss.py
    # the committed table also measures the 8,000-step base and the base without hue augmentation:
    .venv/bin/python explorations/figure_weighted_loss.py --stage1-steps 5000 8000 --without-hue-augment 5000
"""

import argparse
from pathlib import Path

import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.data.synthetic import ImagePairDataset
from poseguard_lib.io import replace_rows
from poseguard_lib.models.training import (ImageObjective, draw_batch, figure_positions, latent_shape,
                                          load_or_train_base_model, noise_offset_group, v_loss)
from poseguard_lib.study import (add_base_options, appearance_gap_parts, base_variants, beside_baselines,
                                 benign_eval_set, generate_benign, quality_row, texture_columns, training_eval_set)

TABLE = Path("results/small/base_model/figure_weighted_loss.csv")
TRAINING_VIDEOS = 3  # as reference_hue_path.py: people the generator has seen
LOSS_BATCHES, LOSS_BATCH_SIZE = 8, 16


@torch.no_grad()
def loss_by_region(model, videos, cfg) -> dict[str, float]:
    """Stage 1's loss (min-SNR-weighted v-MSE) on the positions touching the person and on the rest."""
    pairs = ImagePairDataset(videos, seed=cfg.seed, figure_mask=True)
    objective = ImageObjective(model, cfg.train)
    shape = latent_shape(model, pairs[0]["target"])
    generator = torch.Generator().manual_seed(cfg.seed)
    totals = {"loss_figure": 0.0, "loss_wall": 0.0}
    for _ in range(LOSS_BATCHES):
        batch = draw_batch(pairs, LOSS_BATCH_SIZE, shape, cfg.train, generator, noise_offset_group(model))
        figure = batch.pop("figure")
        batch["with_reference"] = torch.ones_like(batch["with_reference"])  # conditions kept
        prediction, latents = objective.denoise(**batch)
        person = figure_positions(figure, latents)
        for name, weights in (("loss_figure", person), ("loss_wall", 1 - person)):
            totals[name] += v_loss(model, prediction, latents, batch["noise"], batch["timesteps"],
                                   cfg.train.snr_gamma, weights).item() / LOSS_BATCHES
    return totals


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_base_options(parser, augmented=[5000], unaugmented=[], figure_boosts=[9.0])
args = parser.parse_args()

config = load_profile("small", seed=0)
configure_torch(config)
frames_sets = {"notebook 02's held-out frames": benign_eval_set(config),
               f"{TRAINING_VIDEOS} training videos": training_eval_set(config, TRAINING_VIDEOS)}

outputs = {frames_set: {} for frames_set in frames_sets}
losses = []
for name, base_config in base_variants(config, args).items():
    model, _ = load_or_train_base_model(base_config, progress=False)
    for frames_set, eval_set in frames_sets.items():
        outputs[frames_set][name] = generate_benign(model, eval_set, base_config)
        losses.append({"model": name, "frames_set": frames_set} | loss_by_region(model, eval_set.videos, config))

tables = []
for frames_set, eval_set in frames_sets.items():
    truth = torch.cat(eval_set.ground_truth)
    quality = pd.DataFrame([quality_row(name, frames, eval_set) | texture_columns(torch.cat(frames), truth)
                            for name, frames in beside_baselines(outputs[frames_set], eval_set).items()])
    parts = appearance_gap_parts(outputs[frames_set], eval_set, config)
    by_part = (parts[parts.part != "every part"]  # that one is the appearance gap itself
               .pivot(index="model", columns="part", values="gap").add_prefix("appearance_gap_").reset_index())
    tables.append(quality.merge(by_part, on="model").assign(frames_set=frames_set))
# the copy and ceiling rows depend on the frames only; every run rewrites them alike
measured = pd.concat(tables).merge(pd.DataFrame(losses), on=["model", "frames_set"], how="left")
table = replace_rows(TABLE, measured.assign(profile=config.profile), key="model",
                     sort_by=["frames_set", "model"])
print(table.set_index(["frames_set", "model"]).drop(columns=["frames", "profile"]).round(3).T.to_string(), flush=True)
