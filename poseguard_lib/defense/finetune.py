"""The optimisation loop behind every PoseGuard strategy, with checkpoints and exact resume.

A *phase* is one optimisation run: full fine-tuning (Eq. 1), one LoRA adapter (Eq. 2), or the
fusion weights α (Eq. 3). Its loss comes from a function of the step's random generator, so
every random draw of step ``k`` (batch indices, noise, timesteps, condition drops) depends only on
(seed, phase, k): a run resumed from a checkpoint takes exactly the steps an uninterrupted run
takes. Checkpoints hold the phase's trainable tensors (safetensors), the optimizer (and fp16 loss
scaler) state and the loss history, each in a ``step_XXXXXXX`` folder written atomically; a
``fingerprint`` of the whole defense run guards against resuming someone else's checkpoints.

Losses are stage 1's (:class:`~poseguard_lib.models.training.ImageObjective`: v-prediction, min-SNR
weighting, noise offset) with the stage's per-sample condition dropout on benign and unsafe pairs
alike, so the unconditional branch used by classifier-free guidance learns the refusal too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from poseguard_lib.config import TrainSettings
from poseguard_lib.io import atomic_dir, write_json
from poseguard_lib.models.components import AnimateAnyone
from poseguard_lib.models.training import draw_batch, learning_rate_factor, noise_offset_group

STATE_FILE = "state.json"
TENSORS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"


class CheckpointMismatchError(RuntimeError):
    """Checkpoints on disk that belong to a different defense run."""


@dataclass
class Phase:
    """One optimisation run: its trainable tensors, the loss of a step, its budget.

    ``prepare`` runs before training or restoring (e.g. activating this phase's adapter).
    ``schedule``: how the rate changes over the phase (``TrainSettings.lr_schedule``'s choices).
    """

    name: str
    params: dict[str, torch.Tensor]
    loss: Callable[[torch.Generator], torch.Tensor]
    steps: int
    learning_rate: float
    weight_decay: float
    prepare: Callable[[], None] = field(default=lambda: None)
    schedule: str = "constant"


def step_generator(seed: int, phase: str, step: int) -> torch.Generator:
    """The generator of every random draw of one step of one phase (resume-exact by construction)."""
    phase_key = int(hashlib.sha256(phase.encode()).hexdigest()[:15], 16)
    state = np.random.SeedSequence([seed, phase_key, step]).generate_state(1)[0]
    return torch.Generator("cpu").manual_seed(int(state))


@dataclass(frozen=True)
class NoiseShape:
    """One sample's noise in the model's diffusion space: its shape, and how many channels share
    one noise-offset value (:func:`poseguard_lib.models.training.draw_batch`)."""

    dims: tuple[int, int, int]
    offset_group: int


def sample_shape(model: AnimateAnyone, dataset, per_position_offset: bool = False) -> NoiseShape:
    """The noise of ``model``'s diffusion space for ``dataset``'s frames, offset as the model was
    trained (``per_position_offset``: one offset value per channel, pixel-patch positions apart)."""
    height, width = dataset[0]["target"].shape[-2:]
    if height % model.size_multiple or width % model.size_multiple:
        raise ValueError(f"frames are {height}×{width}; this model needs sides that are multiples of {model.size_multiple}")
    dims = (model.denoising_unet.config.in_channels, height // model.downscale, width // model.downscale)
    return NoiseShape(dims, 1 if per_position_offset else noise_offset_group(model))


def batch_loss(objective, dataset, size: int, noise_shape: NoiseShape, train: TrainSettings, generator, device,
               call=None) -> torch.Tensor:
    """Stage 1's loss on ``size`` pairs drawn from ``dataset``; ``call(objective, batch)`` may replace the plain forward."""
    batch = draw_batch(dataset, size, noise_shape.dims, train, generator, noise_shape.offset_group)
    batch = {k: v.to(device) for k, v in batch.items()}
    return objective(**batch) if call is None else call(objective, batch)


# ----------------------------------------------------------------------------- checkpoints
def _latest(directory: Path) -> Path | None:
    done = sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def _save(directory: Path, step: int, phase: Phase, optimizer, scaler, history: list[dict], fingerprint: str, keep: int = 2):
    with atomic_dir(directory / f"step_{step:07d}") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in phase.params.items()}, tmp / TENSORS_FILE)
        torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None}, tmp / OPTIMIZER_FILE)
        write_json(tmp / STATE_FILE, {"phase": phase.name, "step": step, "fingerprint": fingerprint, "history": history})
    for old in sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).exists())[:-keep]:
        shutil.rmtree(old)


