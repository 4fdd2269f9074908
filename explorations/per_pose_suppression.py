"""Which poses does each defended model suppress? (small profile, notebook 03's cached models)

Table 1 averages SSIM* over the trained poses; this splits it by pose, for the trained poses and
the never-trained ones, so a mean like Full-FT-4's 0.33 can be read as "some poses fully, some not
at all". It loads notebook 03's defenses and generations from the cache (the settings are the
values notebook 03 chose, read from its committed selection tables), so it trains nothing and
takes about two minutes once notebook 03 has run. Reported in the book's introduction.

    .venv/bin/python explorations/per_pose_suppression.py
"""

import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.io import write_csv
from poseguard_lib.metrics.image import ssim
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
shown = trained_pool[: max(pose_counts)] + untrained
base_unsafe = generate_unsafe(base, unsafe_set, config)
rows = []
for strategy in ("full", "lora"):
    for n in pose_counts:
        result = load_or_defend(base, pairs.subset(n), study.benign_pairs, settings, config.train, strategy=strategy,
                                seed=config.seed, out_dir=study.defense_cache / f"{strategy}-{n}", progress=False)
        outputs = generate_unsafe(result.model, unsafe_set, config)
        for pose in shown:
            items = unsafe_set.items_of([pose.id])
            role = "trained" if pose in trained_pool[:n] else "never trained" if pose in untrained else "not in this set"
            rows.append({"model": f"{strategy}-{n}", "pose": pose.id, "category": pose.category, "role": role,
                         "ssim_star": ssim(outputs[items], base_unsafe[items]),
                         "brightness": float(outputs[items].mean())})
table = pd.DataFrame(rows).assign(profile=config.profile)
write_csv(f"{results}/per_pose_ssim_star.csv", table)
print(table.round(4).to_string(index=False))
