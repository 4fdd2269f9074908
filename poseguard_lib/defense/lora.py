"""LoRA adapters on the generator's UNets (Eq. 2) and their pose-specific fusion (Eq. 3).

Adapters are PEFT LoRA layers on every attention projection (``to_q``, ``to_k``, ``to_v``,
``to_out.0``) of the fine-tuned UNets, added with diffusers' ``add_adapter`` and stored in the
format diffusers and PEFT load (``save_lora_adapter`` / ``load_lora_adapter``: safetensors with
the LoRA config in its metadata), one subfolder per UNet. The reference-attention processors
call ``attn.to_q`` etc., so they go through the LoRA-wrapped projections like any other caller.

Fusion adds the adapters' low-rank updates, ΔW = Σ αᵢ sᵢ BᵢAᵢ (sᵢ = alpha/rank, here 1). The
forward through diffusers' ``set_adapters(names, weights)`` computes exactly that sum per layer,
unlike PEFT's ``add_weighted_adapter(combination_type="linear")``, which multiplies the summed
Bs by the summed As. :func:`fused_base_weights` writes the same sum out as full weight matrices
so that α can be learned with ``torch.func.functional_call`` (the adapters stay frozen), and
:func:`merge_adapters` folds the chosen sum into the base weights and removes every LoRA layer:
a deployed defense costs nothing at inference.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch
from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE
from diffusers.utils import logging as diffusers_logging
from peft import LoraConfig
from peft.tuners.lora import LoraLayer

from poseguard_lib.io import atomic_dir
from poseguard_lib.models.components import AnimateAnyone

LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
TRAINED_PARTS = {
    "denoising_unet": ("denoising_unet",),
    "denoising_and_reference_unet": ("denoising_unet", "reference_unet"),
    # beyond the paper, full fine-tuning only: the pose guider is convolutions, with no attention for LoRA
    "denoising_unet_and_pose_guider": ("denoising_unet", "pose_guider"),
}
ADAPTER_PARTS = ("denoising_unet", "reference_unet")
ADAPTER_FILE = "adapter.json"


class AdapterError(ValueError):
    """An adapter name, folder or combination that cannot be used."""


def parts_of(trained_parts: str) -> tuple[str, ...]:
    """The AnimateAnyone attributes that a ``trained_parts`` setting names."""
    try:
        return TRAINED_PARTS[trained_parts]
    except KeyError:
        raise AdapterError(f"trained_parts must be one of {sorted(TRAINED_PARTS)}, got {trained_parts!r}") from None


def adapter_names(model: AnimateAnyone, part: str = "denoising_unet") -> list[str]:
    """Names of the adapters loaded on one UNet of ``model`` (in the order they were added)."""
    return list(getattr(getattr(model, part), "peft_config", {}) or {})


def _lora_layers(unet: torch.nn.Module) -> list[tuple[str, LoraLayer]]:
    return [(name, module) for name, module in unet.named_modules() if isinstance(module, LoraLayer)]


def add_adapter(model: AnimateAnyone, name: str, rank: int, parts: Sequence[str]) -> dict[str, torch.nn.Parameter]:
    """Add a fresh LoRA adapter (B = 0, so the model is unchanged) to ``parts`` and make it the
    only active one; returns its parameters by model-level name, all trainable, everything else frozen."""
    if rank < 1:
        raise AdapterError(f"LoRA rank must be >= 1, got {rank}")
    if not name.isidentifier():
        raise AdapterError(f"adapter name {name!r} must be a Python identifier (it becomes a module key)")
    for part in parts:
        if name in adapter_names(model, part):
            raise AdapterError(f"{part} already has an adapter named {name!r}")
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGET_MODULES), lora_dropout=0.0)
        with warnings.catch_warnings():  # several adapters on one UNet are what fusion needs
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            getattr(model, part).add_adapter(config, adapter_name=name)
    activate(model, [name], parts)
    return adapter_parameters(model, name, parts)


def adapter_parameters(model: AnimateAnyone, name: str, parts: Sequence[str]) -> dict[str, torch.nn.Parameter]:
    """The LoRA A/B matrices of adapter ``name``, made the only trainable tensors of ``model``."""
    model.requires_grad_(False)
    params = {}
    for part in parts:
        for param_name, param in getattr(model, part).named_parameters():
            if param_name.endswith((f".lora_A.{name}.weight", f".lora_B.{name}.weight")):
                params[f"{part}.{param_name}"] = param
    if not params:
        raise AdapterError(f"no LoRA parameters named {name!r} on {list(parts)}")
    for param in params.values():
        param.requires_grad_(True)
    return params


def activate(model: AnimateAnyone, names: Sequence[str], parts: Sequence[str], weights: Sequence[float] | None = None) -> None:
    """Make ``names`` the active adapters of ``parts`` with fusion weights (1 each by default)."""
    weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
    if len(weights) != len(names):
        raise AdapterError(f"{len(weights)} fusion weights for {len(names)} adapters")
    for part in parts:
        unet = getattr(model, part)
        missing = sorted(set(names) - set(adapter_names(model, part)))
        if missing:
            raise AdapterError(f"{part} has no adapters named {missing}; it has {adapter_names(model, part)}")
        unet.enable_adapters()
        unet.set_adapters(list(names), weights)


def fused_base_weights(
    model: AnimateAnyone, names: Sequence[str], alphas: torch.Tensor, parts: Sequence[str]
) -> dict[str, torch.Tensor]:
    """W0 + Σ αᵢ sᵢ BᵢAᵢ for every LoRA-wrapped projection, keyed by the model-level name of its
    base weight (``<part>.<module>.base_layer.weight``); differentiable in ``alphas`` (N,).

    Used with the adapters disabled, it reproduces the fused forward of :func:`activate`.
    """
    if alphas.shape != (len(names),):
        raise AdapterError(f"alphas must have shape ({len(names)},), got {tuple(alphas.shape)}")
    weights = {}
    for part in parts:
        for module_name, layer in _lora_layers(getattr(model, part)):
            base = layer.get_base_layer().weight
            delta = sum(
                alphas[i].to(base.dtype) * (layer.lora_alpha[n] / layer.r[n]) * (layer.lora_B[n].weight @ layer.lora_A[n].weight)
                for i, n in enumerate(names)
            )
            weights[f"{part}.{module_name}.base_layer.weight"] = base.detach() + delta
    if not weights:
        raise AdapterError(f"{list(parts)} carry no LoRA layers to fuse")
    return weights


def set_adapters_enabled(model: AnimateAnyone, parts: Sequence[str], enabled: bool) -> None:
    """Switch every LoRA layer of ``parts`` on or off (off: the UNets compute with their base weights)."""
    for part in parts:
        unet = getattr(model, part)
        if enabled:
            unet.enable_adapters()
        else:
            unet.disable_adapters()


def merge_adapters(model: AnimateAnyone, names: Sequence[str], weights: Sequence[float], parts: Sequence[str]) -> None:
    """Fold Σ wᵢ sᵢ BᵢAᵢ of ``names`` into the base weights of ``parts`` and drop every LoRA layer (in place)."""
    activate(model, names, parts, weights)
    for part in parts:
        unet = getattr(model, part)
        unet.fuse_lora(adapter_names=list(names))
        unet.unload_lora()
        if _lora_layers(unet):
            raise RuntimeError(f"LoRA layers are left in {part} after merging")
    model.check_wiring()


def save_adapter(model: AnimateAnyone, name: str, directory: str | Path, parts: Sequence[str], info: dict | None = None) -> None:
    """Write adapter ``name`` as ``<directory>/<part>/pytorch_lora_weights.safetensors`` (diffusers'
    LoRA format) plus ``adapter.json`` (name, rank, parts, ``info``); atomic."""
    rank = _rank_of(model, name, parts[0])
    with atomic_dir(directory) as tmp, _quiet_diffusers():
        for part in parts:
            getattr(model, part).save_lora_adapter(tmp / part, adapter_name=name, weight_name=LORA_WEIGHT_NAME_SAFE)
        (tmp / ADAPTER_FILE).write_text(
            json.dumps({"name": name, "rank": rank, "parts": list(parts), **(info or {})}, indent=2, sort_keys=True) + "\n"
        )


@contextlib.contextmanager
def _quiet_diffusers():
    """Hide diffusers' float32 notice that ``save_lora_adapter``'s internal ``.to()`` prints every time."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def read_adapter_info(directory: str | Path) -> dict:
    """The ``adapter.json`` of a saved adapter folder (clear error when it is not one)."""
    path = Path(directory) / ADAPTER_FILE
    if not path.is_file():
        raise AdapterError(f"{directory} is not a saved PoseGuard adapter (no {ADAPTER_FILE})")
    info = json.loads(path.read_text())
    missing = [p for p in info.get("parts", []) if not (Path(directory) / p).is_dir()]
    if not info.get("parts") or missing:
        raise AdapterError(f"{directory}: adapter folder lacks its UNet subfolders {missing or ['(none listed)']}")
    return info


def load_adapter(model: AnimateAnyone, directory: str | Path, name: str | None = None) -> str:
    """Load a saved adapter into ``model``'s UNets with diffusers' ``load_lora_adapter``; returns its name."""
    info = read_adapter_info(directory)
    name = name or info["name"]
    for part in info["parts"]:
        if name in adapter_names(model, part):
            raise AdapterError(f"{part} already has an adapter named {name!r}; load it under another name")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            getattr(model, part).load_lora_adapter(
                Path(directory) / part, prefix=None, adapter_name=name, weight_name=LORA_WEIGHT_NAME_SAFE
            )
    model.check_wiring()
    return name


def _rank_of(model: AnimateAnyone, name: str, part: str) -> int:
    config = getattr(getattr(model, part), "peft_config", {}).get(name)
    if config is None:
        raise AdapterError(f"{part} has no adapter named {name!r}")
    return int(config.r)
