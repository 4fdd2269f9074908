"""Load the released Moore-AnimateAnyone weights into the stock-diffusers generator (paper profile).

Moore loads its checkpoints with ``strict=False`` and quietly runs a half-random model (flicker,
noise) when a path or a key name is wrong. Here every file comes from ``data_manifest/weights.yaml``
(its path, its SHA-256 when known, where to download it) and every key is accounted for. The only
keys allowed to be absent are those Moore's own code never has (the ReferenceNet's ``conv_norm_out``
and ``conv_out``) and buffers the model recomputes (the motion modules' sinusoidal ``pos_embed.pe``,
which is compared with the file's copy instead). Anything else stops the load with an error that
names the file and the keys. All files are checked before any weight is copied, so a failed load
leaves the model untouched.

Saving a loaded model in diffusers layout is the generator's ``save_pretrained``; this module only
reads.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

import torch
import yaml
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from safetensors.torch import load_file as load_safetensors
from torch import nn
from tqdm.auto import tqdm

from poseguard_lib.io import sha256_file, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_PATH = REPO_ROOT / "data_manifest" / "weights.yaml"
DEFAULT_WEIGHTS_DIR = REPO_ROOT / "weights"  # shared with the metric extractors' manifest
SHOWN_KEYS = 10  # an error lists at most this many keys of each kind, then the count


class CheckpointError(RuntimeError):
    """A weights file that is missing, unreadable, corrupt, or does not fit the model."""


class UnpinnedChecksumWarning(UserWarning):
    """A file was used whose expected SHA-256 the manifest does not know yet."""


# --------------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class WeightFile(_Strict):
    """One file below the weights folder and where a user downloads it."""

    path: str
    sha256: Sha256 | None
    sha256_source: str | None = None
    hf_repo: str
    hf_path: str
    hf_revision: str | None = None

    @model_validator(mode="after")
    def _digest_has_a_source(self) -> WeightFile:
        if self.sha256 is not None and not self.sha256_source:
            raise ValueError(f"{self.path}: a pinned sha256 needs a sha256_source saying where it came from")
        return self

    def where_to_get(self) -> str:
        revision = f" at revision {self.hf_revision}" if self.hf_revision else ""
        return f"https://huggingface.co/{self.hf_repo} (file {self.hf_path}{revision})"


class ManifestEntry(WeightFile):
    description: str
    alternatives: tuple[WeightFile, ...] = ()


class WeightsManifest(_Strict):
    profile: str
    root_env: str
    entries: dict[str, ManifestEntry]
    _origin: str = PrivateAttr(default="<in-memory manifest>")

    def entry(self, name: str) -> ManifestEntry:
        if name not in self.entries:
            raise CheckpointError(
                f"weights manifest {self._origin} has no entry '{name}' "
                f"(it has: {', '.join(sorted(self.entries))})"
            )
        return self.entries[name]


def load_manifest(path: str | os.PathLike = MANIFEST_PATH) -> WeightsManifest:
    """Read and validate a weights manifest (``data_manifest/weights.yaml`` by default)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights manifest {path} does not exist")
    try:
        manifest = WeightsManifest.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise CheckpointError(f"invalid weights manifest {path}: {problems}") from err
    manifest._origin = str(path)
    return manifest


def resolve_weights_dir(weights_dir: str | os.PathLike | None, manifest: WeightsManifest) -> Path:
    """The folder holding the files: the argument, else ``$<root_env>``, else ``<repo>/weights``."""
    if weights_dir is not None:
        root, origin = Path(weights_dir).expanduser(), "the weights_dir argument"
    elif os.environ.get(manifest.root_env):
        root, origin = Path(os.environ[manifest.root_env]).expanduser(), f"${manifest.root_env}"
    elif DEFAULT_WEIGHTS_DIR.is_dir():
        return DEFAULT_WEIGHTS_DIR
    else:
        raise CheckpointError(
            f"no weights folder: pass weights_dir=..., set {manifest.root_env}, or create "
            f"{DEFAULT_WEIGHTS_DIR}, holding the files listed in {manifest._origin}"
        )
    if not root.is_dir():
        raise CheckpointError(f"weights folder {root} (from {origin}) does not exist")
    return root


