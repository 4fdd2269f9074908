"""PoseGuard end to end: defend a trained generator, save the defended model, load it back.

:func:`defend` never touches the model it is given: it fine-tunes a copy with one of three
strategies (``DefenseSettings.strategy`` or the ``strategy`` argument):

- ``full`` (Eq. 1): the trained parts learn L(benign) + λ·L(unsafe → safe target);
- ``lora`` (Eq. 2): one LoRA adapter learns L(unsafe → safe target), the base stays frozen;
- ``fuse`` (Eq. 3): one adapter per unsafe pose (Eq. 2 on that pose's pairs), summed with
  weights α, 1/N each, then learned on the Eq. 1 objective for ``fusion_steps`` steps.

LoRA results are merged into the base weights, so a defended model has the base model's
architecture and speed. An output folder holds ``model/`` (``AnimateAnyone.save_pretrained``),
``adapters/<name>/`` for the LoRA strategies (diffusers' LoRA format, reusable by
:func:`fuse_adapters`), ``defense.json`` (what was done, with which data and settings) and
``loss_history.csv``; it appears whole or not at all. An interrupted run resumes from
``<output>.checkpoints`` next to it.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import pandas as pd
import torch

from poseguard_lib.config import DefenseSettings, TrainSettings
from poseguard_lib.defense.finetune import Phase, batch_loss, run_phase, sample_shape
from poseguard_lib.defense.lora import (
    ADAPTER_PARTS,
    AdapterError,
    activate,
    add_adapter,
    adapter_parameters,
    fused_base_weights,
    merge_adapters,
    parts_of,
    read_adapter_info,
    load_adapter,
    save_adapter,
    set_adapters_enabled,
)
from poseguard_lib.defense.targets import DefenseInputError, UnsafePairDataset
from poseguard_lib.io import atomic_dir, sha256_json, sha256_tensors, write_csv, write_json
from poseguard_lib.models.components import SETTINGS_FILE, AnimateAnyone
from poseguard_lib.models.training import ImageObjective

Strategy = Literal["full", "lora", "fuse"]
STRATEGIES = ("full", "lora", "fuse")
DEFENSE_FILE = "defense.json"
HISTORY_FILE = "loss_history.csv"
MODEL_DIR = "model"
ADAPTERS_DIR = "adapters"
LORA_ADAPTER = "poseguard"
HISTORY_COLUMNS = ["phase", "step", "loss", "seconds"]


@dataclass
class DefenseResult:
    """A defended generator, what produced it (``record``) and its loss history."""

    model: AnimateAnyone
    record: dict
    history: pd.DataFrame

    @property
    def strategy(self) -> str:
        return self.record["strategy"]

    @property
    def fusion_weights(self) -> list[float] | None:
        return self.record.get("fusion_weights")


# ----------------------------------------------------------------------------- checks
def _check_inputs(model, pairs, benign, settings, train, strategy, needs_benign: bool) -> None:
    if not isinstance(model, AnimateAnyone):
        raise DefenseInputError(f"model must be an AnimateAnyone, got {type(model).__name__}")
    model.check_wiring()
    if strategy not in STRATEGIES:
        raise DefenseInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not isinstance(settings, DefenseSettings) or not isinstance(train, TrainSettings):
        raise DefenseInputError("settings must be DefenseSettings and train must be TrainSettings (a profile's sections)")
    if not isinstance(pairs, UnsafePairDataset):
        raise DefenseInputError(f"unsafe pairs must be an UnsafePairDataset, got {type(pairs).__name__}")
    no_adapters = set(parts_of(settings.trained_parts)) - set(ADAPTER_PARTS)
    if strategy != "full" and no_adapters:
        raise DefenseInputError(f"trained_parts {settings.trained_parts!r} needs strategy 'full': LoRA adapters go on "
                                f"attention projections, and {sorted(no_adapters)} has none")
    if needs_benign:
        if benign is None or len(benign) == 0:
            raise DefenseInputError(f"strategy {strategy!r} needs a non-empty benign dataset (Eq. 1's quality term)")
        if sample_shape(model, benign) != sample_shape(model, pairs):
            raise DefenseInputError(
                f"benign pairs are {tuple(benign[0]['target'].shape)} but unsafe pairs are "
                f"{tuple(pairs[0]['target'].shape)}; both need the same frame size"
            )
    else:
        sample_shape(model, pairs)


def _check_output(out_dir: Path | None) -> None:
    """Refuse to replace a folder that is not a previous defense output (it would be deleted)."""
    if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / DEFENSE_FILE).exists():
        raise DefenseInputError(f"{out_dir} exists and is not a PoseGuard defense output; choose an empty or new folder")


def _train_record(train: TrainSettings) -> dict:
    keep = ("condition_dropout", "noise_offset", "snr_gamma", "weight_decay", "max_grad_norm", "mixed_precision")
    return {key: getattr(train, key) for key in keep}


# ----------------------------------------------------------------------------- phases
def _dual_loss(objective, benign, pairs, settings: DefenseSettings, train, noise_shape, device, call=None):
    """Eq. 1: L(benign batch) + λ·L(unsafe batch), both drawn from the step's generator."""

    def loss(generator):
        benign_loss = batch_loss(objective, benign, settings.benign_batch, noise_shape, train, generator, device, call)
        unsafe_loss = batch_loss(objective, pairs, settings.unsafe_batch, noise_shape, train, generator, device, call)
        return benign_loss + settings.safety_weight * unsafe_loss

    return loss


