"""The AnimateAnyone-style generator: parts, sampling and training."""

from poseguard_lib.models.components import AnimateAnyone, build_model, build_scheduler, pose_conditioning
from poseguard_lib.models.motion import PerFrameGroupNorm
from poseguard_lib.models.reference_attention import ReferenceAttnProcessor, ReferenceBank