def locate_file(manifest: WeightsManifest, name: str, root: Path) -> tuple[WeightFile, Path]:
    """The first file of entry ``name`` (its ``path``, then its ``alternatives``) that exists."""
    entry = manifest.entry(name)
    candidates = (entry, *entry.alternatives)
    for candidate in candidates:
        if (root / candidate.path).is_file():
            return candidate, root / candidate.path
    tried = "; ".join(f"{root / c.path} from {c.where_to_get()}" for c in candidates)
    raise CheckpointError(
        f"missing weights file {entry.path} (manifest entry '{name}' in {manifest._origin}). "
        f"Download it to: {tried}"
    )


# --------------------------------------------------------------------------------------------------
# Reading and checking one file
# --------------------------------------------------------------------------------------------------


def verify_checksum(name: str, expected: WeightFile, path: Path, manifest_origin: str) -> str:
    """SHA-256 of ``path``; raises on a mismatch, warns when the manifest pins no digest."""
    observed = sha256_file(path)
    if expected.sha256 is None:
        warnings.warn(
            f"{path} (manifest entry '{name}'): no SHA-256 is pinned; this copy has {observed}. "
            f"Once you trust it, write it as sha256 (with a sha256_source) in {manifest_origin}.",
            UnpinnedChecksumWarning,
            stacklevel=3,
        )
    elif observed != expected.sha256:
        raise CheckpointError(
            f"checksum mismatch for {path} (manifest entry '{name}'): expected {expected.sha256} "
            f"(source: {expected.sha256_source}), found {observed}. The file is corrupt, truncated "
            f"or another release; download it again from {expected.where_to_get()}"
        )
    return observed


def read_state_dict(path: Path, name: str, source: WeightFile) -> dict[str, torch.Tensor]:
    """A flat ``{key: tensor}`` dict from a ``.safetensors`` file or a ``torch.save`` file (.pth/.bin).

    ``torch.load`` runs with ``weights_only=True`` (no pickled code) and memory-maps zip-format files
    so that multi-GB checkpoints are not copied into RAM twice.
    """
    try:
        if path.suffix == ".safetensors":
            loaded: Any = load_safetensors(path, device="cpu")
        else:
            loaded = torch.load(
                path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
            )
    # Readers raise many types for damaged files (zip, pickle, safetensors, EOF); all mean the same.
    except Exception as err:
        raise CheckpointError(
            f"cannot read {path} (manifest entry '{name}'): {type(err).__name__}: {err}. "
            f"The file is truncated or corrupt; download it again from {source.where_to_get()}"
        ) from err
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        kind = type(loaded).__name__
        raise CheckpointError(
            f"{path} (manifest entry '{name}') is not a flat state dict of tensors (found {kind}); "
            f"expected the file from {source.where_to_get()}"
        )
    return dict(loaded)


def _key_list(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


@dataclass(frozen=True)
class KeyFit:
    """How a state dict lines up with a module: what will be copied and what is tolerated."""

    to_copy: dict[str, torch.Tensor]
    tolerated_missing: list[str]
    tolerated_unexpected: list[str]


def fit_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    module: nn.Module,
    *,
    allowed_missing: Iterable[str] = (),
    allowed_unexpected: Iterable[str] = (),
    extra_problems: Iterable[str] = (),
    describe: str,
) -> KeyFit:
    """Match keys and shapes of ``state_dict`` to ``module``; raise naming every disallowed key.

    ``allowed_*`` are glob patterns (``fnmatch``); ``describe`` names the file and the target in the
    error message.
    """
    allowed_missing, allowed_unexpected = tuple(allowed_missing), tuple(allowed_unexpected)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    bad_missing = [k for k in missing if not _matches(k, allowed_missing)]
    bad_unexpected = [k for k in unexpected if not _matches(k, allowed_unexpected)]
    wrong_shape = [
        f"{k} (file {tuple(v.shape)}, model {tuple(expected[k].shape)})"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {_key_list(keys)}"
        for label, keys in (
            ("missing keys", bad_missing),
            ("unexpected keys", bad_unexpected),
            ("keys with the wrong shape", wrong_shape),
        )
        if keys
    ]
    problems += list(extra_problems)
    if problems:
        raise CheckpointError(f"{describe} does not fit:\n  " + "\n  ".join(problems))
    return KeyFit(
        to_copy={k: v for k, v in state_dict.items() if k in expected},
        tolerated_missing=missing,
        tolerated_unexpected=unexpected,
    )


