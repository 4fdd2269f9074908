"""Where does full fine-tuning's benign drift come from? (small profile, validation pose only)

Trains, or loads from the defense cache, Eq. 1 variants against the validation pose (300 steps) and
compares their benign outputs of 32 training frames with the undefended model's and with the ground
truth (image pipeline): a benign-only control (λ = 1e-9), λ = 1 at a constant or cosine-annealed rate,
and smaller λ. Reported on the book's findings page; not part of `make reproduce` (about 13 minutes
per variant on two CPU cores, seconds once cached).

    .venv/bin/python explorations/full_ft_benign_drift.py
"""

import pandas as pd

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.defense import load_or_defend
from poseguard_lib.metrics.image import ssim
from poseguard_lib.study import defense_study, setting_cache_name, validation_outputs, validation_set

VARIANTS = {  # name → (cache folder under the validation cache, changes to the profile's defense settings)
    "benign-only control (λ 1e-9)": ("full-benign-only-lr0.0001", {"safety_weight": 1e-9}),
    # the rows notebook 03's selection also trains share its cache folders
    "λ 1, lr 1e-4": (setting_cache_name("full", "learning_rate", 1e-4), {"safety_weight": 1.0}),
    "λ 1, lr 1e-4 cosine": ("full-cosine-lr0.0001", {"safety_weight": 1.0, "lr_schedule": "cosine"}),
    "λ 1, lr 3e-4 cosine": ("full-cosine-lr0.0003", {"safety_weight": 1.0, "learning_rate": 3e-4, "lr_schedule": "cosine"}),
    "λ 0.3, lr 1e-4": (setting_cache_name("full", "safety_weight", 0.3), {"safety_weight": 0.3}),
    "λ 0.1, lr 1e-4": (setting_cache_name("full", "safety_weight", 0.1), {"safety_weight": 0.1}),
}

config = load_profile("small", seed=0)
configure_torch(config)
study = defense_study(config)
base, validation_cache = study.base, study.defense_cache / "validation"
validation = validation_set(config, study.validation_poses, config.evaluation.validation_benign)
pairs, benign_pairs = study.unsafe_pairs(study.validation_poses), study.benign_pairs


def measure(name, model, base_benign, base_unsafe):
    unsafe, benign = validation_outputs(model, validation, config)
    return {"variant": name, "benign_ssim_vs_undefended": ssim(benign, base_benign),
            "benign_ssim_vs_truth": ssim(benign, validation.benign_truth), "ssim_star": ssim(unsafe, base_unsafe),
            "benign_brightness": float(benign.mean())}


base_unsafe, base_benign = validation_outputs(base, validation, config)
rows = [measure("undefended", base, base_benign, base_unsafe)]
for name, (folder, changes) in VARIANTS.items():
    settings = config.defense.model_copy(update=changes)
    result = load_or_defend(base, pairs, benign_pairs, settings, config.train, strategy="full", seed=config.seed,
                            out_dir=validation_cache / folder, progress=True)
    rows.append(measure(name, result.model, base_benign, base_unsafe))
print(pd.DataFrame(rows).assign(profile=config.profile).round(4).to_string(index=False))
