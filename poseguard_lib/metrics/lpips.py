"""LPIPS: the recipe of Zhang et al. (2018) over any multi-layer feature network.

For each tapped layer l the features of both frames are unit-normalised along channels, their
squared difference is weighted per channel by w_l, averaged over space and summed over layers:

    LPIPS(x, y) = Σ_l mean_{h,w} Σ_c w_{l,c} (f̂_l(x) − f̂_l(y))²_{c,h,w}

The canonical AlexNet-LPIPS uses the published learned weights w_l (shipped with torchmetrics).
The study's synthetic-domain network has no human similarity judgements to learn w_l from, so it
uses uniform weights w_{l,c} = 1, which is the "baseline" (un-learned) variant of the LPIPS paper.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from poseguard_lib.metrics.checks import check_pair

NORM_EPS = 1e-10


class PerceptualNetwork(Protocol):
    """A network that LPIPS can use: layer features of frames in [0, 1], plus optional layer weights."""

    layer_weights: Sequence[torch.Tensor] | None  # one (C_l,) tensor per layer; None = uniform

    def perceptual_features(self, frames: torch.Tensor) -> list[torch.Tensor]: ...


def _unit_normalise(features: torch.Tensor) -> torch.Tensor:
    return features / torch.sqrt(NORM_EPS + (features**2).sum(dim=1, keepdim=True))


def lpips_from_features(
    features_a: Sequence[torch.Tensor],
    features_b: Sequence[torch.Tensor],
    layer_weights: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-frame LPIPS (N,) from two lists of layer features (N, C_l, H_l, W_l)."""
    total = torch.zeros(features_a[0].shape[0], dtype=torch.float64, device=features_a[0].device)
    for layer, (fa, fb) in enumerate(zip(features_a, features_b, strict=True)):
        squared = (_unit_normalise(fa.double()) - _unit_normalise(fb.double())) ** 2
        if layer_weights is None:
            weighted = squared.sum(dim=1)
        else:
            weighted = torch.einsum("nchw,c->nhw", squared, layer_weights[layer].double().to(squared.device))
        total += weighted.mean(dim=(1, 2))
    return total


@torch.no_grad()
def lpips(
    pred: torch.Tensor,
    target: torch.Tensor,
    network: PerceptualNetwork,
    per_frame: bool = False,
    batch_size: int = 64,
) -> torch.Tensor | float:
    """Mean LPIPS over frames (or the (N,) per-frame values) with ``network``'s features."""
    check_pair(pred, target)
    values = torch.cat(
        [
            lpips_from_features(
                network.perceptual_features(pred[start : start + batch_size]),
                network.perceptual_features(target[start : start + batch_size]),
                network.layer_weights,
            )
            for start in range(0, len(pred), batch_size)
        ]
    )
    return values if per_frame else values.mean().item()