def check_config(path: Path, module: nn.Module, fields: Iterable[str], describe: str) -> None:
    """Compare the architecture fields of a ``config.json`` with the module's config.

    Shapes alone do not pin an architecture (SD1.5's ``attention_head_dim: 8`` sets the number of
    heads, which no weight shape shows), so the fields that change computation are compared.
    Fields absent from the file are not compared.
    """
    try:
        reference = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {describe}: {err}") from err
    config = module.config
    actual = config if isinstance(config, Mapping) else config.to_dict()
    differences = []
    for key in fields:
        if key not in reference:
            continue
        if key not in actual:
            differences.append(f"{key}: file {reference[key]!r}, model has no such field")
            continue
        value = json.loads(json.dumps(actual[key]))  # tuples -> lists, as in the file
        if value != reference[key]:
            differences.append(f"{key}: file {reference[key]!r}, model {value!r}")
    if differences:
        raise CheckpointError(
            f"{describe} disagrees with the model's architecture in {len(differences)} fields:\n  "
            + "\n  ".join(differences)
        )


# --------------------------------------------------------------------------------------------------
# Key layouts of the released files
# --------------------------------------------------------------------------------------------------

_ANIMATEDIFF_POSITIONAL = re.compile(
    r"^(?P<module>.+)\.temporal_transformer\.transformer_blocks\.(?P<block>\d+)"
    r"\.attention_blocks\.\d+\.pos_encoder\.pe$"
)


def animatediff_to_diffusers(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, list[tuple[str, torch.Tensor]]]]:
    """Rename original-AnimateDiff motion-module keys to diffusers ``MotionAdapter`` keys.

    The renaming is diffusers' own ``convert_animatediff_checkpoint_to_diffusers``. That function
    drops every ``pos_encoder`` key; here they are set apart instead, keyed by the adapter buffer
    they correspond to (``...transformer_blocks.N.pos_embed.pe``, one per block where AnimateDiff
    has one per attention), so that the caller can compare them. A ``pos_encoder`` key outside the
    known layout is kept under its own name, so that it surfaces as unexpected.
    """
    positional: dict[str, list[tuple[str, torch.Tensor]]] = {}
    renamable, unknown = {}, {}
    for key, value in state_dict.items():
        match = _ANIMATEDIFF_POSITIONAL.match(key)
        if match:
            target = f"{match['module']}.transformer_blocks.{match['block']}.pos_embed.pe"
            positional.setdefault(target, []).append((key, value))
        elif "pos_encoder" in key:
            unknown[key] = value
        else:
            renamable[key] = value
    return {**convert_animatediff_checkpoint_to_diffusers(renamable), **unknown}, positional