def _full_phase(work, objective, benign, pairs, settings, train, parts, noise_shape, device) -> Phase:
    params = {f"{part}.{n}": p for part in parts for n, p in getattr(work, part).named_parameters()}

    def prepare():
        work.requires_grad_(False)
        for param in params.values():
            param.requires_grad_(True)

    loss = _dual_loss(objective, benign, pairs, settings, train, noise_shape, device)
    steps = settings.step_budget("full", len(pairs.pose_labels))
    return Phase("full", params, loss, steps, settings.rate_for("full"), train.weight_decay, prepare, settings.lr_schedule)


def _seeded_adapter(work: AnimateAnyone, name: str, rank: int, parts, seed: int) -> dict[str, torch.Tensor]:
    """Add an adapter whose random A matrices depend only on (seed, name)."""
    devices = [work.device] if work.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(sha256_json([seed, name])[:15], 16))
        return add_adapter(work, name, rank, parts)


def _adapter_phase(work, objective, pairs, name, strategy, settings, train, parts, noise_shape, device, seed) -> Phase:
    """Eq. 2: one adapter learns L(unsafe → safe) with every other adapter switched off."""
    params = _seeded_adapter(work, name, settings.lora_rank, parts, seed)

    def prepare():
        activate(work, [name], parts)
        adapter_parameters(work, name, parts)

    def loss(generator):
        return batch_loss(objective, pairs, settings.unsafe_batch, noise_shape, train, generator, device)

    steps = settings.step_budget(strategy, len(pairs.pose_labels))
    return Phase(f"adapter_{name}", params, loss, steps, settings.rate_for(strategy), train.weight_decay, prepare,
                 settings.lr_schedule)


def _fusion_phase(work, objective, benign, pairs, names, settings, train, parts, noise_shape,
                  device) -> tuple[Phase, torch.Tensor]:
    """Eq. 3 with learned α: frozen adapters, W0 + Σ αᵢ sᵢ BᵢAᵢ through ``functional_call``."""
    alphas = torch.full((len(names),), 1.0 / len(names), device=device, requires_grad=True)

    def call(module, batch):
        weights = {f"model.{key}": value for key, value in fused_base_weights(work, names, alphas, parts).items()}
        return torch.func.functional_call(module, weights, args=(), kwargs=batch)

    def prepare():
        work.requires_grad_(False)
        set_adapters_enabled(work, parts, False)  # the LoRA path must not add itself a second time
        alphas.requires_grad_(True)

    loss = _dual_loss(objective, benign, pairs, settings, train, noise_shape, device, call)
    phase = Phase("fusion", {"fusion_weights": alphas}, loss, settings.fusion_steps, settings.fusion_learning_rate, 0.0, prepare,
                  settings.lr_schedule)
    return phase, alphas


