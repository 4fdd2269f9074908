"""Reference attention (AnimateAnyone's spatial-attention link between ReferenceNet and denoiser).

The ReferenceNet runs once per sample on the clean reference at timestep 0. Each of its spatial
self-attention layers (``attn1``) stores its input tokens — the block's ``norm1`` output — in a
bank keyed by the processor's name. The denoiser's ``attn1`` of the same name then attends over
``cat([x_norm, bank])`` (queries ``x_norm``), so appearance flows by attention, not by pixels.

Why a context variable holds the bank instead of the processors: processors survive
``copy.deepcopy`` of a lone UNet, PEFT wrapping and re-installation; a bank reference stored in
them would silently point at a stale copy. Here the processors only carry their name and role,
and the code that runs both networks makes one bank active (``writing``/``reading``).

Rows without a reference (the unconditional half under classifier-free guidance, dropped
conditions in training) use plain self-attention; rows are routed by an index into the bank
rather than masked, so each group costs exactly what its attention needs.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

Role = Literal["write", "read"]

_ACTIVE_BANK: contextvars.ContextVar["ReferenceBank | None"] = contextvars.ContextVar(
    "poseguard_reference_bank", default=None
)


@dataclass
class ReferenceBank:
    """Features written by the ReferenceNet for one batch of references, keyed by processor name.

    ``rows`` maps each row of the denoiser's batch to a bank row (``-1``: no reference, plain
    self-attention); it is set by :meth:`reading` while the denoiser runs.
    """

    features: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: torch.Tensor | None = None

    @contextlib.contextmanager
    def writing(self) -> Iterator["ReferenceBank"]:
        """Make this the active bank: a ReferenceNet run inside the block fills it."""
        token = _ACTIVE_BANK.set(self)
        try:
            yield self
        finally:
            _ACTIVE_BANK.reset(token)

    @contextlib.contextmanager
    def reading(self, rows: torch.Tensor) -> Iterator["ReferenceBank"]:
        """Let denoiser row ``i`` attend to bank row ``rows[i]`` (``-1`` = none) inside the block."""
        if rows.ndim != 1 or rows.dtype != torch.long:
            raise ValueError("bank rows must be a 1-D long tensor (one entry per denoiser row)")
        if rows.numel() and int(rows.max()) >= self.size:
            raise ValueError(f"bank rows point past the {self.size} stored references")
        previous, self.rows = self.rows, rows
        try:
            with self.writing():
                yield self
        finally:
            self.rows = previous

    @property
    def size(self) -> int:
        """Number of references stored (0 before the ReferenceNet ran)."""
        return next(iter(self.features.values())).shape[0] if self.features else 0


class ReferenceAttnProcessor(AttnProcessor2_0):
    """Self-attention that writes (ReferenceNet) or reads (denoiser) the active reference bank.

    While no bank is active, or no rows are routed, it is plain
    ``AttnProcessor2_0`` self-attention, so a UNet carrying it behaves like a stock one.
    """

    def __init__(self, name: str, role: Role):
        super().__init__()
        if role not in ("write", "read"):
            raise ValueError(f"role must be 'write' or 'read', got {role!r}")
        self.name = name
        self.role = role

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        bank = _ACTIVE_BANK.get()
        if bank is None or encoder_hidden_states is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if self.role == "write":
            bank.features[self.name] = hidden_states
            return super().__call__(attn, hidden_states, None, attention_mask, temb)
        if bank.rows is None:
            return super().__call__(attn, hidden_states, None, attention_mask, temb)
        return self._read(attn, hidden_states, bank, attention_mask, temb)

    def _read(self, attn, hidden_states, bank: ReferenceBank, attention_mask, temb):
        rows = bank.rows.to(hidden_states.device)
        if rows.shape[0] != hidden_states.shape[0]:
            raise ValueError(
                f"reference bank routes {rows.shape[0]} rows but {self.name} got a batch of "
                f"{hidden_states.shape[0]}"
            )
        with_reference = rows >= 0
        if not bool(with_reference.any()):
            return super().__call__(attn, hidden_states, None, attention_mask, temb)
        if self.name not in bank.features:
            raise KeyError(
                f"no reference features for {self.name}: the ReferenceNet and the denoiser "
                "must have the same spatial transformer layout"
            )
        if attention_mask is not None:
            raise NotImplementedError("reference attention does not support attention masks")
        reference = bank.features[self.name]
        if bool(with_reference.all()):
            context = torch.cat([hidden_states, reference[rows]], dim=1)
            return super().__call__(attn, hidden_states, context, None, temb)
        ref_rows = with_reference.nonzero().squeeze(1)
        plain_rows = (~with_reference).nonzero().squeeze(1)
        x_ref = hidden_states[ref_rows]
        out_ref = super().__call__(attn, x_ref, torch.cat([x_ref, reference[rows[ref_rows]]], dim=1), None, temb)
        out_plain = super().__call__(attn, hidden_states[plain_rows], None, None, temb)
        order = torch.cat([ref_rows, plain_rows]).argsort()
        return torch.cat([out_ref, out_plain])[order]


def spatial_self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Processor names of the spatial ``attn1`` layers (not motion modules, not cross-attention)."""
    return [
        name
        for name in unet.attn_processors
        if name.endswith("attn1.processor") and ".attentions." in name and "motion_modules" not in name
    ]


def install_reference_attention(reference_unet: torch.nn.Module, denoising_unet: torch.nn.Module) -> None:
    """Put writing processors on the ReferenceNet and reading ones on the denoiser (paired by name)."""
    ref_names = spatial_self_attention_names(reference_unet)
    den_names = spatial_self_attention_names(denoising_unet)
    if ref_names != den_names:
        raise ValueError("ReferenceNet and denoising UNet have different spatial attention layouts")
    for unet, role in ((reference_unet, "write"), (denoising_unet, "read")):
        processors = dict(unet.attn_processors)
        processors.update({name: ReferenceAttnProcessor(name, role) for name in ref_names})
        unet.set_attn_processor(processors)


def has_reference_attention(unet: torch.nn.Module, role: Role) -> bool:
    """Whether every spatial ``attn1`` of ``unet`` carries a reference processor with ``role``."""
    names = spatial_self_attention_names(unet)
    processors = unet.attn_processors
    return bool(names) and all(
        isinstance(processors[n], ReferenceAttnProcessor) and processors[n].role == role for n in names
    )
