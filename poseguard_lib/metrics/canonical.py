"""Canonical extractors of the paper profile, loaded from local weight files.

- FID: InceptionV3 pool3 (2048-d) through torchmetrics' ``NoTrainInceptionV3``, which needs the
  torch-fidelity package; imported only when the extractors are loaded.
- FID-VID: 3D ResNet-50 (Hara et al., Kinetics-400), 2048-d pooled features: :class:`ResNet3D50`.
- FVD: I3D Kinetics-400 (VideoGPT's conversion), 400-d logits averaged over time: :class:`I3D`.
- LPIPS: AlexNet ``features`` + the LPIPS v0.1 linear layers shipped with torchmetrics:
  :class:`AlexNetLPIPS`.

The last three are plain torch written for this study in the key layout of the published
checkpoints, so no torchvision is needed. Every file is listed in ``data_manifest/extractors.yaml``
with where to get it and where to put it; a missing, unreadable or corrupt file stops the load
with an error that names the file, the folder it belongs in and its source.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from poseguard_lib.io import sha256_file
from poseguard_lib.metrics.extractors import MetricExtractors

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_PATH = REPO_ROOT / "data_manifest" / "extractors.yaml"
DEFAULT_WEIGHTS_DIR = REPO_ROOT / "weights"
RESNET3D_MEAN_RGB = (114.7748, 107.7354, 99.4750)  # 0..255 scale, no division by a std
RESNET3D_SIZE, I3D_SIZE = 112, 224


class ExtractorUnavailableError(RuntimeError):
    """A canonical extractor whose weight file or Python dependency is missing or unusable."""


class UnpinnedDigestWarning(UserWarning):
    """A weight file was used whose full SHA-256 the manifest does not pin yet."""


# --- the manifest and the files ------------------------------------------------------------------


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the weights root
    sha256: str | None
    sha256_prefix: str | None
    get: str


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    description: str
    candidates: tuple[WeightFile, ...]  # the main file, then accepted alternatives


@dataclass(frozen=True)
class VerifiedFile:
    """A located file, its digest, and how far it was checked ("sha256", "sha256 prefix", "presence")."""

    entry: str
    path: Path
    sha256: str
    checked: str


def _weight_file(raw: dict) -> WeightFile:
    return WeightFile(raw["path"], raw.get("sha256"), raw.get("sha256_prefix"), raw["get"])


def load_manifest(path: Path = MANIFEST_PATH) -> tuple[str, dict[str, ManifestEntry]]:
    """(root_env, entries) of the extractor manifest."""
    raw = yaml.safe_load(Path(path).read_text())
    entries = {
        name: ManifestEntry(
            name, item["description"], (_weight_file(item), *(_weight_file(a) for a in item.get("alternatives", ())))
        )
        for name, item in raw["entries"].items()
    }
    return raw["root_env"], entries


def weights_root(weights_dir: str | os.PathLike | None, root_env: str) -> Path:
    """The argument, else ``$root_env``, else ``<repository>/weights``."""
    return Path(weights_dir or os.environ.get(root_env) or DEFAULT_WEIGHTS_DIR).expanduser()


def _where_to_put(entry: ManifestEntry, root: Path, root_env: str) -> str:
    files = "; or ".join(f"{root / c.path} (get it from {c.get})" for c in entry.candidates)
    return (
        f"put it at {files}. The weights folder is the weights_dir argument, else ${root_env}, "
        f"else {DEFAULT_WEIGHTS_DIR}; see {MANIFEST_PATH}"
    )


def verify_file(entry: ManifestEntry, root: Path, root_env: str) -> VerifiedFile:
    """Locate an entry's file and check its digest (full SHA-256, else the name's prefix, else presence)."""
    for candidate in entry.candidates:
        path = root / candidate.path
        if path.is_file():
            break
    else:
        raise ExtractorUnavailableError(
            f"missing weight file for {entry.name} ({entry.candidates[0].path}): {_where_to_put(entry, root, root_env)}"
        )
    digest = sha256_file(path)
    expected = candidate.sha256 or candidate.sha256_prefix
    if expected and not digest.startswith(expected):
        raise ExtractorUnavailableError(
            f"corrupt or wrong weight file {path} for {entry.name}: SHA-256 {digest}, expected "
            f"{'' if candidate.sha256 else 'a digest starting with '}{expected}. Replace it: "
            f"{_where_to_put(entry, root, root_env)}"
        )
    if candidate.sha256 is None:
        warnings.warn(
            f"{path}: no full SHA-256 is pinned in {MANIFEST_PATH}; this copy has {digest}",
            UnpinnedDigestWarning,
            stacklevel=2,
        )
    checked = "sha256" if candidate.sha256 else "sha256 prefix" if candidate.sha256_prefix else "presence"
    return VerifiedFile(entry.name, path, digest, checked)


def read_checkpoint(verified: VerifiedFile) -> dict[str, torch.Tensor]:
    """A flat state dict from a torch file; unwraps ``{"state_dict": ...}`` and DataParallel's ``module.``."""
    try:
        loaded = torch.load(verified.path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle and EOF errors all mean an unreadable file
        raise ExtractorUnavailableError(
            f"cannot read {verified.path} for {verified.entry}: {type(err).__name__}: {err}; the file is corrupt"
        ) from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ExtractorUnavailableError(f"{verified.path} for {verified.entry} is not a state dict of tensors")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def load_weights(
    module: nn.Module, state_dict: dict[str, torch.Tensor], source: str, ignore: Sequence[str] = ()
) -> None:
    """Strict loading: every key of the module must come from the file, and nothing else (but ``ignore`` prefixes)."""
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignore))}
    expected = module.state_dict()
    problems = [
        f"{label}: {', '.join(sorted(keys)[:8])}{' ...' if len(keys) > 8 else ''} ({len(keys)})"
        for label, keys in (
            ("missing keys", [k for k in expected if k not in state_dict]),
            ("unexpected keys", [k for k in state_dict if k not in expected]),
            ("wrong shapes", [k for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]),
        )
        if keys
    ]
    if problems:
        raise ExtractorUnavailableError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state_dict)