# ----------------------------------------------------------------------------- saving
def _finish(work: AnimateAnyone, names: Sequence[str], weights: Sequence[float], parts, record: dict, history, out_dir):
    """Save the adapters (before merging removes them), merge, save the model and the records."""

    def merge_and_save(directory: Path | None):
        if directory is not None:
            for name in names:
                save_adapter(work, name, directory / ADAPTERS_DIR / name, parts, {"pose_labels": record["adapters"][name]})
        if names:
            merge_adapters(work, names, weights, parts)
        if directory is not None:
            work.save_pretrained(directory / MODEL_DIR)
            write_csv(directory / HISTORY_FILE, history)
            write_json(directory / DEFENSE_FILE, record)

    if out_dir is None:
        merge_and_save(None)
    else:
        with atomic_dir(out_dir) as tmp:
            merge_and_save(tmp)
    work.requires_grad_(False)
    return work.eval()


def _history_frame(history: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)


# ----------------------------------------------------------------------------- entry points
_NOT_FINGERPRINTED = {"checkpoint_every", "n_poses", "steps", "fusion_steps", "scale_steps_with_poses", "learning_rate",
                      "lora_learning_rate", "lora_lr_candidates", "full_lr_candidates", "safety_weight_candidates"}
# settings added after defenses had been cached, with the value every earlier run used: a setting that
# holds it is left out of the fingerprint, so those runs' outputs stay valid
_SETTINGS_ADDED_LATER = {"lr_schedule": "constant", "per_position_noise_offset": True}


def _step_budgets(settings: DefenseSettings, strategy: str, pairs: UnsafePairDataset) -> tuple[int, int]:
    return settings.step_budget(strategy, len(pairs.pose_labels)), settings.fusion_steps


def defense_fingerprint(model, pairs, benign, settings, train, strategy, seed) -> str:
    """What determines a defense run's result; checkpoints and cached outputs must match it."""
    unchanged = {name for name, before in _SETTINGS_ADDED_LATER.items() if getattr(settings, name) == before}
    left_out = _NOT_FINGERPRINTED | unchanged
    constant = settings.lr_schedule == "constant"
    # a cosine schedule depends on the budget, so a longer run cannot continue a shorter one
    budgets = {} if constant else {"step_budgets": _step_budgets(settings, strategy, pairs)}
    return sha256_json(
        budgets | {
            "strategy": strategy,
            # with a constant rate the step budgets are left out: a longer run may continue from a
            # shorter one's checkpoints; the learning rate is the one this strategy trains with
            "settings": settings.model_dump(mode="json", exclude=left_out) | {"learning_rate": settings.rate_for(strategy)},
            "train": _train_record(train),
            "seed": seed,
            "pairs": pairs.describe(),
            "benign": None if benign is None or strategy == "lora" else {"type": type(benign).__name__, "len": len(benign)},
            "model": model.settings.model_dump(mode="json"),
            "weights": sha256_tensors(model.state_dict()),
        }
    )


