"""What the appearance gap is made of, and which parts of a person the generator carries (small profile).

Notebook 02's appearance gap compares each output with its truth and with the same pose worn by another
held-out person; the generator reaches 0.033 of a 0.173 ceiling. Here that other person is split into
parts (studio, skin, hair, top, bottom, shoes, build: ``APPEARANCE_PARTS``), and the truth is rendered
again with one part at a time taken from them. The ground truth's own gap for each part says how much
of the ceiling the part makes; the generator's says how much of the part it keeps. Each part is then
split field by field (the top's colours, pattern and sleeves apart). Notebook 02's 16 held-out videos
show only three of the eight held-out people, so the same is measured on two videos of each of the
eight, for the bases passed on the command line (a base left out keeps its earlier rows). Nothing is trained
for the measurement; bases that are not cached are trained first (about 75 minutes each for 5,000 steps
on 2 cores), and their outputs come from the generation cache that notebook 02 fills (when they are not
there, about 15 minutes per base for each 256-frame set).

    .venv/bin/python explorations/appearance_gap_parts.py
"""

import argparse
from pathlib import Path

import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.data.appearance import APPEARANCE_PARTS
from poseguard_lib.io import replace_rows
from poseguard_lib.models.training import load_or_train_base_model
from poseguard_lib.study import add_base_options, appearance_gap_parts, base_frame_sets, base_variants, generate_benign

TABLE = Path("results/small/base_model/appearance_gap_parts.csv")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
add_base_options(parser, augmented=[5000, 8000], unaugmented=[5000])
args = parser.parse_args()

config = load_profile("small", seed=0)
configure_torch(config)
frames_sets = base_frame_sets(config, every_person=True)

outputs = {frames_set: {} for frames_set in frames_sets}
for name, base_config in base_variants(config, args).items():
    model, _ = load_or_train_base_model(base_config, progress=False)
    for frames_set, eval_set in frames_sets.items():
        outputs[frames_set][name] = generate_benign(model, eval_set, base_config)

# by part, then field by field: which of a part's fields make its share
splits = {"part": APPEARANCE_PARTS,
          "field": {name: (name,) for part_fields in APPEARANCE_PARTS.values() for name in part_fields}}
parts = pd.concat([appearance_gap_parts(outputs[frames_set], eval_set, config, fields).assign(
                       split=split, frames_set=frames_set)
                   for frames_set, eval_set in frames_sets.items() for split, fields in splits.items()])
# the copy and ceiling rows depend on the frames only; every run rewrites them alike
table = replace_rows(TABLE, parts.assign(profile=config.profile), key="model", sort_by=["frames_set", "model"])
print(table.pivot_table(index=["split", "part"], columns=["frames_set", "model"], values="gap", sort=False)
      .round(3).to_string(), flush=True)
