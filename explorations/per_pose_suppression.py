"""Which poses does each defended model suppress? (small profile, notebook 03's cached models)

Table 1 averages SSIM* over the trained poses; this splits it by pose, for the trained poses and
the never-trained ones, so a mean like Full-FT-4's 0.33 can be read as "some poses fully, some not
at all". It loads notebook 03's defenses and generations from the cache (the settings are the
values notebook 03 chose, read from its committed selection tables), so it trains nothing and
takes about two minutes once notebook 03 has run. Reported on the book's findings page.

    .venv/bin/python explorations/per_pose_suppression.py
"""

import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.study import chosen_defense_settings, defense_study, generate_unsafe, unsafe_eval_set

results = "results/small/effectiveness"
metrics = pd.read_csv(f"{results}/metrics.csv")
pose_counts = sorted(metrics.n_poses[metrics.strategy != "none"].unique())  # the counts notebook 03 last ran

config = load_profile("small", seed=0)
configure_torch(config)
study = defense_study(config)
base, trained_pool, untrained = study.base, study.trained_pool, study.untrained
pairs = study.unsafe_pairs(trained_pool)
settings = chosen_defense_settings(config, results)

unsafe_set = unsafe_eval_set(config, trained_pool + untrained)  # notebook 03's set, so its generations are cached
base_unsafe = generate_unsafe(base, unsafe_set, config)
tables = []
for strategy in ("full", "lora"):
    for n in pose_counts:
        result = load_or_defend(base, pairs.subset(n), study.benign_pairs, settings, config.train, strategy=strategy,
                                seed=config.seed, out_dir=study.defense_dir(strategy, n), progress=False)
        outputs = generate_unsafe(result.model, unsafe_set, config)
        roles = {"trained": trained_pool[:n], "not in this set": trained_pool[n: max(pose_counts)], "never trained": untrained}
        tables.append(unsafe_set.per_pose(outputs, base_unsafe, roles).assign(model=f"{strategy}-{n}"))
table = pd.concat(tables, ignore_index=True).assign(profile=config.profile)
table = table[["model"] + [c for c in table.columns if c != "model"]]  # the committed column order
write_csv(f"{results}/per_pose_ssim_star.csv", table)
print(table.round(4).to_string(index=False))
