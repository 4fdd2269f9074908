"""Motion modules (AnimateDiff) on stock diffusers, with the two patches Moore's model needs.

1. ``AnimateDiffTransformer3D.norm`` in diffusers normalises over all frames of a clip; AnimateDiff
   and Moore normalise each frame on its own. :class:`PerFrameGroupNorm` restores that (same keys).
2. :func:`motion_unet` builds a ``UNetMotionModel`` whose spatial modules *are* the 2D denoiser's
   modules (shared, not copied) and whose motion modules are the adapter's. Training the motion
   modules trains the adapter; a LoRA put on the 2D denoiser acts in video sampling too; and no
   second copy of the UNet is kept in memory. ``encoder_hidden_states`` must be repeated per frame
   (diffusers 0.42 expects batch·frames rows).
"""

from __future__ import annotations

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from poseguard_lib.config import ModelSettings


class PerFrameGroupNorm(nn.GroupNorm):
    """GroupNorm that treats each frame of a (batch, channels, frames, h, w) clip as its own sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        batch, channels, frames, height, width = x.shape
        per_frame = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        normed = super().forward(per_frame)
        return normed.reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)


def use_per_frame_norms(adapter: MotionAdapter) -> MotionAdapter:
    """Swap every motion module's GroupNorm for :class:`PerFrameGroupNorm` in place (weights kept)."""
    for module in list(adapter.modules()):
        norm = getattr(module, "norm", None)
        if isinstance(module, AnimateDiffTransformer3D) and not isinstance(norm, PerFrameGroupNorm):
            patched = PerFrameGroupNorm(norm.num_groups, norm.num_channels, norm.eps, norm.affine)
            patched.load_state_dict(norm.state_dict())
            module.norm = patched.to(norm.weight.device, norm.weight.dtype)
    return adapter


def build_motion_adapter(settings: ModelSettings) -> MotionAdapter:
    """A fresh MotionAdapter matching the denoiser's widths (AnimateDiff v2 layout).

    Each motion module's ``proj_out`` starts at zero, as in AnimateDiff (diffusers does not do
    this): the video UNet then starts as the trained image UNet applied frame by frame, and
    stage 2 only has to learn what time adds.
    """
    adapter = MotionAdapter(
        block_out_channels=tuple(settings.block_out_channels),
        motion_layers_per_block=settings.layers_per_block,
        motion_num_attention_heads=settings.motion_num_attention_heads,
        motion_norm_num_groups=settings.norm_num_groups,
        motion_max_seq_length=settings.motion_max_seq_length,
        use_motion_mid_block=True,
    )
    for module in adapter.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            nn.init.zeros_(module.proj_out.weight)
            nn.init.zeros_(module.proj_out.bias)
    return use_per_frame_norms(adapter)


_SHARED_TOP_LEVEL = ("conv_in", "time_proj", "time_embedding", "conv_norm_out", "conv_act", "conv_out")
_SHARED_IN_BLOCKS = ("resnets", "attentions", "downsamplers", "upsamplers")


def motion_unet(denoising_unet: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """A video UNet sharing the 2D denoiser's spatial modules and the adapter's motion modules."""
    with torch.device("meta"):
        video = UNetMotionModel.from_unet2d(denoising_unet, adapter, load_weights=False)
    for name in _SHARED_TOP_LEVEL:
        setattr(video, name, getattr(denoising_unet, name))
    pairs = list(zip(video.down_blocks, denoising_unet.down_blocks, adapter.down_blocks))
    pairs += list(zip(video.up_blocks, denoising_unet.up_blocks, adapter.up_blocks))
    pairs.append((video.mid_block, denoising_unet.mid_block, adapter.mid_block))
    for video_block, spatial_block, motion_block in pairs:
        for name in _SHARED_IN_BLOCKS:
            if getattr(video_block, name, None) is not None:
                setattr(video_block, name, getattr(spatial_block, name))
        video_block.motion_modules = motion_block.motion_modules
    leftovers = [n for n, t in [*video.named_parameters(), *video.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"motion UNet has tensors not shared with its parts: {leftovers[:5]}")
    return video