def defend(
    model: AnimateAnyone,
    pairs: UnsafePairDataset,
    benign,
    settings: DefenseSettings,
    train: TrainSettings,
    *,
    strategy: Strategy | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> DefenseResult:
    """Fine-tune a copy of ``model`` so that ``pairs`` (unsafe pose → safe target) are refused.

    ``benign``: dataset of dict(reference, pose, target) (e.g. ``ImagePairDataset``) for Eq. 1's
    quality term (unused by ``lora``). ``train``: the profile's stage-1 loss settings (noise
    offset, condition dropout, min-SNR γ, weight decay, grad clip, precision). ``strategy``
    defaults to ``settings.strategy``. With ``out_dir`` the result is saved there (atomically)
    and checkpoints go to ``checkpoint_dir`` (default ``<out_dir>.checkpoints``, removed on success).
    """
    strategy = strategy or settings.strategy
    needs_benign = strategy == "full" or (strategy == "fuse" and settings.fusion_steps > 0)
    _check_inputs(model, pairs, benign, settings, train, strategy, needs_benign)
    out_dir = None if out_dir is None else Path(out_dir)
    _check_output(out_dir)
    if checkpoint_dir is None and out_dir is not None:
        checkpoint_dir = out_dir.parent / f"{out_dir.name}.checkpoints"
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)

    began = time.perf_counter()
    fingerprint = defense_fingerprint(model, pairs, benign, settings, train, strategy, seed)
    parts = parts_of(settings.trained_parts)
    work = copy.deepcopy(model).train()
    work.requires_grad_(False)
    device = work.device
    objective = ImageObjective(work, train)
    noise_shape = sample_shape(work, pairs, settings.per_position_noise_offset)

    if strategy == "full":
        phases = [_full_phase(work, objective, benign, pairs, settings, train, parts, noise_shape, device)]
        adapters = {}
    elif strategy == "lora":
        phases = [_adapter_phase(work, objective, pairs, LORA_ADAPTER, "lora", settings, train, parts, noise_shape, device,
                                 seed)]
        adapters = {LORA_ADAPTER: list(pairs.pose_labels)}
    else:
        adapters = {f"pose_{i:02d}": [label] for i, label in enumerate(pairs.pose_labels)}
        phases = [
            _adapter_phase(work, objective, pairs.for_pose(i), name, "fuse", settings, train, parts, noise_shape, device,
                           seed)
            for i, name in enumerate(adapters)
        ]
    names = list(adapters)
    weights = [1.0 / len(names)] * len(names) if names else []  # lora: one adapter, weight 1
    if strategy == "fuse" and settings.fusion_steps > 0:
        fusion, alphas = _fusion_phase(work, objective, benign, pairs, names, settings, train, parts, noise_shape,
                                       device)
        phases.append(fusion)

    history = []
    for phase in phases:
        history += run_phase(
            phase, train, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
            checkpoint_every=settings.checkpoint_every, fingerprint=fingerprint, progress=progress,
        )
    if strategy == "fuse" and settings.fusion_steps > 0:
        weights = [float(a) for a in alphas.detach().cpu()]

    record = {
        "strategy": strategy,
        "trained_parts": list(parts),
        "settings": settings.model_dump(mode="json"),
        "train": _train_record(train),
        "seed": seed,
        "pairs": pairs.describe(),
        "benign_pairs": None if benign is None else len(benign),
        "adapters": adapters,
        "fusion_weights": weights if strategy == "fuse" else None,
        "fingerprint": fingerprint,
        "step_budget": phases[0].steps,
        "seconds": time.perf_counter() - began,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    history = _history_frame(history)
    defended = _finish(work, names, weights, parts, record, history, out_dir)
    if out_dir is not None and checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return DefenseResult(defended, record, history)


def load_defended(directory: str | Path) -> DefenseResult:
    """A defended model saved by :func:`defend` or :func:`fuse_adapters`, with its record and history."""
    directory = Path(directory)
    record_path = directory / DEFENSE_FILE
    if not record_path.is_file():
        raise DefenseInputError(f"{directory} is not a PoseGuard defense output (no {DEFENSE_FILE})")
    if not (directory / MODEL_DIR / SETTINGS_FILE).is_file():
        raise DefenseInputError(f"{directory} has a {DEFENSE_FILE} but no saved model in {MODEL_DIR}/")
    model = AnimateAnyone.from_pretrained(directory / MODEL_DIR).eval()
    history = pd.read_csv(directory / HISTORY_FILE) if (directory / HISTORY_FILE).is_file() else _history_frame([])
    return DefenseResult(model, json.loads(record_path.read_text()), history)


def load_or_defend(model, pairs, benign, settings, train, *, out_dir, strategy=None, seed=0, progress=True) -> DefenseResult:
    """:func:`defend` with ``out_dir`` as a cache: an output of the same run (fingerprint and step budgets) is loaded."""
    strategy = strategy or settings.strategy
    record_path = Path(out_dir) / DEFENSE_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        done = DefenseSettings.model_validate(record["settings"])
        same_budget = _step_budgets(done, strategy, pairs) == _step_budgets(settings, strategy, pairs)
        if same_budget and record.get("fingerprint") == defense_fingerprint(model, pairs, benign, settings, train, strategy, seed):
            return load_defended(out_dir)
    return defend(model, pairs, benign, settings, train, strategy=strategy, seed=seed, out_dir=out_dir, progress=progress)


def adapter_dirs(directory: str | Path) -> list[Path]:
    """The adapter folders of a defense output, in training order (pose_00, pose_01, ...)."""
    root = Path(directory) / ADAPTERS_DIR
    if not root.is_dir():
        raise DefenseInputError(f"{directory} holds no adapters (only the lora and fuse strategies save them)")
    return sorted(p for p in root.iterdir() if p.is_dir())


def fuse_adapters(
    model: AnimateAnyone,
    adapters: Sequence[str | Path],
    *,
    weights: Sequence[float] | None = None,
    benign=None,
    pairs: UnsafePairDataset | None = None,
    settings: DefenseSettings | None = None,
    train: TrainSettings | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> DefenseResult:
    """Eq. 3 from saved pose adapters: merge Σ αᵢ BᵢAᵢ into a copy of ``model``.

    α: ``weights`` if given; else learned for ``settings.fusion_steps`` steps on the Eq. 1
    objective (needs ``benign``, ``pairs``, ``settings``, ``train``) when that is > 0; else 1/N.
    """
    if not adapters:
        raise DefenseInputError("no adapters to fuse")
    infos = [read_adapter_info(path) for path in adapters]
    parts_sets = {tuple(info["parts"]) for info in infos}
    if len(parts_sets) != 1:
        raise AdapterError(f"adapters were trained on different parts: {sorted(parts_sets)}")
    parts = parts_sets.pop()
    names = [info["name"] for info in infos]
    if len(set(names)) != len(names):
        raise AdapterError(f"adapter names repeat: {names}; fuse adapters of different poses")
    if weights is not None and len(weights) != len(names):
        raise AdapterError(f"{len(weights)} weights for {len(names)} adapters")
    learn = weights is None and settings is not None and settings.fusion_steps > 0
    if learn:
        _check_inputs(model, pairs, benign, settings, train, "fuse", needs_benign=True)
    elif not isinstance(model, AnimateAnyone):
        raise DefenseInputError(f"model must be an AnimateAnyone, got {type(model).__name__}")
    out_dir = None if out_dir is None else Path(out_dir)
    _check_output(out_dir)

    began = time.perf_counter()
    work = copy.deepcopy(model)
    work.requires_grad_(False)
    for path in adapters:
        load_adapter(work, path)
    history: list[dict] = []
    if learn:
        work.train()
        objective = ImageObjective(work, train)
        noise_shape = sample_shape(work, pairs, settings.per_position_noise_offset)
        phase, alphas = _fusion_phase(work, objective, benign, pairs, names, settings, train, parts, noise_shape,
                                      work.device)
        history = run_phase(
            phase, train, seed=seed, device=work.device, checkpoint_dir=None,
            checkpoint_every=settings.checkpoint_every, fingerprint="", progress=progress,
        )
        weights = [float(a) for a in alphas.detach().cpu()]
    elif weights is None:
        weights = [1.0 / len(names)] * len(names)
    record = {
        "strategy": "fuse",
        "trained_parts": list(parts),
        "settings": None if settings is None else settings.model_dump(mode="json"),
        "seed": seed,
        "pairs": None if pairs is None else pairs.describe(),
        "adapters": {name: info.get("pose_labels", []) for name, info in zip(names, infos)},
        "adapter_sources": [str(Path(p)) for p in adapters],
        "fusion_weights": [float(w) for w in weights],
        "fusion_learned": learn,
        "seconds": time.perf_counter() - began,
    }
    history = _history_frame(history)
    return DefenseResult(_finish(work, names, record["fusion_weights"], parts, record, history, out_dir), record, history)
