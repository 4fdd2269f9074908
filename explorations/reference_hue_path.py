"""Where does the reference's hue get lost on its way to the denoiser, and is hue augmentation why? (small profile)

The trained base passes almost none of a turn of the reference's hue to its outputs (colour transfer
0.010, notebook 02). This follows the turn through the reference path: for each of notebook 02's
held-out references, turned by 120° and 240° (brightness kept), how far the diffusion-space input, the
ReferenceNet's first convolution, every feature map the ReferenceNet hands to the denoiser's attention
(the reference bank) and the image embedding move, relative to their size. Beside the turns, the
reference of another held-out person, a change the path should carry. Rows for the ReferenceNet as
initialised (seed 0, untrained) and for each trained base.

The bases: ``--stage1-steps`` budgets trained as the profile trains (hue augmentation on) and
``--without-hue-augment`` budgets trained with every training pair in its own colours. Each trained
base is also measured as notebook 02 measures the generator (the profile's sampling), on the held-out
frames and on three training videos (a model that memorised its people's colours keeps them apart
there only), with its colour transfer on the same references. Bases that are not cached are trained
first (about 75 minutes each for 5,000 steps on 2 cores); sampling takes about 15 minutes per base. Each
model's rows replace its earlier rows in the two tables, so bases can be added one run at a time.

    .venv/bin/python explorations/reference_hue_path.py
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.data.synthetic import rotate_hue, to_tensor
from poseguard_lib.io import replace_rows
from poseguard_lib.models.components import build_model
from poseguard_lib.models.training import load_or_train_base_model, training_key
from poseguard_lib.reporting import to_uint8
from poseguard_lib.study import (add_base_options, base_variants, benign_eval_set, generate_benign,
                                 generator_colour_transfer, quality_row, training_eval_set)

PATH_TABLE = Path("results/small/base_model/reference_hue_path.csv")
BASES_TABLE = Path("results/small/base_model/reference_hue_bases.csv")
TRAINING_VIDEOS = 3

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_base_options(parser, augmented=[8000], unaugmented=[5000])
args = parser.parse_args()

config = load_profile("small", seed=0)
configure_torch(config)
held_out = benign_eval_set(config)
references = held_out.references
people = [video.appearance for video in held_out.videos]
other_person = [next(j for j in np.roll(np.arange(len(people)), -i) if people[j] != people[i]) for i in range(len(people))]
changes = {f"hue turned {round(np.degrees(angle))}°": to_tensor(rotate_hue(to_uint8(references), angle))
           for angle in (2 * np.pi / 3, 4 * np.pi / 3)} | {"another person's reference": references[other_person]}


@torch.no_grad()
def reference_path(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the denoiser receives from ``images``, stage by stage: (N, ...) tensors keyed by stage."""
    captured = {}
    hook = model.reference_unet.conv_in.register_forward_hook(lambda _m, _i, out: captured.update(conv_in=out))
    try:
        conditions = model.reference_conditions(images)
    finally:
        hook.remove()
    bank = {name.removesuffix(".attn1.processor"): f for name, f in conditions.bank.features.items()}
    return {"input": model.encode(images), **captured, **bank, "image embedding": conditions.image_embeds}


def relative_shift(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean over references of ‖after − before‖ / ‖before‖."""
    before, after = before.flatten(1).float(), after.flatten(1).float()
    return float(((after - before).norm(dim=1) / before.norm(dim=1)).mean())


def path_rows(name: str, model) -> list[dict]:
    """How far each stage of ``model``'s reference path moves under each change of the references."""
    model.eval()
    original = reference_path(model, references)
    rows = []
    for change, images in changes.items():
        changed = reference_path(model, images)
        rows += [{"model": name, "change": change, "stage": stage,
                  "relative_shift": relative_shift(original[stage], changed[stage])} for stage in original]
    return rows


def base_rows(name: str, model, history: pd.DataFrame, base_config) -> list[dict]:
    """Notebook 02's measurements of one base on the held-out frames and on training videos, beside its
    training loss (mean of the last 250 stage-1 steps, as `training_length.py` reports it)."""
    training = {"hue_augment": base_config.train.hue_augment, "stage1_steps": base_config.train.stage1_steps,
                "final_stage1_loss": history[history.stage == 1].loss.tail(250).mean(),
                "training_key": training_key(base_config)}
    return [{**quality_row(name, generate_benign(model, eval_set, base_config), eval_set), "frames_set": frames,
             "colour_transfer": generator_colour_transfer(model, eval_set, base_config), **training}
            for frames, eval_set in (("notebook 02's held-out frames", held_out),
                                     (f"{TRAINING_VIDEOS} training videos",
                                      training_eval_set(base_config, TRAINING_VIDEOS)))]


def record(name: str, model, history: pd.DataFrame | None = None, base_config=None) -> None:
    """Write ``model``'s rows into both tables (path only for the untrained one), replacing earlier ones."""
    paths = pd.DataFrame(path_rows(name, model)).assign(references=len(references), profile=config.profile)
    table = replace_rows(PATH_TABLE, paths, key="model", sort_by=["model"])
    print(table.pivot_table(index="stage", columns=["model", "change"], values="relative_shift", sort=False)
          .round(3).to_string(), flush=True)
    if base_config is not None:
        bases = pd.DataFrame(base_rows(name, model, history, base_config)).assign(profile=config.profile)
        print(replace_rows(BASES_TABLE, bases, key="model", sort_by=["model"]).round(4).to_string(index=False),
              flush=True)


record("untrained initialisation", build_model(config, seed=config.seed))
for name, base_config in base_variants(config, args).items():
    record(name, *load_or_train_base_model(base_config, progress=False), base_config)