# --- I3D (FVD) -------------------------------------------------------------------------------------


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (front, back) for one dimension, as the I3D weights were trained with."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    pads = [_same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


class _Unit3D(nn.Module):
    """Conv3d with SAME padding, then BatchNorm and ReLU (the logits layer has bias and neither)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=1e-5)  # VideoGPT's conversion (piergiaj's original: 1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return x if self.logits else F.relu(self.bn(x))


class _MaxPoolSame(nn.Module):
    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class _InceptionBlock(nn.Module):
    """Four branches: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool -> 1x1, concatenated."""

    def __init__(self, cin: int, widths: Sequence[int]):
        super().__init__()
        self.b0 = _Unit3D(cin, widths[0])
        self.b1a, self.b1b = _Unit3D(cin, widths[1]), _Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a, self.b2b = _Unit3D(cin, widths[3]), _Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a, self.b3b = _MaxPoolSame((3, 3, 3), (1, 1, 1)), _Unit3D(cin, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (endpoint, kind, arguments): Inception-v1 inflated to 3D (Carreira & Zisserman 2017).
_I3D_LAYOUT = (
    ("Conv3d_1a_7x7", "conv", (3, 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "conv", (64, 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "conv", (64, 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "inception", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "inception", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "inception", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "inception", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "inception", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "inception", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "inception", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "inception", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", "inception", (384, 192, 384, 48, 128, 128)),
)


class I3D(nn.Module):
    """I3D RGB in the piergiaj/VideoGPT key layout; input (B, 3, T, 224, 224) in [-1, 1] -> (B, classes)."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        channels = 3
        for name, kind, args in _I3D_LAYOUT:
            if kind == "conv":
                layer = _Unit3D(*args)
                channels = args[1]
            elif kind == "pool":
                layer = _MaxPoolSame(*args)
            else:
                layer = _InceptionBlock(channels, args)
                channels = layer.out_channels
            self.add_module(name, layer)
        self.logits = _Unit3D(channels, num_classes, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, _, _ in _I3D_LAYOUT:
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)
        return self.logits(x).mean(dim=(2, 3, 4))  # spatial size is 1 at 224x224; average over time


# --- 3D ResNet-50 (FID-VID) --------------------------------------------------------------------