def _motion_module_keys(
    state_dict: dict[str, torch.Tensor], module: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert and check the file's positional encodings against the adapter's sinusoidal buffers.

    AnimateDiff and diffusers compute the same table; a file whose table differs (on the frames
    both cover) was trained with another encoding and would be silently wrong here.
    """
    converted, positional = animatediff_to_diffusers(state_dict)
    buffers = module.state_dict()
    problems = []
    for target, copies in positional.items():
        if target not in buffers:
            converted.update(copies)  # no such module in the adapter: report the keys as unexpected
            continue
        ours = buffers[target]
        for key, theirs in copies:
            frames = min(theirs.shape[1], ours.shape[1]) if theirs.ndim == 3 else 0
            if theirs.ndim != 3 or theirs.shape[-1] != ours.shape[-1]:
                problems.append(f"{key}: shape {tuple(theirs.shape)}, model buffer {tuple(ours.shape)}")
            elif not torch.allclose(theirs[:, :frames].float(), ours[:, :frames].float(), atol=1e-3):
                problems.append(f"{key}: differs from the sinusoidal encoding in {target}")
    return converted, problems


_LEGACY_VAE_ATTENTION = re.compile(r"^(?P<prefix>.+\.attentions\.\d+)\.(?P<name>query|key|value|proj_attn)\.")
_LEGACY_VAE_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _vae_keys(
    state_dict: dict[str, torch.Tensor], module: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """sd-vae-ft-mse predates diffusers 0.14: rename its mid-block attention (query -> to_q, ...)."""

    def rename(key: str) -> str:
        match = _LEGACY_VAE_ATTENTION.match(key)
        if not match:
            return key
        new = f"{match['prefix']}.{_LEGACY_VAE_NAMES[match['name']]}."
        return new + key[match.end():]

    return {rename(k): v for k, v in state_dict.items()}, []


# --------------------------------------------------------------------------------------------------
# Which file goes where
# --------------------------------------------------------------------------------------------------

_UNET_FIELDS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "attention_head_dim", "cross_attention_dim", "norm_num_groups", "norm_eps",
    "act_fn", "downsample_padding", "mid_block_scale_factor", "flip_sin_to_cos", "freq_shift",
    "center_input_sample", "use_linear_projection", "only_cross_attention", "mid_block_type",
)
_VAE_FIELDS = (
    "in_channels", "out_channels", "latent_channels", "down_block_types", "up_block_types",
    "block_out_channels", "layers_per_block", "act_fn", "norm_num_groups", "scaling_factor",
)
_CLIP_VISION_FIELDS = (
    "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
    "num_attention_heads", "num_channels", "image_size", "patch_size", "hidden_act",
    "layer_norm_eps",
)

KeyConverter = Callable[[dict[str, torch.Tensor], nn.Module], tuple[dict[str, torch.Tensor], list[str]]]


@dataclass(frozen=True)
class ComponentRule:
    """How one component of the generator is filled: its weights entry, config check and key rules."""

    component: str  # attribute of the AnimateAnyone container
    weights: str  # manifest entry of the weights
    config: str | None = None  # manifest entry of the architecture config, if any
    config_fields: tuple[str, ...] = ()
    convert: KeyConverter | None = None
    allowed_missing: tuple[str, ...] = ()
    allowed_unexpected: tuple[str, ...] = ()


COMPONENT_RULES = (
    ComponentRule("denoising_unet", "denoising_unet", "sd15_unet_config", _UNET_FIELDS),
    ComponentRule(
        "reference_unet", "reference_unet", "sd15_unet_config", _UNET_FIELDS,
        allowed_missing=("conv_norm_out.*", "conv_out.*"),
    ),
    ComponentRule("pose_guider", "pose_guider"),
    ComponentRule(
        "motion_adapter", "motion_module", convert=_motion_module_keys,
        allowed_missing=("*.pos_embed.pe",),
    ),
    ComponentRule("vae", "vae_weights", "vae_config", _VAE_FIELDS, convert=_vae_keys),
    ComponentRule(
        "image_encoder", "image_encoder_weights", "image_encoder_config", _CLIP_VISION_FIELDS,
        allowed_unexpected=("vision_model.embeddings.position_ids",),
    ),
)


@dataclass
class FileRecord:
    """What happened to one file: its observed digest and what it was used for."""

    entry: str
    path: str
    sha256: str | None  # None when checksums were not verified
    pinned: bool  # the manifest knew the digest (and it matched)
    component: str
    role: str  # "weights" or "config"
    tolerated_missing: list[str] = field(default_factory=list)
    tolerated_unexpected: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """The provenance of a load: every file, its digest, and the keys that were tolerated."""

    weights_dir: str
    manifest: str
    files: list[FileRecord]

    def unpinned_digests(self) -> dict[str, str]:
        """Digests observed for files the manifest has no SHA-256 for (to pin them later)."""
        return {f.entry: f.sha256 for f in self.files if f.sha256 and not f.pinned}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _select_rules(model: Any, components: Iterable[str] | None) -> list[ComponentRule]:
    by_name = {rule.component: rule for rule in COMPONENT_RULES}
    names = list(by_name) if components is None else list(components)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise CheckpointError(f"unknown components {unknown}; known: {', '.join(by_name)}")
    absent = [n for n in names if not hasattr(model, n)]
    if absent:
        raise CheckpointError(
            f"{type(model).__name__} has no attribute(s) {absent}: load_moore_weights expects the "
            "AnimateAnyone container of poseguard_lib.models.components"
        )
    if components is None:  # what this build has (pixel-space/image-only builds lack VAE/adapter)
        return [by_name[n] for n in names if getattr(model, n) is not None]
    empty = [n for n in names if getattr(model, n) is None]
    if empty:
        nones = ", ".join(f"model.{n}" for n in empty)
        raise CheckpointError(f"cannot load {nones}: None in this model (it was built without it)")
    return [by_name[n] for n in names]


def load_moore_weights(
    model: Any,
    weights_dir: str | os.PathLike | None = None,
    manifest: str | os.PathLike | WeightsManifest = MANIFEST_PATH,
    *,
    components: Iterable[str] | None = None,
    verify_checksums: bool = True,
    record_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> LoadReport:
    """Fill ``model`` (an AnimateAnyone container) with the released Moore-AnimateAnyone weights.

    ``weights_dir`` defaults to ``$POSEGUARD_WEIGHTS_DIR`` (the manifest's ``root_env``), then to
    ``<repository>/weights``. ``components`` restricts the load (default: every component the model
    has that is not None). Every file is located, checksummed, read and matched before any weight is
    copied; the returned report (also written to ``record_path`` as JSON when given) lists every
    file with its observed SHA-256. Load before adding LoRA adapters: peft renames wrapped weights.
    """
    if not isinstance(manifest, WeightsManifest):
        manifest = load_manifest(manifest)
    root = resolve_weights_dir(weights_dir, manifest)
    rules = _select_rules(model, components)

    # Locate everything first: a missing download is reported before minutes of hashing.
    entries = [
        (rule, role, name)
        for rule in rules
        for role, name in (("config", rule.config), ("weights", rule.weights))
        if name
    ]
    located = {name: locate_file(manifest, name, root) for _, _, name in entries}

    digests: dict[str, str | None] = {}
    records: list[FileRecord] = []
    pending: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    for rule, role, name in tqdm(entries, desc="Moore weights", disable=not progress):
        source, path = located[name]
        if verify_checksums and name not in digests:
            digests[name] = verify_checksum(name, source, path, manifest._origin)
        module = getattr(model, rule.component)
        target = f"model.{rule.component} ({type(module).__name__})"
        describe = f"{path} (manifest entry '{name}') for {target}"
        record = FileRecord(
            entry=name, path=str(path), sha256=digests.get(name),
            pinned=verify_checksums and source.sha256 is not None,
            component=rule.component, role=role,
        )
        if role == "config":
            check_config(path, module, rule.config_fields, describe)
        else:
            state_dict = read_state_dict(path, name, source)
            problems: list[str] = []
            if rule.convert is not None:
                state_dict, problems = rule.convert(state_dict, module)
            fit = fit_state_dict(
                state_dict, module, allowed_missing=rule.allowed_missing,
                allowed_unexpected=rule.allowed_unexpected, extra_problems=problems, describe=describe,
            )
            record.tolerated_missing = fit.tolerated_missing
            record.tolerated_unexpected = fit.tolerated_unexpected
            pending.append((module, fit.to_copy))
        records.append(record)

    with torch.no_grad():
        for module, to_copy in pending:
            module.load_state_dict(to_copy, strict=False)  # keys were checked by fit_state_dict

    report = LoadReport(weights_dir=str(root), manifest=manifest._origin, files=records)
    if record_path is not None:
        write_json(record_path, report.to_dict())
    return report
