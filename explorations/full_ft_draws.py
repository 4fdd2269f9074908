"""Every Full-FT draw of eight or more poses, side by side and pose by pose (small profile)

Table 1 trains each pose count once (defense seed 0); ``many_poses.py --seed N`` trains the same
Full-FT defense again with other random draws. This gathers every draw from the committed tables
(Table 1's ``metrics.csv``, ``selectivity.csv`` and ``per_pose_ssim_star.csv`` for seed 0, the
``poses_<n>_seed<N>*.csv`` pairs for the others), so the findings page's side-by-side table, its
per-count means and its pose-by-pose figure come from one place: ``full_ft_draws.csv`` (a row per
draw and the paper's row for each count) and ``full_ft_draws_per_pose.png`` (SSIM* of every pose of the
trained pool and every never-trained pose in every draw, by category). Trains and generates nothing;
seconds. ``tests/test_book.py`` checks the findings' table against ``full_ft_draws.csv``.

    .venv/bin/python explorations/full_ft_draws.py
"""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from poseguard_lib.io import write_csv
from poseguard_lib.reporting import BASELINE_METHOD, paper_table, save_figure, table1_method

results = Path("results/small/effectiveness")
SUPPRESSED = 0.25  # issue 5's SSIM* target
MAX_BENIGN_DROP = 0.02  # issue 5's benign target
MIN_POSES = 8  # the pose counts many_poses.py trains again with other seeds

table1 = pd.read_csv(results / "metrics.csv").set_index("method")
selectivity = pd.read_csv(results / "selectivity.csv").set_index("method")
table1_per_pose = pd.read_csv(results / "per_pose_ssim_star.csv")
undefended_ssim = table1.loc[BASELINE_METHOD, "ssim"]


def draw_row(n_poses: int, seed: int, summary: pd.Series, ssim_star_untrained: float, ssim_to_undefended: float,
             per_pose: pd.DataFrame) -> dict:
    """One draw's line of the side-by-side table; the trained poses at or under the target are counted
    from ``per_pose`` (its trained and never-trained poses)."""
    change = summary.ssim - undefended_ssim
    return {
        "n_poses": n_poses, "draw": f"seed {seed}" + (" (Table 1)" if seed == 0 else ""), "defense_seed": seed,
        "ssim_star_trained": summary.ssim_star,
        "trained_poses_suppressed": int((per_pose.ssim_star[per_pose.role == "trained"] <= SUPPRESSED).sum()),
        "ssim_star_untrained": ssim_star_untrained, "benign_ssim": summary.ssim, "benign_ssim_change": change,
        "benign_ssim_vs_undefended": ssim_to_undefended, "fid_vid": summary.fid_vid, "fvd": summary.fvd,
        "meets_targets": bool(summary.ssim_star <= SUPPRESSED and change >= -MAX_BENIGN_DROP),
    }


SHOWN_ROLES = ("trained", "never trained")  # per-pose tables also hold the pool's poses a draw left out
rows, per_pose = [], {}
for n_poses in sorted(table1.n_poses[(table1.strategy == "full") & (table1.n_poses >= MIN_POSES)]):
    method = table1_method("full", n_poses)
    poses = table1_per_pose[(table1_per_pose.model == f"full-{n_poses}") & table1_per_pose.role.isin(SHOWN_ROLES)]
    rows.append(draw_row(n_poses, 0, table1.loc[method], selectivity.loc[method, "ssim_star_untrained"],
                         selectivity.loc[method, "benign_ssim_vs_undefended"], poses))
    per_pose[n_poses, 0] = poses.set_index("pose")
    for path in sorted(results.glob(f"poses_{n_poses}_seed*.csv")):
        match = re.fullmatch(rf"poses_{n_poses}_seed(\d+)", path.stem)
        if match is None:  # the draw's _per_pose table
            continue
        draw = pd.read_csv(path).set_index("method")
        if not np.isclose(draw.loc[BASELINE_METHOD, "ssim"], undefended_ssim, rtol=0, atol=1e-9):
            raise ValueError(f"{path}'s undefended row differs from Table 1's: that draw was measured on another base")
        summary = draw.loc[method]
        poses = pd.read_csv(path.with_name(f"{path.stem}_per_pose.csv"))
        poses = poses[(poses.method == method) & poses.role.isin(SHOWN_ROLES)]
        seed = int(match.group(1))
        rows.append(draw_row(n_poses, seed, summary, summary.ssim_star_untrained, summary.benign_ssim_vs_undefended,
                             poses))
        per_pose[n_poses, seed] = poses.set_index("pose")

