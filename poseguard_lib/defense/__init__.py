"""PoseGuard: safety guardrails fine-tuned into the generator (paper Sec. 4, Eq. 1–3)."""

from poseguard_lib.defense.api import (
    DefenseResult,
    adapter_dirs,
    defend,
    defense_fingerprint,
    fuse_adapters,
    load_defended,
    load_or_defend,
)
from poseguard_lib.defense.lora import AdapterError, LORA_TARGET_MODULES, load_adapter, merge_adapters, save_adapter
from poseguard_lib.defense.targets import DefenseInputError, UnsafePairDataset, blurred, reference_frames, safe_target
