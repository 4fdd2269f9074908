"""Is LoRA selective anywhere along its training path? (small profile, validation pose only)

Notebook 03 chooses Eq. 2's rate at one budget, 300 steps against one pose: there 1e-4 leaves the
validation pose alone (SSIM* 0.99) and 3e-4 blacks out benign outputs as well (SSIM 0.03 to the
undefended model's). At a constant rate a shorter run is the start of a longer one, so running the
same selection (:func:`poseguard_lib.study.select_setting`, the same validation pose, 32 benign
training frames and rule) at other budgets traces each rate's path: does the pose go dark before
the benign outputs do, at some step count the fixed budget skips, or do both fall together? A point
with SSIM* ≤ 0.25 and benign SSIM ≥ 0.90 (``chosen`` by the rule within its budget) would be one
Eq. 2 reaches here. The 300-step rows at 1e-4 and 3e-4 are notebook 03's own selection runs. Writes
``results/small/effectiveness/lora_training_path.csv`` after each budget. About 40 minutes on two CPU
cores (training 0.3 s per step, sampling the validation set about 1.5 minutes per point), seconds
once cached. Reported on the book's findings page.

    .venv/bin/python explorations/lora_training_path.py
"""

import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.io import write_csv
from poseguard_lib.study import defense_study, select_setting, validation_set

RESULTS = "results/small/effectiveness"
# step budget → the rates traced up to it; 300 is notebook 03's one-pose budget
PATHS = {
    25: (1e-3, 3e-4),
    50: (1e-3, 3e-4, 2e-4),
    100: (1e-3, 3e-4, 2e-4),
    150: (3e-4, 2e-4),
    200: (3e-4, 2e-4),
    250: (3e-4, 2e-4),
    300: (3e-4, 2e-4, 1e-4),
    600: (1e-4,),
}

config = load_profile("small", seed=0)
configure_torch(config)
study = defense_study(config)
validation = validation_set(config, study.validation_poses, config.evaluation.validation_benign)
pairs = study.unsafe_pairs(study.validation_poses)
validation_cache = study.defense_cache / "validation"

tables = []
for steps, rates in PATHS.items():
    # the profile's defense settings, as when notebook 03 chose LoRA's rate (before λ, which Eq. 2 does not use)
    budget = config.with_changes("defense", steps=steps)
    # notebook 03's budget shares notebook 03's selection cache; every other budget has its own folder
    cache = validation_cache if steps == config.defense.steps else validation_cache / f"steps-{steps}"
    tables.append(select_setting(study.base, pairs, None, budget, "lora", "learning_rate", rates, validation,
                                 cache_dir=cache, seed=config.seed))
    table = pd.concat(tables, ignore_index=True).sort_values(["learning_rate", "steps"], ignore_index=True)
    write_csv(f"{RESULTS}/lora_training_path.csv", table)
    print(table.round(4).to_string(index=False), flush=True)
