"""Reporting helpers for the notebooks: the paper's tables, side-by-side tables, frame grids.

Every table a notebook shows goes through :func:`beside_paper` or carries a ``profile``
column, so that no number in the book appears without the profile that produced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

PAPER_TABLES_IN_REPO = Path(__file__).resolve().parent.parent / "data_manifest" / "paper_tables"

METRIC_COLUMNS = ("fid_vid", "fvd", "fid", "ssim", "psnr", "lpips", "ssim_star", "psnr_star", "lpips_star")
STRATEGY_LABELS = {"full": "Full-FT", "lora": "LoRA-FT"}
BASELINE_METHOD = "Baseline (No FT)"  # the undefended model's row in Table 1


def table1_method(strategy: str, n_poses: int) -> str:
    """A defended model's name as the paper's Table 1 spells it ("Full-FT-1 Pose", "LoRA-FT-4 Poses"),
    so that our rows line up with the paper's."""
    return f"{STRATEGY_LABELS[strategy]}-{n_poses} Pose" + ("s" if n_poses > 1 else "")


def device_description(device=None) -> str:
    """The hardware a number was measured on: the GPU's name, or the CPU's model, cores and torch threads
    (``device`` defaults to :func:`~poseguard_lib.config.compute_device`)."""
    import os
    import platform

    import torch

    from poseguard_lib.config import compute_device

    device = torch.device(device) if device is not None else compute_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU: {cpu} ({os.cpu_count()} cores, {threads} thread{'' if threads == 1 else 's'})"


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables (e.g. ``"table1_effectiveness"``), as transcribed in the repository."""
    path = PAPER_TABLES_IN_REPO / f"{name}.csv"
    if not path.exists():
        known = sorted(p.stem for p in PAPER_TABLES_IN_REPO.glob("*.csv"))
        raise FileNotFoundError(f"no paper table {name!r}; known tables: {', '.join(known)}")
    return pd.read_csv(path)


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame, key: str, profile: str) -> pd.DataFrame:
    """Our rows and the paper's rows for the same ``key`` values, labelled by source: in our rows' order,
    each with the paper's row above it; the paper's rows for keys we lack and its columns we lack are left
    out."""
    ours = ours.assign(source=f"this study ({profile} profile)")
    theirs = paper[paper[key].isin(ours[key])].assign(source="paper (Moore-AnimateAnyone, UBC-Fashion)")
    columns = [key, "source", *[c for c in ours.columns if c in theirs.columns and c not in (key, "source")]]
    extra = [c for c in ours.columns if c not in columns]
    table = pd.concat([ours[columns + extra], theirs.reindex(columns=columns + extra)], ignore_index=True)
    order = {value: i for i, value in enumerate(ours[key])}
    return table.sort_values([key, "source"], key=lambda s: s.map(order) if s.name == key else s, kind="stable").reset_index(drop=True)


def versus_baseline(table: pd.DataFrame) -> pd.DataFrame:
    """The defended rows of a Table 1-shaped table, with ``benign_ssim_change``: benign SSIM minus that of
    the table's own undefended row, so that rows measured against different base models (or the paper's)
    can share one axis."""
    baseline = table.loc[table.method == BASELINE_METHOD, "ssim"]
    if len(baseline) != 1:
        raise ValueError(f"expected one {BASELINE_METHOD!r} row in the table, found {len(baseline)}")
    defended = table[table.method != BASELINE_METHOD]
    return defended.assign(benign_ssim_change=defended.ssim - baseline.iloc[0])


def quality_vs_poses_figure(ours: pd.DataFrame, ours_label: str, paper: pd.DataFrame | None = None):
    """Figure 4's trade-off against the number of defended poses, per strategy: benign quality kept (SSIM
    change from the undefended model) and defense strength (SSIM* on the trained unsafe poses, lower is
    stronger). Tables as :func:`versus_baseline` returns them; the paper's curves dashed, open markers."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for source, rows, linestyle, fill in ((ours_label, ours, "-", "full"), ("paper", paper, "--", "none")):
        if rows is None:
            continue
        for (strategy, label), color, marker in zip(STRATEGY_LABELS.items(), ("C0", "C1"), "os"):
            part = rows[rows.strategy == strategy].sort_values("n_poses")
            style = dict(color=color, marker=marker, fillstyle=fill, linestyle=linestyle, label=f"{label} ({source})")
            axes[0].plot(part.n_poses, part.benign_ssim_change, **style)
            axes[1].plot(part.n_poses, part.ssim_star, **style)
    axes[0].axhline(0, color="gray", linewidth=0.8)
    axes[0].set_title("benign quality: SSIM change from the undefended model", fontsize=9)
    axes[1].set_title("defense strength: SSIM* on trained unsafe poses (lower = stronger)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("number of defended poses")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def frame_grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
               scale: float = 1.2):
    """A matplotlib figure of uint8 (H, W, 3) frames laid out in rows, with labels."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    fig.tight_layout()
    return fig


def to_uint8(images) -> np.ndarray:
    """(N, 3, H, W) float tensor/array in [0, 1] → (N, H, W, 3) uint8."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


PROFILE_NOTES = {
    "tiny": "toy sizes that exercise every code path; its numbers are smoke tests, not findings",
    "small": "the study's small-scale replication: a model trained here on synthetic people",
    "paper": "SD1.5-sized Moore-AnimateAnyone with its released weights and UBC-Fashion",
}


def profile_banner(profile: str, seed: int, extractor_note: bool = False):
    """A Markdown note that opens every page: which profile produced the numbers below."""
    from IPython.display import Markdown

    text = f"**Profile: `{profile}`** (seed {seed}): {PROFILE_NOTES[profile]}."
    if extractor_note and profile != "paper":
        text += (" FID, FID-VID, FVD and LPIPS here use feature extractors trained by the study on its synthetic "
                 "data (*synthetic-domain extractor*), not InceptionV3/I3D; compare them across rows, not with the paper.")
    return Markdown(text)


def save_figure(fig, path) -> None:
    """Write a matplotlib figure to ``path`` atomically (PNG), keeping it open for display."""
    from poseguard_lib.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