class _Bottleneck3D(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv3d(cin, planes, 1, bias=False), nn.BatchNorm3d(planes)
        self.conv2, self.bn2 = nn.Conv3d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm3d(planes)
        self.conv3, self.bn3 = nn.Conv3d(planes, 4 * planes, 1, bias=False), nn.BatchNorm3d(4 * planes)
        self.downsample = None
        if stride != 1 or cin != 4 * planes:  # shortcut type B: a projection where shapes change
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, 4 * planes, 1, stride, bias=False), nn.BatchNorm3d(4 * planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet3D50(nn.Module):
    """Hara et al.'s 3D ResNet-50; input (B, 3, 16, 112, 112) mean-subtracted 0..255 -> 2048-d pooled features."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        channels = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
            layer = []
            for block in range(blocks):
                layer.append(_Bottleneck3D(channels, planes, 2 if block == 0 and index > 1 else 1))
                channels = 4 * planes
            self.add_module(f"layer{index}", nn.Sequential(*layer))
        self.fc = nn.Linear(channels, num_classes)  # kept so the checkpoint loads strictly; not used for FID-VID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool3d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3, 4))  # = the original AvgPool3d((1, 4, 4)) at 16x112x112


# --- AlexNet-LPIPS ---------------------------------------------------------------------------------

_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_ALEXNET_TAPS = (1, 4, 7, 9, 11)  # ReLU outputs after conv1..conv5 in torchvision's `features`


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )  # fmt: skip


def torchmetrics_lpips_weights(net: str = "alex") -> list[torch.Tensor]:
    """The LPIPS v0.1 linear-layer weights shipped inside torchmetrics, one (C_l,) tensor per layer."""
    path = importlib.resources.files("torchmetrics.functional.image") / "lpips_models" / f"{net}.pth"
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return [state[f"lin{i}.model.1.weight"].flatten() for i in range(len(state))]


class AlexNetLPIPS(nn.Module):
    """LPIPS (AlexNet, v0.1): frames in [0, 1] -> the five ReLU feature maps; learned layer weights."""

    def __init__(self, layer_weights: Sequence[torch.Tensor]):
        super().__init__()
        self.features = _alexnet_features()
        self.layer_weights = list(layer_weights)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def perceptual_features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        x = ((frames.to(self.shift.device) * 2 - 1) - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _ALEXNET_TAPS:
                taps.append(x)
        return taps


# --- preprocessing and loading ---------------------------------------------------------------------


def _resize_clips(clips: torch.Tensor, size: int) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, 3, T, size, size), bilinear, aspect not kept (as DisCo does)."""
    b, t = clips.shape[:2]
    frames = F.interpolate(clips.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
    return frames.view(b, t, 3, size, size).transpose(1, 2)


def _inception_features(path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if not _TORCH_FIDELITY_AVAILABLE:
        raise ExtractorUnavailableError(
            "FID's InceptionV3 needs the torch-fidelity package (pip install torch-fidelity, on a machine "
            "where torchvision is installed); the tiny and small profiles use synthetic-domain extractors instead"
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    network = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path), antialias=False
    ).to(device)

    @torch.no_grad()
    def features(frames: torch.Tensor) -> torch.Tensor:
        return network((frames * 255).round().to(torch.uint8).to(device)).double().cpu()

    return features


def load_canonical_extractors(
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    pose_estimator: Callable[[torch.Tensor], torch.Tensor] | None = None,
    pose_estimator_name: str = "none loaded",
    manifest_path: Path = MANIFEST_PATH,
) -> MetricExtractors:
    """Verify and load all four canonical extractors; ``pose_estimator`` (e.g. DWPose) serves PSR."""
    root_env, entries = load_manifest(manifest_path)
    root = weights_root(weights_dir, root_env)
    files, problems = {}, []
    for name, entry in entries.items():
        try:
            files[name] = verify_file(entry, root, root_env)
        except ExtractorUnavailableError as err:
            problems.append(str(err))
    if problems:
        raise ExtractorUnavailableError("\n".join(problems))
    device = torch.device(device)

    i3d, resnet, lpips_net = I3D(), ResNet3D50(), AlexNetLPIPS(torchmetrics_lpips_weights("alex"))
    for module, name, ignore in (
        (i3d, "fvd_i3d", ()),
        (resnet, "fid_vid_resnet3d50", ()),
        (lpips_net, "lpips_alexnet", ("classifier.",)),  # AlexNet's classifier is not an LPIPS layer
    ):
        load_weights(module, read_checkpoint(files[name]), str(files[name].path), ignore)
    i3d, resnet, lpips_net = (m.eval().to(device) for m in (i3d, resnet, lpips_net))
    mean_rgb = torch.tensor(RESNET3D_MEAN_RGB, device=device).view(1, 3, 1, 1, 1)

    @torch.no_grad()
    def clip_embedding(clips: torch.Tensor) -> torch.Tensor:
        return resnet(_resize_clips(clips.to(device), RESNET3D_SIZE) * 255 - mean_rgb).double().cpu()

    @torch.no_grad()
    def clip_logits(clips: torch.Tensor) -> torch.Tensor:
        return i3d(_resize_clips(clips.to(device), I3D_SIZE) * 2 - 1).double().cpu()

    return MetricExtractors(
        image_features=_inception_features(files["fid_inception"].path, device),
        clip_embedding=clip_embedding,
        clip_logits=clip_logits,
        perceptual=lpips_net,
        pose_estimator=pose_estimator,
        names={
            "fid": "FID (InceptionV3 pool3, torch-fidelity weights)",
            "fid_vid": "FID-VID (3D ResNet-50 Kinetics-400, pooled features)",
            "fvd": "FVD (I3D Kinetics-400, logits)",
            "lpips": "LPIPS (AlexNet, v0.1 learned weights)",
            "psr": f"PSR pose estimator ({pose_estimator_name})",
        },
        provenance={name: {"path": str(f.path), "sha256": f.sha256, "checked": f.checked} for name, f in files.items()},
    )