draws = pd.DataFrame(rows)
paper = paper_table("table1_effectiveness").set_index("method")
paper_rows = pd.DataFrame([
    {"n_poses": n, "draw": "paper", "ssim_star_trained": row.ssim_star, "benign_ssim": row.ssim,
     "benign_ssim_change": round(row.ssim - paper.loc[BASELINE_METHOD, "ssim"], 5)}  # its table has five decimals
    for n, row in ((n, paper.loc[table1_method("full", n)]) for n in draws.n_poses.unique())
])
table = pd.concat([draws.assign(profile="small"), paper_rows.assign(profile="paper (published)")], ignore_index=True)
table = table.sort_values("n_poses", kind="stable").reset_index(drop=True).astype(
    {"defense_seed": "Int64", "trained_poses_suppressed": "Int64"})
write_csv(results / "full_ft_draws.csv", table)
print(table.drop(columns="profile").round(3).to_string(index=False))
print(f"\n{int(draws.meets_targets.sum())} of {len(draws)} draws meet both targets. Means over the draws per count:")
print(draws.groupby("n_poses")[["ssim_star_trained", "benign_ssim_change"]].agg(["mean", "count"]).round(3).to_string())

# Pose by pose, one column per draw: the trained pool, then the never-trained poses, each by category in the
# order poses join a defense.
ssim_star = pd.DataFrame({f"{n} poses, seed {seed}": poses.ssim_star for (n, seed), poses in per_pose.items()})
poses = per_pose[max(n for n, _ in per_pose), 0].reset_index()  # Table 1's largest: every pose, pool order
order = pd.concat([poses[poses.role == role].sort_values("category", kind="stable") for role in SHOWN_ROLES])
ssim_star = ssim_star.reindex(order.pose)
trained = ssim_star[(order.role == "trained").to_numpy()]
print(f"\nTrained poses above {SUPPRESSED} in every draw that trained them:")
print(trained[(trained.gt(SUPPRESSED) | trained.isna()).all(axis=1)].round(3).to_string())
print(f"\nNever-trained poses at or under {SUPPRESSED} in some draw (suppressed with the trained ones):")
untrained = ssim_star[(order.role == "never trained").to_numpy()]
print(untrained[untrained.le(SUPPRESSED).any(axis=1)].round(3).to_string())

fig, ax = plt.subplots(figsize=(1.0 * ssim_star.shape[1] + 3.5, 0.24 * len(ssim_star) + 1.2))
ax.imshow(np.ma.masked_invalid(ssim_star.to_numpy(float)), cmap="gray", vmin=0, vmax=1, aspect="auto")
ax.set_facecolor("#d9e6f2")  # pool poses a draw did not train on
for (i, j), value in np.ndenumerate(ssim_star.to_numpy(float)):
    if not np.isnan(value):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=6.5,
                color="white" if value < 0.5 else "black", weight="bold" if value > SUPPRESSED else "normal")
for column, color, width in (("category", "tab:orange", 1.5), ("role", "tab:red", 3)):
    values = order[column].to_numpy()
    for boundary in np.flatnonzero(values[1:] != values[:-1]):
        ax.axhline(boundary + 0.5, color=color, linewidth=width)
for role in SHOWN_ROLES:
    rows_of_role = np.flatnonzero(order.role.to_numpy() == role)
    ax.text(ssim_star.shape[1] - 0.4, rows_of_role.mean(), role, rotation=270, va="center", fontsize=8)
ax.set_xticks(range(ssim_star.shape[1]), ssim_star.columns.str.replace(", ", "\n"), fontsize=7)
ax.set_yticks(range(len(ssim_star)), ssim_star.index, fontsize=6.5)
ax.xaxis.tick_top()
ax.set_title("Full-FT, small profile: SSIM* of each unsafe pose in each draw "
             f"(black = suppressed; bold = above {SUPPRESSED}; blue = pool pose left out of that draw)", fontsize=8)
save_figure(fig, results / "full_ft_draws_per_pose.png")