def _restore(checkpoint: Path, phase: Phase, optimizer, scaler, fingerprint: str) -> tuple[int, list[dict]]:
    state = json.loads((checkpoint / STATE_FILE).read_text())
    if state.get("fingerprint") != fingerprint or state.get("phase") != phase.name:
        raise CheckpointMismatchError(
            f"{checkpoint} was written by another defense run (phase {state.get('phase')!r}); "
            "remove that checkpoint folder or write to another output"
        )
    if state["step"] > phase.steps:
        raise CheckpointMismatchError(
            f"{checkpoint} is at step {state['step']}, past the {phase.steps} steps asked for; "
            "ask for at least as many steps or remove the checkpoints"
        )
    tensors = load_file(checkpoint / TENSORS_FILE)
    if set(tensors) != set(phase.params):
        raise CheckpointMismatchError(f"{checkpoint} holds other tensors than phase {phase.name!r} trains")
    with torch.no_grad():
        for name, param in phase.params.items():
            param.copy_(tensors[name])
    saved = torch.load(checkpoint / OPTIMIZER_FILE, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])
    return state["step"], state["history"]


# ----------------------------------------------------------------------------- the loop
def _precision(mixed_precision: str, device: torch.device):
    """Autocast context and (fp16 only) a loss scaler, as in stage 1 training."""
    if mixed_precision == "no":
        return contextlib.nullcontext(), None
    if mixed_precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), None
    if device.type != "cuda":
        raise ValueError("fp16 mixed precision needs a CUDA device; use mixed_precision 'bf16' or 'no'")
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def run_phase(
    phase: Phase,
    train: TrainSettings,
    *,
    seed: int,
    device: torch.device,
    checkpoint_dir: Path | None,
    checkpoint_every: int,
    fingerprint: str,
    progress: bool,
) -> list[dict]:
    """Optimise ``phase`` to its step budget (AdamW, gradient clipping), resuming from its newest
    checkpoint; returns the loss history of the phase: dicts of phase, step, loss, seconds."""
    phase.prepare()
    params = list(phase.params.values())
    optimizer = torch.optim.AdamW(params, lr=phase.learning_rate, weight_decay=phase.weight_decay)
    autocast, scaler = _precision(train.mixed_precision, device)
    directory = None if checkpoint_dir is None else checkpoint_dir / phase.name
    start, history = 0, []
    resume_from = None if directory is None else _latest(directory)
    if resume_from is not None:
        start, history = _restore(resume_from, phase, optimizer, scaler, fingerprint)
    bar = tqdm(range(start, phase.steps), initial=start, total=phase.steps, desc=phase.name, disable=not progress)
    for step in bar:
        began = time.perf_counter()
        with autocast:
            loss = phase.loss(step_generator(seed, phase.name, step))
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm)
        for group in optimizer.param_groups:
            group["lr"] = phase.learning_rate * learning_rate_factor(phase.schedule, step, phase.steps)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        history.append({"phase": phase.name, "step": step + 1, "loss": value, "seconds": time.perf_counter() - began})
        bar.set_postfix(loss=f"{value:.4f}")
        if directory is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == phase.steps):
            _save(directory, step + 1, phase, optimizer, scaler, history, fingerprint)
    bar.close()
    for param in params:
        param.requires_grad_(False)
    return history
